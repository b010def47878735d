"""The appliance daemon: config -> MQTT -> warm Animator -> job worker -> main loop, under systemd.

Threads: paho's network thread (connects, reconnects, callbacks), `commands` (validates and answers
commands), `worker` (runs jobs one at a time through Animator.animate), `outbox` (sends stored events
in order), the live stage's own (when plugged), and the main thread (stats, retention, playlist
schedule, watchdog, signals).

Exit codes: 0 clean stop (SIGTERM/SIGINT), 2 bad config or a broker that refuses our credentials or
certificates, 1 internal error, 75 restart asked for by a `config` command (the unit restarts on it).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import queue
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from device import __version__
from device.config import AppConfig, ConfigError, ConfigStore, Script, needs_restart
from device.errors import BadInput
from device.logs import kv, setup_logging
from device.pipeline import AnimateRequest, AnimateResult
from device.service.commands import (
    AnimateCommand,
    CancelCommand,
    CaptureCommand,
    Command,
    CommandContext,
    CommandError,
    ConfigCommand,
    ModeCommand,
    RollbackCommand,
    SayCommand,
    StatusCommand,
    UpdateCommand,
    image_kind,
    parse_command,
)
from device.service.jobs import DuplicateJob, Job, JobQueue, JobState, QueueFull, UnknownJob
from device.service.modes import LiveStage, ModeController, ModeUnavailable, StageHooks
from device.service.mqtt import MqttLink, Topics, discovery_messages
from device.service.notify import Notifier
from device.service.outbox import Outbox, OutboxSender, event_payload
from device.service.stats import FrameMetrics, ProcSampler
from device.updates.manager import Updater

log = logging.getLogger("portrait.daemon")

EXIT_OK, EXIT_INTERNAL, EXIT_CONFIG, EXIT_RESTART = 0, 1, 2, 75
# A job still running this long past its timeout ignores cancellation: stop feeding the watchdog so
# systemd restarts us; the restart then resumes or fails it (jobs.max_attempts).
class AnimatorLike(Protocol):
    def animate(
        self,
        request: AnimateRequest,
        progress: Callable[[int, int], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> AnimateResult: ...


AnimatorFactory = Callable[..., AnimatorLike]  # (backend, keys=None): keys trusted for the model bundle
StageFactory = Callable[["Daemon"], LiveStage | None]


def default_animator(backend: str, keys: list | None = None) -> AnimatorLike:
    from device.pipeline import Animator  # the renderer: loads the face models and the generator once

    return Animator(backend=backend, keys=keys)


class JobAborted(Exception):
    """Raised from the progress callback to stop a render: cancelled, timed out, or shutting down."""


class Daemon:
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
        self.stage_factory = stage_factory
        self.notifier = notifier or Notifier()
        self.stop_event = threading.Event()
        self.exit_code = EXIT_OK
        self.ready = False
        self.started = time.time()
        self.metrics = FrameMetrics()
        self.animator: AnimatorLike | None = None
        self.model: dict[str, Any] | None = None  # the generator's bundle, for `state`; None: warp only
        self.last_stats: dict[str, Any] | None = None
        self.link: MqttLink | None = None
        self.sender: OutboxSender | None = None
        self.commands: queue.Queue[tuple[str, bytes, Any]] = queue.Queue(maxsize=100)
        self.worker_wake = threading.Event()
        self.current: Job | None = None
        self.last_timings: dict[str, Any] = {}
        self._abort: dict[str, str] = {}  # job id -> why it must stop
        self._shutting_down = False
        self._finishing: str | None = None  # the job that may still end during the shutdown
        self._worker: threading.Thread | None = None
        self._commander: threading.Thread | None = None
        self._lock = threading.Lock()

        state_dir = self.config.device.state_dir
        for key, folder in (("device.state_dir", state_dir), ("output.clips_dir", self.config.clips_dir),
                            ("device.state_dir", self.config.media_dir)):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"{key}: cannot create {folder}: {exc.strerror}") from None
        jobs = self.config.jobs
        self.queue = JobQueue(state_dir / "jobs.sqlite", jobs.queue_size, jobs.max_attempts, jobs.timeout_s)
        self.outbox = Outbox(state_dir / "outbox.sqlite", self.config.mqtt.outbox_max_events)
        self.topics = Topics(self.config.mqtt.topic_prefix, self.config.device.id, tuple(self.config.device.groups))
        self.sampler = ProcSampler(state_dir)
        self.updater = Updater(self)  # issue 5: fleet updates
        hooks = StageHooks(metrics=self.metrics, face_seen=self._face_seen, emit=self.emit)
        stage = stage_factory(self) if stage_factory is not None else None
        self.modes = ModeController(self.config, stage, hooks, self._say_as_clip)

    # -- events and state -------------------------------------------------------------------------

    def emit(self, event_type: str, data: dict[str, Any]) -> int:
        """Store an event; the outbox sends it when the broker is there, in order."""
        device = self.config.device.id
        return self.outbox.add(self.topics.events, lambda seq: event_payload(seq, device, event_type, data))

    def state_doc(self) -> dict[str, Any]:
        return {
            "app_version": __version__,
            "model": self.model,
            "content_version": (self.updater.installed()["content"] or {}).get("version"),  # issue 5
            "installed": self.updater.installed(),  # issue 5: model + content bundles, probation
            "mode": self.modes.mode,
            "config_revision": self.config.revision(),
            "ready": self.ready,
            "device": self.config.device.id,
            "kind": self.config.device.kind,
            "groups": self.config.device.groups,
            "started": round(self.started, 3),
        }

    def publish_state(self) -> None:
        if self.link is not None and self.link.connected.is_set():
            self.link.publish_json(self.topics.state, self.state_doc(), retain=True)

    def _on_connected(self) -> None:
        # Network thread: publishing is fine, waiting is not.
        self.publish_state()
        self.updater.on_connected()  # issue 5: revocations topic, job states again
        ha = self.config.mqtt.homeassistant
        if ha.discovery and self.link is not None:
            for topic, doc in discovery_messages(self.topics, ha.prefix, __version__, self.config.device.kind):
                self.link.publish_json(topic, doc, retain=True)

    def stats_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"ts": round(time.time(), 3), "uptime_s": round(time.time() - self.started, 1)}
        doc.update(self.metrics.snapshot())
        if doc["generator_ms"] is None and "generator" in self.last_timings:
            doc["generator_ms"] = self.last_timings["generator"]  # from the last job's own timing
        doc.update(self.sampler.sample())
        doc.update(
            {
                "queue_depth": self.queue.depth(),
                "outbox_depth": self.outbox.depth(),
                "outbox_dropped": self.outbox.dropped,
                "mode": self.modes.mode,
            }
        )
        return doc

    # -- commands ---------------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes, props: Any) -> None:
        if self.updater.owns(topic):  # issue 5: bundle chunks and revocations, not commands
            self.updater.on_message(topic, payload)
            return
        try:
            self.commands.put_nowait((topic, payload, props))
        except queue.Full:
            log.warning("command queue full: command dropped", extra=kv(topic=topic))

    def _command_loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                topic, payload, props = self.commands.get(timeout=0.5)
            except queue.Empty:
                continue
            reply = self.handle_command(topic, payload)
            if self.link is not None:
                self.link.reply(props, reply)

    def command_context(self) -> CommandContext:
        jobs = self.config.jobs
        return CommandContext(
            jobs.photo_dirs, jobs.audio_dirs, self.config.mqtt.max_payload_bytes, jobs.max_photo_bytes
        )

    def handle_command(self, topic: str, payload: bytes) -> dict[str, Any]:
        """Validate and run one command; the reply says what happened or which field is wrong."""
        verb = topic.rsplit("/", 1)[-1]
        request_id = None
        try:
            command = parse_command(verb, payload, self.command_context())
            request_id = command.request_id
            result = self._run_command(verb, command)
            reply = {"ok": True, "verb": verb, **result}
        except CommandError as exc:
            request_id = request_id or exc.request_id
            log.warning("command refused", extra=kv(verb=verb, field=exc.field, error=exc.message))
            reply = {"ok": False, "verb": verb, "error": exc.reply()}
        except Exception as exc:
            log.exception("command failed", extra=kv(verb=verb))
            reply = {"ok": False, "verb": verb, "error": {"field": None, "message": f"internal error: {exc}"}}
        if request_id is not None:
            reply["request_id"] = request_id
        return reply

    def _run_command(self, verb: str, command: Command) -> dict[str, Any]:
        if isinstance(command, AnimateCommand):
            return self._cmd_animate(command)
        if isinstance(command, SayCommand):
            script = Script(
                text=command.text, audio=Path(command.audio) if command.audio else None,
                transcript=command.transcript, lang=command.lang, voice=command.voice,
            )
            try:
                return self.modes.say(script)
            except ModeUnavailable as exc:
                raise CommandError("mode", str(exc)) from None
        if isinstance(command, CaptureCommand):
            return self._cmd_capture(command)
        if isinstance(command, ModeCommand):
            return self._cmd_config(ConfigCommand(set={"mode": command.mode}), field="mode")
        if isinstance(command, ConfigCommand):
            return self._cmd_config(command)
        if isinstance(command, StatusCommand):
            return self._cmd_status(command)
        if isinstance(command, CancelCommand):
            return self._cmd_cancel(command)
        if isinstance(command, UpdateCommand):  # issue 5
            return self.updater.submit(command.model_dump(exclude={'request_id'}, exclude_none=True))
        if isinstance(command, RollbackCommand):  # issue 5
            return self.updater.rollback_command(command.kind)
        raise CommandError("verb", f"no handler for {verb}")

    def _accept(self, payload: dict[str, Any], priority: str, job_id: str | None, visitor: bool,
                photo_bytes: bytes | None = None) -> dict[str, Any]:
        """Queue a render job and report it; the reply goes out after the job is on disk."""
        job_id = job_id or uuid.uuid4().hex[:12]
        try:
            existing = self.queue.get(job_id)
        except UnknownJob:
            existing = None
        if existing is not None:
            # A redelivered command (QoS 1 is at least once): report the job it made, run nothing new.
            return {"job_id": existing.id, "state": str(existing.state), "duplicate": True}
        photo = None
        if photo_bytes is not None:
            photo = self.config.media_dir / f"{job_id}.{image_kind(photo_bytes)}"
            photo.write_bytes(photo_bytes)
            payload["photo"] = str(photo)
        folder = self.config.media_dir if visitor else self.config.clips_dir
        payload.update({"out": str(folder / f"{job_id}.mp4"), "visitor": visitor})
        try:
            job = self.queue.accept("animate", payload, priority, job_id, self.config.jobs.timeout_s)
        except (QueueFull, DuplicateJob) as exc:
            if photo is not None and isinstance(exc, QueueFull):
                photo.unlink(missing_ok=True)
            if isinstance(exc, DuplicateJob):
                return {"job_id": exc.job.id, "state": str(exc.job.state), "duplicate": True}
            raise CommandError("queue", str(exc)) from None
        self.emit("job.accepted", {"job_id": job.id, "priority": priority, "queue_depth": self.queue.depth()})
        self.worker_wake.set()
        return {"job_id": job.id, "state": str(JobState.QUEUED)}

    def _cmd_animate(self, cmd: AnimateCommand) -> dict[str, Any]:
        payload = {
            "photo": cmd.photo, "text": cmd.text, "audio": cmd.audio, "transcript": cmd.transcript,
            "lang": cmd.lang, "voice": cmd.voice, "fps": cmd.fps, "size": cmd.size, "seconds": cmd.seconds,
        }
        photo_bytes = cmd.photo_bytes() if cmd.photo_b64 is not None else None
        # Photo bytes come from a visitor's device: they and the clip fall under the retention.
        return self._accept(payload, cmd.priority, cmd.job_id, visitor=photo_bytes is not None, photo_bytes=photo_bytes)

    def _say_as_clip(self, script: Script) -> dict[str, Any]:
        photo = self.config.portrait.photo
        if photo is None:
            raise CommandError("portrait.photo", "portrait mode has no photo configured")
        payload = {
            "photo": str(photo), "text": script.text, "audio": str(script.audio) if script.audio else None,
            "transcript": script.transcript, "lang": script.lang, "voice": script.voice,
        }
        return self._accept(payload, "interactive", None, visitor=False)

    def capture(self) -> dict[str, Any]:
        """A local trigger (the kiosk's key) takes a photo exactly as the `capture` command does."""
        result = self._cmd_capture(CaptureCommand())
        self.emit("capture.triggered", {"source": "key", **result})
        return result

    def _cmd_capture(self, cmd: CaptureCommand) -> dict[str, Any]:
        if self.modes.mode != "capture":
            raise CommandError("mode", f"capture needs capture mode; the device is in {self.modes.mode} mode")
        if self.config.camera is None:
            raise CommandError("camera", "no camera configured")
        frame = self._grab_frame()
        import cv2  # only here: the daemon itself does not need OpenCV to start

        ok, encoded = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if not ok:
            raise CommandError("camera", "could not encode the captured frame")
        line = self.config.capture.line
        payload = {
            "text": cmd.text or line.text, "audio": str(line.audio) if (line.audio and not cmd.text) else None,
            "transcript": None if cmd.text else line.transcript,
            "lang": cmd.lang or line.lang, "voice": cmd.voice or line.voice,
        }
        return self._accept(payload, "kiosk", None, visitor=True, photo_bytes=encoded.tobytes())

    def _grab_frame(self) -> Any:
        grab = getattr(self.modes.stage, "grab_photo", None)
        frame = grab() if callable(grab) else None  # the live loop owns the camera: take its frame
        if frame is None:
            from device.capture import open_camera

            assert self.config.camera is not None
            frame = None
            with open_camera(self.config.camera) as camera:
                deadline = time.monotonic() + 3.0
                while frame is None and time.monotonic() < deadline:
                    frame = camera.read()
                    if frame is None:
                        time.sleep(0.02)
        if frame is None:
            raise CommandError("camera", "the camera gave no frame")
        return frame

    def _cmd_config(self, cmd: ConfigCommand, field: str = "set") -> dict[str, Any]:
        try:
            new, keys = self.store.check_change(cmd.set)
            if new.mode != self.modes.mode:
                self.modes.check(new.mode, new)
        except ConfigError as exc:
            raise CommandError(f"{field}.{exc.key}" if field == "set" else field, exc.detail) from None
        except ModeUnavailable as exc:
            raise CommandError(field if field == "mode" else "set.mode", str(exc)) from None
        restart = [k for k in keys if needs_restart(k)]
        result = {"changed": keys, "restart_required": restart}
        if cmd.dry_run or not keys:
            return {**result, "revision": self.config.revision(), "dry_run": cmd.dry_run}
        previous_mode = self.modes.mode
        new, keys = self.store.apply(cmd.set)
        self._apply_config(new, keys)
        self.emit("config.changed", {"revision": new.revision(), "changed": keys, "restart_required": restart})
        if new.mode != previous_mode:
            self.emit("mode.changed", {"mode": new.mode, "previous": previous_mode})
        self.publish_state()
        if cmd.restart and restart:
            log.info("restarting to apply config", extra=kv(keys=",".join(restart)))
            self.request_stop(EXIT_RESTART)
        return {**result, "revision": new.revision(), "mode": new.mode}

    def _apply_config(self, new: AppConfig, keys: list[str]) -> None:
        """Take the hot-appliable parts now; the rest (connection, identity) waits for a restart."""
        old, self.config = self.config, new
        self.queue.max_size = new.jobs.queue_size
        self.queue.max_attempts = new.jobs.max_attempts
        self.queue.timeout_s = new.jobs.timeout_s
        # Connection settings stay as they were until the restart; stats and HA apply now.
        self.config = new.model_copy(update={"mqtt": old.mqtt.model_copy(update={
            "stats_interval_s": new.mqtt.stats_interval_s,
            "max_payload_bytes": new.mqtt.max_payload_bytes,
            "homeassistant": new.mqtt.homeassistant,
        }), "device": old.device, "generator": old.generator, "camera": old.camera, "log": old.log})
        for folder in (self.config.clips_dir, self.config.media_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.modes.apply_config(self.config, keys)
        if new.mqtt.homeassistant != old.mqtt.homeassistant:
            self._on_connected()

    def apply_content(self, folder: Path) -> None:
        """An installed content bundle supplies the portrait and its playlist (issue 5)."""
        from device.updates.content import content_overlay

        new, keys = content_overlay(self.config, folder)
        self._apply_config(new, keys)
        log.info("content applied", extra=kv(folder=str(folder), scripts=len(new.portrait.playlist)))

    def _cmd_status(self, cmd: StatusCommand) -> dict[str, Any]:
        if cmd.job_id is not None:
            try:
                return {"job": self.queue.get(cmd.job_id).summary()}
            except UnknownJob:
                raise CommandError("job_id", f"no job {cmd.job_id}") from None
        current = self.current
        return {
            "state": self.state_doc(),
            "queue": {
                "depth": self.queue.depth(),
                "size": self.queue.max_size,
                "running": current.id if current else None,
                "waiting": [j.id for j in self.queue.jobs(JobState.QUEUED)],
            },
            "stats": self.last_stats,  # the latest sample: sampling here would skew the CPU window
            "portrait": {
                "photo": str(self.config.portrait.photo) if self.config.portrait.photo else None,
                "playlist": [s.text or str(s.audio) for s in self.config.portrait.playlist],
            },
        }

    def _cmd_cancel(self, cmd: CancelCommand) -> dict[str, Any]:
        try:
            job = self.queue.cancel(cmd.job_id)
        except UnknownJob:
            raise CommandError("job_id", f"no job {cmd.job_id}") from None
        except ValueError as exc:
            raise CommandError("job_id", str(exc)) from None
        if job.state == JobState.CANCELLED:
            self.emit("job.cancelled", {"job_id": job.id, "reason": job.reason})
        else:
            with self._lock:
                self._abort[job.id] = "cancelled"
        return {"job_id": job.id, "state": str(job.state), "cancel_requested": job.state == JobState.RUNNING}

    # -- jobs -------------------------------------------------------------------------------------

    def _worker_loop(self) -> None:
        while not self.stop_event.is_set():
            if self.run_next() is None:
                self.worker_wake.wait(0.5)
                self.worker_wake.clear()

    def run_next(self) -> Job | None:
        """Claim the next job and run it to its end (done, failed, cancelled or re-queued)."""
        job = self.queue.claim()
        if job is None:
            return None
        if self.stop_event.is_set():  # claimed just as the shutdown began: leave it for next time
            return self.queue.release(job.id)
        self._run_job(job)
        return self.queue.get(job.id)

    def _abort_reason(self, job: Job) -> str | None:
        with self._lock:
            reason = self._abort.get(job.id)
        if reason is None and self._shutting_down and job.id != self._finishing:
            reason = "shutdown"
        if reason is None and job.deadline is not None and time.time() > job.deadline:
            reason = "timeout"
        return reason

    def _request(self, job: Job) -> AnimateRequest:
        p = job.payload
        return AnimateRequest(
            photo=Path(p["photo"]),
            out=Path(p["out"]),
            text=p.get("text"),
            audio=Path(p["audio"]) if p.get("audio") else None,
            transcript=p.get("transcript"),
            lang=p.get("lang") or "en",
            voice=p.get("voice"),
            fps=p.get("fps") or self.config.output.fps,
            size=p.get("size") or self.config.output.size,
            seconds=p.get("seconds"),
            backend=self.config.generator.backend,
        )

    def _run_job(self, job: Job) -> None:
        self.current = job
        self.emit("job.started", {"job_id": job.id, "attempt": job.attempts})
        log.info("job started", extra=kv(job_id=job.id, attempt=job.attempts))
        interval = self.config.jobs.progress_interval_s
        last: dict[str, float | None] = {"event": 0.0, "frame": None}
        started = time.monotonic()

        def should_cancel() -> bool:
            return self._abort_reason(job) is not None

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if last["frame"] is not None:  # the first frame's wait includes face analysis and TTS
                self.metrics.record_frame((now - last["frame"]) * 1000.0)
            last["frame"] = now
            job.done, job.total = done, total
            if now - (last["event"] or 0.0) >= interval or done == total:
                last["event"] = now
                self.queue.progress(job.id, done, total)
                self.emit("job.progress", {"job_id": job.id, "done": done, "total": total})
            reason = self._abort_reason(job)
            if reason is not None:
                raise JobAborted(reason)

        try:
            result = self.animator.animate(self._request(job), progress=progress, should_cancel=should_cancel)
        except Exception as exc:
            self._job_ended_badly(job, exc)
        else:
            summary = {
                "clip": str(result.out), "frames": result.frames, "seconds": result.seconds,
                "render_fps": round(result.render_fps, 2), "wall_seconds": round(result.wall_seconds, 3),
                "generator": result.generator,
            }
            self.last_timings = dict(result.timings)
            self.queue.complete(job.id, {**summary, "timings": result.timings})
            self.emit("job.done", {"job_id": job.id, **summary})
            show_clip = getattr(self.modes.stage, "show_clip", None)
            if job.priority == "kiosk" and callable(show_clip):
                show_clip(result.out)  # the visitor sees (and hears) their own face speak
            wall = round(time.monotonic() - started, 2)
            log.info("job done", extra=kv(job_id=job.id, frames=result.frames, wall_s=wall))
        finally:
            with self._lock:
                self._abort.pop(job.id, None)
            self.current = None

    def _job_ended_badly(self, job: Job, exc: Exception) -> None:
        abort = self._abort_reason(job)
        if abort == "shutdown":
            # Checkpoint: back in the queue without using up an attempt; the next start renders it.
            self.queue.release(job.id)
            self.emit("job.requeued", {"job_id": job.id, "reason": "shutdown"})
            log.info("job re-queued for shutdown", extra=kv(job_id=job.id))
        elif abort == "cancelled":
            self.queue.mark_cancelled(job.id)
            self.emit("job.cancelled", {"job_id": job.id, "reason": "cancelled by command"})
        elif abort == "timeout":
            reason = f"timed out after {job.timeout_s:g} s (jobs.timeout_s)"
            self.queue.fail(job.id, reason)
            self.emit("job.failed", {"job_id": job.id, "error": "timeout", "reason": reason})
            log.warning("job timed out", extra=kv(job_id=job.id))
        elif isinstance(exc, BadInput):
            self.queue.fail(job.id, str(exc))
            self.emit("job.failed", {"job_id": job.id, "error": "bad_input", "reason": str(exc)})
            log.warning("job refused its input", extra=kv(job_id=job.id, reason=str(exc)))
        else:
            reason = f"internal error: {type(exc).__name__}: {exc}"
            self.queue.fail(job.id, reason)
            self.emit("job.failed", {"job_id": job.id, "error": "internal", "reason": reason})
            log.error("job failed", exc_info=exc, extra=kv(job_id=job.id))

    def _recover_jobs(self) -> None:
        for job, outcome in self.queue.recover():
            if outcome == "resumed":
                self.emit("job.resumed", {"job_id": job.id, "attempt": job.attempts + 1,
                                          "reason": "interrupted by a crash or restart"})
            elif outcome == "failed":
                self.emit("job.failed", {"job_id": job.id, "error": "interrupted", "reason": job.reason})
            else:
                self.emit("job.cancelled", {"job_id": job.id, "reason": job.reason})
            log.warning("unfinished job found", extra=kv(job_id=job.id, outcome=outcome, attempts=job.attempts))

    def _face_seen(self, present: bool) -> None:
        self.modes.face_seen(present)

    # -- housekeeping -----------------------------------------------------------------------------

    def cleanup(self, now: float | None = None) -> int:
        """Delete visitor photos and clips past the retention; forget old finished jobs."""
        now = time.time() if now is None else now
        limit = self.config.jobs.retention_hours * 3600.0
        removed = 0
        # A visitor's photo stays while its job waits or runs, however long that takes.
        active = {job.id for job in self.queue.jobs(JobState.QUEUED, JobState.RUNNING)}
        for path in self.config.media_dir.iterdir():
            try:
                if path.is_file() and now - path.stat().st_mtime >= limit and path.stem not in active:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        self.queue.prune(self.config.jobs.keep_finished_days * 86400.0)
        if removed:
            log.info("visitor media deleted", extra=kv(files=removed))
        return removed

    def healthy(self) -> bool:
        """What the watchdog vouches for: our threads alive and no job hung past its timeout."""
        threads = [self._worker, self._commander]
        if not all(t is not None and t.is_alive() for t in threads):
            return False
        job = self.current
        grace = self.config.jobs.hung_grace_s
        return not (job is not None and job.deadline is not None and time.time() > job.deadline + grace)

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
        log.info("starting", extra=kv(version=__version__, device=cfg.device.id, mode=cfg.mode,
                                      state_dir=str(cfg.device.state_dir), config_revision=cfg.revision()))
        if self.store.override_error:
            log.warning("config override ignored", extra=kv(error=self.store.override_error))
        try:
            self.modes.check(cfg.mode)
        except ModeUnavailable as exc:
            raise ConfigError(f"mode: {exc}") from None
        self._recover_jobs()
        self.updater.startup()  # issue 5: crash-loop count and rollback, before the models load
        content = self.updater.slots["content"].current()
        if content is not None:
            self.apply_content(content)  # the installed content bundle's portrait and playlist
        self.emit("daemon.started", {"version": __version__, "config_revision": cfg.revision()})
        if cfg.mqtt.enabled:
            # Connect before loading the models: operators see `online` + ready=false while it warms up.
            self.link = MqttLink(cfg.mqtt, self.topics, self._on_message, self._on_connected, cfg.mqtt.read_password())
            self.link.start()
            self.sender = OutboxSender(self.outbox, self.link)
            self.sender.start()
        self.notifier.status("loading models")
        # A model installed by a fleet update is signed by a fleet key the updater has certified.
        updater = getattr(self, "updater", None)
        keys = updater.trusted_keys() if updater is not None else None
        self.animator = self.animator_factory(cfg.generator.backend, keys=keys)
        warm_up = getattr(self.animator, "warm_up", None)
        if callable(warm_up):
            warm_up()
        self.model = model_info(self.animator)
        self.ready = True
        self.publish_state()
        self._worker = threading.Thread(target=self._worker_loop, name="worker", daemon=True)
        self._commander = threading.Thread(target=self._command_loop, name="commands", daemon=True)
        self._worker.start()
        self._commander.start()
        self.modes.start()
        self.updater.start()  # issue 5
        self.notifier.ready(f"serving as {cfg.device.id}")
        log.info("ready", extra=kv(device=cfg.device.id))

    def _main_loop(self) -> None:
        watchdog_every = min(self.notifier.watchdog_interval_s or 1.0, 1.0)
        next_stats = 0.0  # a first sample at once, so `status` has one
        next_cleanup = 0.0
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
                    self.link.publish_json(self.topics.stats, self.last_stats)
            if now >= next_cleanup:
                next_cleanup = now + 60.0
                self.cleanup()
            healthy = self.healthy()
            self.updater.tick(healthy)  # issue 5: probation
            if healthy:
                self.notifier.watchdog()
            else:
                log.error("unhealthy: watchdog not fed", extra=kv(job=self.current.id if self.current else None))
            self.stop_event.wait(watchdog_every)

    def _shutdown(self) -> None:
        self.stop_event.set()
        self.notifier.stopping()
        log.info("stopping", extra=kv(exit_code=self.exit_code))
        job = self.current
        if job is not None:
            # Finish a job that is about to end; stop and re-queue anything longer.
            elapsed = time.time() - (job.started or time.time())
            remaining = elapsed * (job.total - job.done) / job.done if job.done else float("inf")
            if remaining <= self.config.jobs.shutdown_grace_s:
                self._finishing = job.id
        self._shutting_down = True
        for thread in (self._worker, self._commander):
            if thread is not None:
                thread.join(self.config.jobs.shutdown_grace_s + 10.0)
        self.modes.stop()
        self.updater.close()  # issue 5
        if self.sender is not None:
            self.sender.drain(2.0)  # the last events (job.requeued) go out now if the broker is there
            self.sender.stop()
        if self.link is not None:
            self.link.stop()
        self.queue.close()
        self.outbox.close()
        log.info("stopped", extra=kv(exit_code=self.exit_code))


def model_info(animator: Any) -> dict[str, Any] | None:
    """Name, version, manifest sha256 and runtime of the loaded generator bundle; None for the warp alone."""
    custom = getattr(animator, "model_info", None)
    if custom is not None:
        return custom() if callable(custom) else custom
    generator = getattr(animator, "generator", None)
    bundle = getattr(generator, "bundle", None)
    if bundle is None:
        return None
    try:
        digest = hashlib.sha256((Path(bundle.path) / "manifest.json").read_bytes()).hexdigest()
    except (OSError, AttributeError, TypeError):
        digest = None
    return {
        "name": getattr(bundle, "name", None),
        "version": getattr(bundle, "version", None),
        "sha256": digest,
        "runtime": getattr(getattr(generator, "backend", None), "name", None),
    }


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
    """What --check-config verifies beyond the schema: the files the daemon will need exist."""
    tls = config.mqtt.tls
    for key, path in (("mqtt.tls.ca_file", tls.ca_file), ("mqtt.tls.cert_file", tls.cert_file),
                      ("mqtt.tls.key_file", tls.key_file), ("mqtt.password_file", config.mqtt.password_file),
                      ("portrait.photo", config.portrait.photo), ("mirror.photo", config.mirror.photo)):
        if path is not None and not path.is_file():
            raise ConfigError(f"{key}: no such file: {path}")
    for key, folders in (("jobs.photo_dirs", config.jobs.photo_dirs), ("jobs.audio_dirs", config.jobs.audio_dirs)):
        for folder in folders:
            if not folder.is_dir():
                raise ConfigError(f"{key}: no such folder: {folder}")


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


__all__ = ["Daemon", "main", "serve"]
