"""The appliance daemon: config -> MQTT -> warm Animator -> job runner -> main loop, under systemd.

Threads: paho's network thread (connects, reconnects, callbacks; hands commands to the inbox),
`commands` (validates and answers commands through the router), `worker` (the job runner), `outbox`
(sends stored events in order), the updater's, the live stage's own (when plugged), and the main
thread (stats, retention, playlist schedule, health, watchdog, signals).

Exit codes: 0 clean stop (SIGTERM/SIGINT), 2 bad config or a broker that refuses our credentials or
certificates, 1 internal error.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sqlite3
import ssl
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from device import __version__
from device.config import AppConfig, ConfigError, ConfigStore
from device.errors import BadInput, CommandError
from device.logs import kv, setup_logging
from device.runtime.info import model_info
from device.service.commands import CommandContext
from device.service.handlers import CommandHandlers
from device.service.jobs import Job, JobQueue
from device.service.modes import LiveStage, ModeController, ModeUnavailable, StageHooks
from device.service.mqtt import MqttLink, StatusTopics, Topics, discovery_messages
from device.service.notify import Notifier
from device.service.outbox import Outbox, OutboxSender, event_payload
from device.service.router import CommandInbox, CommandRouter
from device.service.runner import AnimatorLike, JobAborted, JobRunner
from device.service.stats import FrameMetrics, ProcSampler
from device.updates.manager import Updater

log = logging.getLogger("portrait.daemon")

EXIT_OK, EXIT_INTERNAL, EXIT_CONFIG = 0, 1, 2

# (backend, keys=None, options=None): keys trusted for the model bundle; options: each runtime's settings
AnimatorFactory = Callable[..., AnimatorLike]
StageFactory = Callable[[], LiveStage | None]


def default_animator(backend: str, keys: list | None = None, options: dict | None = None) -> AnimatorLike:
    from device.pipeline import Animator  # the renderer: loads the face models and the generator once

    return Animator(backend=backend, keys=keys, options=options)


class Daemon:
    """Wires the parts (config, MQTT link, command router, job runner, modes, updater, outbox) and runs
    the main loop; the work itself is done by the parts."""

    def __init__(
        self,
        store: ConfigStore,
        animator_factory: AnimatorFactory = default_animator,
        stage_factory: StageFactory | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.store = store
        self.config: AppConfig = store.config
        self.animator_factory = animator_factory
        self.notifier = notifier or Notifier()
        self.stop_event = threading.Event()
        self.exit_code = EXIT_OK
        self.ready = False
        self.started = time.time()
        self.metrics = FrameMetrics()
        self.model: dict[str, Any] | None = None  # the generator's bundle, for `state`; None: warp only
        self.last_stats: dict[str, Any] | None = None
        self.link: MqttLink | None = None
        self.sender: OutboxSender | None = None
        self._commander: threading.Thread | None = None

        state_dir = self.config.device.state_dir
        for key, folder in (
            ("device.state_dir", state_dir),
            ("output.clips_dir", self.config.clips_dir),
            ("device.state_dir", self.config.media_dir),
        ):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"{key}: cannot create {folder}: {exc.strerror}") from None
        jobs, mqtt = self.config.jobs, self.config.mqtt
        self.queue = JobQueue(state_dir / "jobs.sqlite", jobs.queue_size, jobs.max_attempts, jobs.timeout_s)
        self.outbox = Outbox(state_dir / "outbox.sqlite", mqtt.outbox_max_events)
        self.topics = Topics(mqtt.topic_prefix, self.config.device.id, tuple(self.config.device.groups))
        # The job, capture, visitor and snapshot topics (Home Assistant's entities read them).
        self.status = StatusTopics(
            self.topics,
            lambda: self.config.portrait.visitor_frames,
            self._snapshot_expiry_s,
            camera=self.config.camera is not None,
        )
        self.sampler = ProcSampler(state_dir)
        self.security_warnings = transport_warnings(self.config)
        self.runner = JobRunner(self.queue, lambda: self.config, self.emit, self.metrics, self._show_clip)
        self.updater = Updater(self)
        hooks = StageHooks(
            metrics=self.metrics,
            face_seen=self._face_seen,
            emit=self.emit,
            renderer=lambda: self.runner.animator,
            capture=self._capture_by_key,
        )
        stage = stage_factory() if stage_factory is not None else None
        self.handlers = CommandHandlers(
            store=store,
            runner=self.runner,
            modes=None,  # type: ignore[arg-type]  # set just below
            updates=self.updater,
            config=lambda: self.config,
            apply_config=self._apply_config,
            emit=self.emit,
            state=self.state_doc,
            last_stats=lambda: self.last_stats,
            grab_frame=self._grab_frame,
        )
        self.modes = ModeController(self.config, stage, hooks, self.handlers.say_as_clip)
        self.handlers.modes = self.modes
        self.router = CommandRouter(self.handlers.routes(), self.command_context)
        self.inbox = CommandInbox(
            self.router.handle, self._reply, max_commands=mqtt.command_queue, max_bytes=2 * mqtt.max_payload_bytes
        )

    # -- the parts' shared surface ----------------------------------------------------------------

    @property
    def animator(self) -> AnimatorLike | None:
        return self.runner.animator

    @animator.setter
    def animator(self, animator: AnimatorLike | None) -> None:
        self.runner.animator = animator

    def emit(self, event_type: str, data: dict[str, Any]) -> int | None:
        """Store an event; the outbox sends it when the broker is there, in order."""
        device, ts = self.config.device.id, time.time()
        seq = self.outbox.add(self.topics.events, lambda seq: event_payload(seq, device, event_type, data, ts))
        try:
            self.status.on_event(event_type, data)
        except Exception:  # a status topic is a view: it must not fail the job that reported
            log.exception("status topic not updated", extra=kv(event=event_type))
        return seq

    def _snapshot_expiry_s(self, clip: Path) -> float | None:
        """A visitor's clip is deleted after jobs.retention_hours: its retained snapshot expires with it."""
        if clip.resolve().parent == self.config.media_dir.resolve():
            return self.config.jobs.retention_hours * 3600.0
        return None

    def state_doc(self) -> dict[str, Any]:
        installed = self.updater.installed()
        return {
            "app_version": __version__,
            "model": self.model,
            "content_version": (installed["content"] or {}).get("version"),
            "installed": installed,
            "mode": self.modes.mode,
            "config_revision": self.config.revision(),
            "ready": self.ready,
            "device": self.config.device.id,
            "kind": self.config.device.kind,
            "groups": self.config.device.groups,
            "started": round(self.started, 3),
            "health": self.health(),
            "security_warnings": self.security_warnings,
        }

    def publish_state(self) -> None:
        if self.link is not None and self.link.connected.is_set():
            self.link.publish_json(self.topics.state, self.state_doc(), retain=True)

    def _on_connected(self) -> None:
        # Network thread: publishing is fine, waiting is not.
        self.publish_state()
        self.updater.on_connected()
        self.status.publish_all()
        self._publish_discovery()

    def _discovery(self, prefix: str) -> list[tuple[str, dict[str, Any]]]:
        modes = []
        for mode in ("portrait", "capture", "mirror"):
            try:
                self.modes.check(mode)  # type: ignore[arg-type]
            except ModeUnavailable:
                continue
            modes.append(mode)
        return discovery_messages(
            self.topics,
            prefix,
            __version__,
            self.config.device.kind,
            modes=modes or [self.modes.mode],
            camera=self.config.camera is not None,
        )

    def _publish_discovery(self, remove_prefix: str | None = None) -> None:
        """Retained entity configs; with `remove_prefix`, empty ones first, so Home Assistant drops the
        entities it was given under that prefix (discovery turned off, or the prefix changed)."""
        if self.link is None:
            return
        if remove_prefix is not None:
            for topic, _ in self._discovery(remove_prefix):
                self.link.publish(topic, b"", retain=True)
        ha = self.config.mqtt.homeassistant
        if ha.discovery:
            for topic, doc in self._discovery(ha.prefix):
                self.link.publish_json(topic, doc, retain=True)

    def stats_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"ts": round(time.time(), 3), "uptime_s": round(time.time() - self.started, 1)}
        doc.update(self.metrics.snapshot())
        if doc["generator_ms"] is None and "generator" in self.runner.last_timings:
            doc["generator_ms"] = self.runner.last_timings["generator"]  # from the last job's own timing
        doc.update(self.sampler.sample())
        doc.update(
            {
                "queue_depth": self.queue.depth(),
                "outbox_depth": self.outbox.depth(),
                "outbox_dropped": self.outbox.dropped,
                "commands_waiting": self.inbox.depth(),
                "commands_busy": self.inbox.answered_busy,
                "mode": self.modes.mode,
            }
        )
        return doc

    # -- commands ---------------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes, props: Any, ack: Callable[[], None]) -> None:
        """Network thread: hand the command on, or answer `busy`; never block, never drop."""
        if self.updater.owns(topic):  # bundle chunks and revocations, not commands
            self.updater.on_message(topic, payload)
            ack()
            return
        self.inbox.offer(topic, payload, props, ack)

    def _reply(self, props: Any, reply: dict[str, Any]) -> None:
        if self.link is not None:
            self.link.reply(props, reply)

    def command_context(self) -> CommandContext:
        jobs, mqtt = self.config.jobs, self.config.mqtt
        return CommandContext(
            jobs.photo_dirs,
            jobs.audio_dirs,
            mqtt.max_payload_bytes,
            jobs.max_photo_bytes,
            jobs.max_photo_pixels,
            mqtt.command_max_age_s,
        )

    def handle_command(self, topic: str, payload: bytes) -> dict[str, Any]:
        """Validate and run one command in this thread (the command thread, or a test)."""
        return self.router.handle(topic, payload)

    def run_next(self) -> Job | None:
        """Run the next queued job in this thread (tests, tools)."""
        return self.runner.run_next()

    def cleanup(self, now: float | None = None) -> int:
        return self.runner.cleanup(now)

    def _capture_by_key(self) -> dict[str, Any]:
        return self.handlers.capture_by_key()

    def _show_clip(self, clip: Path) -> None:
        show_clip = getattr(self.modes.stage, "show_clip", None)
        if callable(show_clip):
            show_clip(clip)

    def _grab_frame(self) -> Any:
        grab = getattr(self.modes.stage, "grab_photo", None)
        frame = grab() if callable(grab) else None  # the live loop owns the camera: take its frame
        if frame is None:
            from device.capture import open_camera

            assert self.config.camera is not None
            with open_camera(self.config.camera) as camera:
                deadline = time.monotonic() + 3.0
                while frame is None and time.monotonic() < deadline:
                    frame = camera.read()
                    if frame is None:
                        time.sleep(0.02)
        if frame is None:
            raise CommandError("camera", "the camera gave no frame")
        return frame

    def _apply_config(self, new: AppConfig, keys: list[str]) -> None:
        """Adopt a changed config in every part. Connection, identity, paths and keys stay as the
        process started with them: only the local file changes those, and it is read at start."""
        old = self.config
        self.config = new.model_copy(
            update={
                "mqtt": old.mqtt.model_copy(
                    update={
                        "stats_interval_s": new.mqtt.stats_interval_s,
                        "homeassistant": new.mqtt.homeassistant,
                    }
                ),
                "device": old.device,
                "generator": old.generator,
                "camera": old.camera,
                "log": old.log,
                "updates": old.updates,
            }
        )
        self.queue.max_size = new.jobs.queue_size
        self.queue.max_attempts = new.jobs.max_attempts
        self.queue.timeout_s = new.jobs.timeout_s
        for folder in (self.config.clips_dir, self.config.media_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.modes.apply_config(self.config, keys)
        old_ha, new_ha = old.mqtt.homeassistant, new.mqtt.homeassistant
        if new_ha != old_ha:
            stale = old_ha.discovery and (not new_ha.discovery or new_ha.prefix != old_ha.prefix)
            self._publish_discovery(remove_prefix=old_ha.prefix if stale else None)
        self.publish_state()

    def apply_content(self, folder: Path) -> None:
        """An installed (signed) content bundle supplies the portrait and its playlist."""
        from device.updates.content import content_overlay

        new, keys = content_overlay(self.config, folder)
        self._apply_config(new, keys)
        log.info("content applied", extra=kv(folder=str(folder), scripts=len(new.portrait.playlist)))

    def _face_seen(self, present: bool) -> None:
        self.modes.face_seen(present)
        self.status.face_seen(present)

    # -- health -----------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Each part's health: threads alive, no job hung, storage writable.

        `watchdog` is what the watchdog vouches for: ready, every thread alive and no job hung past its
        timeout. A full disk is reported but keeps it fed: a restart cannot free space, and the parts
        retry by themselves."""
        threads = {
            "worker": self.runner.alive(),
            "commands": self._commander is not None and self._commander.is_alive(),
            "outbox": self.sender is None or self.sender.is_alive(),
            "updates": self.updater.alive(),
        }
        hung = self.runner.hung()
        storage = self.runner.storage.error or self.outbox.storage_error
        alive = all(threads.values()) and not hung
        return {
            "ok": alive and storage is None,
            "watchdog": alive and self.ready,
            "threads": threads,
            "job_hung": hung,
            "storage_error": storage,
            "events_in_memory": self.outbox.waiting_in_memory,
        }

    def request_stop(self, code: int = EXIT_OK) -> None:
        if not self.stop_event.is_set():
            self.exit_code = code
        self.stop_event.set()

    # -- run --------------------------------------------------------------------------------------

    def run(self) -> int:
        try:
            self._start()
            self._main_loop()
        finally:
            self._shutdown()
        return self.exit_code

    def _start(self) -> None:
        cfg = self.config
        log.info(
            "starting",
            extra=kv(
                version=__version__,
                device=cfg.device.id,
                mode=cfg.mode,
                state_dir=str(cfg.device.state_dir),
                config_revision=cfg.revision(),
            ),
        )
        if self.store.override_error:
            log.warning("config override ignored", extra=kv(error=self.store.override_error))
        for warning in self.security_warnings:
            log.warning("insecure broker connection", extra=kv(warning=warning))
        try:
            self.modes.check(cfg.mode)
        except ModeUnavailable as exc:
            raise ConfigError(f"mode: {exc}") from None
        self.runner.recover()
        self.updater.startup()  # crash-loop count and rollback, before the models load
        content = self.updater.slots["content"].current()
        if content is not None:
            self.apply_content(content)  # the installed content bundle's portrait and playlist
        self.emit("daemon.started", {"version": __version__, "config_revision": cfg.revision()})
        if cfg.mqtt.enabled:
            # Connect before loading the models: operators see `online` + ready=false while it warms up.
            self.link = MqttLink(cfg.mqtt, self.topics, self._on_message, self._on_connected, cfg.mqtt.read_password())
            self.status.link = self.link
            self.link.start()
            self.sender = OutboxSender(self.outbox, self.link)
            self.sender.start()
        self.notifier.status("loading models")
        # A model installed by a fleet update is signed by a fleet key the updater has certified.
        self.animator = self.animator_factory(
            cfg.generator.backend, keys=self.updater.trusted_keys(), options=cfg.generator.runtime_settings()
        )
        warm_up = getattr(self.animator, "warm_up", None)
        if callable(warm_up):
            warm_up()
        self.model = model_info(self.animator)
        self.runner.start()
        self._commander = threading.Thread(
            target=self.inbox.serve, args=(self.stop_event,), name="commands", daemon=True
        )
        self._commander.start()
        self.ready = True
        self.publish_state()
        self.modes.start()
        self.updater.start()
        self.notifier.ready(f"serving as {cfg.device.id}")
        log.info("ready", extra=kv(device=cfg.device.id))

    def _main_loop(self) -> None:
        watchdog_every = min(self.notifier.watchdog_interval_s or 1.0, 1.0)
        next_stats = 0.0  # a first sample at once, so `status` has one
        next_cleanup = 0.0
        reported_health: bool | None = True
        while not self.stop_event.is_set():
            now = time.monotonic()
            if self.link is not None and self.link.fatal is not None:
                log.error("giving up on the broker", extra=kv(reason=self.link.fatal))
                self.request_stop(EXIT_CONFIG)
                break
            self.modes.tick(now)
            if now >= next_stats:
                next_stats = now + self.config.mqtt.stats_interval_s
                self.last_stats = self.stats_doc()
                if self.link is not None and self.link.connected.is_set():
                    # Retained: Home Assistant's sensors have their values again when it restarts.
                    self.link.publish_json(self.topics.stats, self.last_stats, retain=True)
            if now >= next_cleanup:
                next_cleanup = now + 60.0
                try:
                    self.cleanup()
                except (OSError, sqlite3.OperationalError) as exc:
                    log.warning("cleanup failed; retrying later", extra=kv(error=str(exc)))
            health = self.health()
            if health["ok"] != reported_health:
                reported_health = health["ok"]
                self.publish_state()  # operators see a full disk or a dead thread in the retained state
            self.updater.tick(health["watchdog"])
            if health["watchdog"]:
                self.notifier.watchdog()
            else:
                job = self.runner.current
                log.error("unhealthy: watchdog not fed", extra=kv(job=job.id if job else None, **health["threads"]))
            self.stop_event.wait(watchdog_every)

    def _shutdown(self) -> None:
        self.stop_event.set()
        self.notifier.stopping()
        log.info("stopping", extra=kv(exit_code=self.exit_code))
        grace = self.config.jobs.shutdown_grace_s
        self.runner.begin_shutdown(grace)
        self.runner.stop(grace + 10.0)
        if self._commander is not None:
            self._commander.join(grace + 10.0)
        self.modes.stop()
        self.updater.close()
        if self.sender is not None:
            self.sender.drain(2.0)  # the last events (job.requeued) go out now if the broker is there
            self.sender.stop()
        if self.link is not None:
            self.link.stop()
        self.queue.close()
        self.outbox.close()
        log.info("stopped", extra=kv(exit_code=self.exit_code))

    def apply_model(self, bundle: Path, keys: list[Any]) -> None:
        """The updater installed a model bundle: load it into the running renderer (raises if it cannot)."""
        animator = self.animator
        if self.config.generator.backend == "none" or animator is None or not hasattr(animator, "generator"):
            return
        from device.runtime import load_generator

        generator = self.config.generator
        animator.generator = load_generator(
            generator.backend, bundle=bundle, keys=keys, options=generator.runtime_settings()
        )
        self.model = model_info(animator)


def transport_warnings(config: AppConfig) -> list[str]:
    """What an operator must know about how the broker connection is protected."""
    mqtt = config.mqtt
    if not mqtt.enabled:
        return []
    warnings = []
    if not mqtt.tls.enabled:
        warnings.append(
            f"MQTT to {mqtt.host} is plaintext (mqtt.tls.enabled = false): commands and "
            "credentials can be read and forged on the network"
        )
    if mqtt.username is None and mqtt.tls.cert_file is None:
        warnings.append(
            f"no credentials for the broker at {mqtt.host} (mqtt.username, mqtt.tls.cert_file): "
            "anyone the broker admits can send this device commands"
        )
    return warnings


def serve(
    config_path: Path,
    check_only: bool = False,
    animator_factory: AnimatorFactory = default_animator,
    stage_factory: StageFactory | None = None,
) -> int:
    """`portrait serve`: run the daemon until SIGTERM; returns the process exit code."""
    try:
        store = ConfigStore(config_path)
        if check_only:
            check_files(store.config)
            print(f"config {config_path}: OK (revision {store.config.revision()})")
            return EXIT_OK
    except ConfigError as exc:
        print(f"portrait: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(store.config.log.level, store.config.log.format)
    try:
        if stage_factory is None:
            from device.service.live import default_stage

            stage_factory = default_stage
        daemon = Daemon(store, animator_factory, stage_factory)
    except (ConfigError, BadInput) as exc:
        log.error("cannot start", extra=kv(error=str(exc)))
        return EXIT_CONFIG
    previous = {
        sig: signal.signal(sig, lambda *_: daemon.request_stop(EXIT_OK)) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        return daemon.run()
    except (ConfigError, BadInput) as exc:
        log.error("cannot start", extra=kv(error=str(exc)))
        daemon.notifier.stopping()
        return EXIT_CONFIG
    except Exception:
        log.exception("internal error")
        return EXIT_INTERNAL
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def check_files(config: AppConfig) -> None:
    """What --check-config verifies beyond the schema: every file the config names is there and is what
    the daemon will read it as (photo, audio, PEM key, certificate), so a typo fails now, naming the
    key and the file, rather than at the first job, capture, update or connection."""
    tls, line = config.mqtt.tls, config.capture.line
    photos = [("portrait.photo", config.portrait.photo), ("mirror.photo", config.mirror.photo)]
    audio = [(f"portrait.playlist[{i}].audio", script.audio) for i, script in enumerate(config.portrait.playlist)]
    audio.append(("capture.line.audio", line.audio))
    files = [
        ("mqtt.tls.ca_file", tls.ca_file),
        ("mqtt.tls.cert_file", tls.cert_file),
        ("mqtt.tls.key_file", tls.key_file),
        ("mqtt.password_file", config.mqtt.password_file),
        ("updates.root_key", config.updates.root_key),
        *photos,
        *audio,
    ]
    for key, path in files:
        if path is not None and not path.is_file():
            raise ConfigError(f"{key}: no such file: {path}")
    for key, folders in (("jobs.photo_dirs", config.jobs.photo_dirs), ("jobs.audio_dirs", config.jobs.audio_dirs)):
        for folder in folders:
            if not folder.is_dir():
                raise ConfigError(f"{key}: no such folder: {folder}")
    _check_camera(config)
    from device.face.photo import load_photo
    from device.media.audio import load_audio

    for key, path in photos:
        if path is not None:
            try:
                load_photo(path, config.jobs.max_photo_pixels)
            except BadInput as exc:
                raise ConfigError(f"{key}: {exc}") from None
    for key, path in audio:
        if path is not None:
            try:
                load_audio(path)
            except BadInput as exc:
                raise ConfigError(f"{key}: {exc}") from None
    if config.updates.root_key is not None:
        from device.updates.keys import ChainError, load_public

        try:
            load_public(config.updates.root_key)
        except (ValueError, TypeError, OSError, ChainError) as exc:
            raise ConfigError(
                f"updates.root_key: {config.updates.root_key}: not an Ed25519 public key in PEM ({exc})"
            ) from None
    _check_tls(config)


def _check_camera(config: AppConfig) -> None:
    camera = config.camera
    if camera is None:
        return
    if camera.type == "file" and not camera.path.exists():
        raise ConfigError(f"camera.path: no such file or folder: {camera.path}")
    device = getattr(camera, "device", None)
    # A device path, not an index or a GStreamer pipeline (those are tried when the camera opens).
    is_path = isinstance(device, str) and device.startswith("/dev/") and "!" not in device
    if camera.type == "opencv" and is_path and not Path(str(device)).exists():
        raise ConfigError(f"camera.device: no such device: {device}")


def _check_tls(config: AppConfig) -> None:
    """The CA and client certificate load as paho will load them (the schema sets cert and key together)."""
    tls = config.mqtt.tls
    context = ssl.create_default_context()
    if tls.ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(tls.ca_file))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"mqtt.tls.ca_file: {tls.ca_file}: not a PEM CA certificate ({exc})") from None
    if tls.cert_file is not None and tls.key_file is not None:
        try:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"mqtt.tls.cert_file: {tls.cert_file} with mqtt.tls.key_file {tls.key_file}: not a "
                f"PEM certificate and its private key ({exc})"
            ) from None


def main(
    argv: list[str] | None = None,
    animator_factory: AnimatorFactory = default_animator,
    stage_factory: StageFactory | None = None,
) -> int:
    parser = argparse.ArgumentParser(prog="python -m device.service", description="Run the portrait daemon.")
    parser.add_argument("--config", type=Path, required=True, help="TOML config file")
    parser.add_argument("--check-config", action="store_true", help="validate the config and exit")
    args = parser.parse_args(argv)
    return serve(args.config, args.check_config, animator_factory, stage_factory)


__all__ = ["Daemon", "JobAborted", "main", "model_info", "serve"]
