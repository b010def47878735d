"""The device side of fleet updates: one update job at a time, each step persisted, so a restart
(or a power cut) resumes where it stopped and leaves the old or the new version working.

    QUEUED -> DOWNLOADING (progress) -> VERIFYING -> HEALTH_CHECK -> SUCCEEDED
    refused before or after the download: REJECTED; health check failed: FAILED;
    crash loop or watchdog in the probation window after the switch: ROLLED_BACK.

Each state goes out retained on portrait/<id>/jobs/<job_id> and as an `update.state` event.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from device.config import ConfigError
from device.errors import BadInput, CommandError
from device.files import atomic_write
from device.logs import kv
from device.updates.install import (
    HealthCheckFailed,
    Slots,
    check_content,
    check_model,
    describe,
    manifest,
    verify_bundle_signature,
)
from device.updates.job import (
    JOB_ID,
    TERMINAL,
    Envelope,
    HttpSource,
    JobDoc,
    MqttSource,
    UpdateState,
    semver_key,
)
from device.updates.keys import ChainError, KeyChain, load_public, verify_with
from device.updates.transfer import ChunkFile, chunk_topic, sha256_path

if TYPE_CHECKING:
    from device.service.daemon import Daemon

log = logging.getLogger("portrait.updates")

# Fault injection for the power-cut tests: SIGKILL ourselves right after this install step.
FAULT_ENV = "PORTRAIT_UPDATE_FAULT"
STEPS = ("downloaded", "staged", "health_checked", "switched", "succeeded")


class Refused(Exception):
    def __init__(self, state: UpdateState, reason: str) -> None:
        super().__init__(reason)
        self.state, self.reason = state, reason


class Stopping(Exception):
    pass


def fault(step: str) -> None:
    if os.environ.get(FAULT_ENV) == step:
        log.warning("fault injection: SIGKILL", extra=kv(step=step))
        os.kill(os.getpid(), signal.SIGKILL)


class Updater:
    def __init__(self, daemon: Daemon) -> None:
        from device.assets import assets_dir
        from device.runtime import DEFAULT_BUNDLE

        self.d = daemon
        self.cfg = daemon.config.updates
        self.dir = daemon.config.device.state_dir / "updates"
        self.jobs_dir, self.downloads = self.dir / "jobs", self.dir / "downloads"
        for folder in (self.jobs_dir, self.downloads):
            folder.mkdir(parents=True, exist_ok=True)
        root = self.cfg.root or assets_dir()
        self.slots = {"model": Slots(root / "bundles", fallback=DEFAULT_BUNDLE), "content": Slots(root / "content")}
        self.chain: KeyChain | None = None
        if self.cfg.root_key is not None:
            try:
                self.chain = KeyChain(load_public(self.cfg.root_key), self.dir / "revocations.json")
            except (OSError, ValueError, ChainError) as exc:
                raise ConfigError(f"updates.root_key: cannot load {self.cfg.root_key}: {exc}") from None
        prefix = daemon.config.mqtt.topic_prefix
        self.fleet_prefix = f"{prefix}/fleet/"
        self.revocations_topic = f"{prefix}/fleet/revocations"
        self.inbox: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=4096)
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.connects = 0
        self._lock = threading.RLock()  # job records: command thread, updater thread, network thread
        self._thread: threading.Thread | None = None
        self.probation_path = self.dir / "probation.json"

    # -- records ----------------------------------------------------------------------------------

    def _path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.json"

    def _load(self, job_id: str) -> dict[str, Any]:
        return json.loads(self._path(job_id).read_text())

    def records(self) -> list[dict[str, Any]]:
        out = []
        for path in self.jobs_dir.glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                out.append(json.loads(path.read_text()))
        return sorted(out, key=lambda r: r.get("accepted", 0))

    def public(self, rec: dict[str, Any]) -> dict[str, Any]:
        """The retained job document: no envelope, everything an operator needs."""
        job = rec.get("job") or {}
        return {"job_id": rec["id"], "device": self.d.config.device.id, "state": rec["state"],
                "reason": rec.get("reason"), "kind": job.get("kind"), "name": job.get("name"),
                "version": job.get("version"), "rollout": job.get("rollout"), "progress": rec.get("progress"),
                "result": rec.get("result"), "updated": rec.get("updated")}

    def _publish(self, rec: dict[str, Any]) -> None:
        link = self.d.link
        if link is not None:
            link.publish_json(f"{self.d.topics.base}/jobs/{rec['id']}", self.public(rec), retain=True)

    def _set(self, rec: dict[str, Any], state: UpdateState, reason: str | None = None, persist: bool = True,
             **extra: Any) -> None:
        with self._lock:
            rec.update(state=str(state), reason=reason, updated=round(time.time(), 3), **extra)
            if persist:
                atomic_write(self._path(rec["id"]), json.dumps(rec).encode())
        self._publish(rec)
        event = {"job_id": rec["id"], "state": str(state), "reason": reason}
        if state == UpdateState.DOWNLOADING and rec.get("progress"):
            event["progress"] = rec["progress"]
        self.d.emit("update.state", event)
        log.info("update", extra=kv(job_id=rec["id"], state=str(state), reason=reason))
        if state in TERMINAL:
            self.d.publish_state()

    # -- what is installed --------------------------------------------------------------------------

    def installed(self) -> dict[str, Any]:
        probation = self._probation()
        return {"model": describe(self.slots["model"].current()), "content": describe(self.slots["content"].current()),
                "probation": probation}

    def _installed_version(self, kind: str) -> str | None:
        current = self.slots[kind].current()
        if current is None:
            return None
        with contextlib.suppress(BadInput):
            return str(manifest(current).get("version"))
        return None

    # -- accepting a job (command thread) -------------------------------------------------------------

    def submit(self, envelope: dict[str, Any]) -> dict[str, Any]:
        if self.chain is None:
            raise CommandError("updates", "updates are off on this device: no updates.root_key in its config")
        try:
            env = Envelope.model_validate(envelope)
        except ValidationError as exc:
            raise CommandError("job", f"not an update envelope: {exc.errors()[0]['msg']}") from None
        job_id = env.job.get("id")
        if not isinstance(job_id, str) or not re.match(JOB_ID, job_id):
            raise CommandError("job.id", "missing or not a valid job id")
        rec: dict[str, Any] = {"id": job_id, "job": env.job, "accepted": round(time.time(), 3), "progress": None}
        try:
            key = self._authenticate(env)
        except Refused as exc:  # not signed by us: reported, but the id is not burnt
            self._set(rec, exc.state, exc.reason, persist=False)
            raise CommandError("job", exc.reason) from None
        with self._lock:
            if self._path(job_id).exists():
                reason = f"replayed job id {job_id}: this device has seen it before"
                # The retained record keeps what really happened to the first one; the refusal goes
                # to the reply and the events.
                self.d.emit("update.state", {"job_id": job_id, "state": "REJECTED", "reason": reason})
                raise CommandError("job.id", reason)
            rec["envelope"] = envelope
            rec["signer"] = env.cert.get("body", {}).get("key_id")
            try:
                job = self._admit(env, key)
            except Refused as exc:
                self._set(rec, exc.state, exc.reason)
                raise CommandError("job", exc.reason) from None
            self._set(rec, UpdateState.QUEUED, None)
        self.wake.set()
        return {"job_id": job.id, "state": str(UpdateState.QUEUED)}

    def _authenticate(self, env: Envelope) -> Any:
        assert self.chain is not None
        try:
            if env.revocations is not None:
                self.chain.accept_revocations(env.revocations)
            key = self.chain.signing_key(env.cert)
            verify_with(key, env.signature, env.job, "update job")
        except ChainError as exc:
            raise Refused(UpdateState.REJECTED, str(exc)) from None
        return key

    def _admit(self, env: Envelope, key: Any) -> JobDoc:
        try:
            job = JobDoc.model_validate(env.job)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            raise Refused(UpdateState.REJECTED, f"job {where}: {error['msg']}") from None
        if job.expired():
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(job.expires))
            raise Refused(UpdateState.REJECTED, f"job expired at {when} UTC")
        kind = self.d.config.device.kind
        if job.device_kinds and kind not in job.device_kinds:
            raise Refused(UpdateState.REJECTED, f"bundle is for device kinds {job.device_kinds}, this is a {kind!r}")
        installed = self._installed_version(job.kind)
        if installed is not None and semver_key(job.version) <= semver_key(installed):
            raise Refused(UpdateState.REJECTED, f"anti-rollback: version {job.version} is not newer than the "
                          f"installed {job.kind} {installed}")
        if job.size > self.cfg.max_bundle_bytes:
            raise Refused(UpdateState.REJECTED, f"bundle of {job.size} bytes is over the limit of "
                          f"{self.cfg.max_bundle_bytes} (updates.max_bundle_bytes)")
        free = shutil.disk_usage(self.downloads).free
        need = 2 * job.size + self.cfg.min_free_bytes  # the download and the staged copy
        if need > free:
            raise Refused(UpdateState.REJECTED, f"not enough disk: {job.size} bytes twice plus "
                          f"{self.cfg.min_free_bytes} reserved, {free} free")
        if isinstance(job.source, MqttSource) and not job.source.topic.startswith(self.fleet_prefix):
            raise Refused(UpdateState.REJECTED, f"chunk topic must lie under {self.fleet_prefix}")
        return job

    # -- MQTT (network thread: never block) ------------------------------------------------------------

    def owns(self, topic: str) -> bool:
        return topic.startswith(self.fleet_prefix)

    def on_message(self, topic: str, payload: bytes) -> None:
        if topic == self.revocations_topic:
            if self.chain is not None and payload:
                try:
                    if self.chain.accept_revocations(json.loads(payload)):
                        log.warning("revocation list updated", extra=kv(serial=self.chain.serial))
                except (ValueError, ChainError) as exc:
                    log.warning("revocation list refused", extra=kv(error=str(exc)))
            return
        with contextlib.suppress(queue.Full):  # dropped chunks are asked for again
            self.inbox.put_nowait((topic, payload))

    def on_connected(self) -> None:
        self.connects += 1
        link = self.d.link
        if link is not None:
            link.client.subscribe(self.revocations_topic, qos=1)
            # Retained job states again: anything sent while the broker was away is current now.
            for rec in self.records()[-20:]:
                self._publish(rec)

    def _subscribe(self, topics: list[str]) -> bool:
        link = self.d.link
        if link is None or not link.connected.is_set():
            return False
        link.client.subscribe([(t, 1) for t in topics])  # retained chunks come at once, even again
        return True

    def _unsubscribe(self, topics: list[str]) -> None:
        link = self.d.link
        if link is not None and link.connected.is_set():
            link.client.unsubscribe(topics)

    # -- the worker ----------------------------------------------------------------------------------

    def startup(self) -> None:
        """Before the models load: clean up after a crash, count a restart in probation, roll back a loop."""
        for slots in self.slots.values():
            slots.clean()
        probation = self._probation()
        if probation is None:
            return
        if time.time() > probation["until"]:
            self.probation_path.unlink(missing_ok=True)
            return
        probation["restarts"] = probation.get("restarts", 0) + 1
        atomic_write(self.probation_path, json.dumps(probation).encode())
        if probation["restarts"] >= self.cfg.max_restarts:
            self.rollback(probation["kind"], f"crash loop: started {probation['restarts']} times within the "
                          f"probation window of {self.cfg.probation_s:g} s", probation.get("job_id"))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="updates", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(10)

    def alive(self) -> bool:
        return self._thread is None or self._thread.is_alive()

    def tick(self, healthy: bool) -> None:
        """Main loop: end a probation that went well, roll back one where the watchdog fired."""
        probation = self._probation()
        if probation is None:
            return
        if time.time() > probation["until"]:
            self.probation_path.unlink(missing_ok=True)
            self.d.emit("update.confirmed", {"job_id": probation.get("job_id"), "kind": probation["kind"]})
            self.d.publish_state()
        elif not healthy:
            self.rollback(probation["kind"], "watchdog: the daemon was unhealthy within the probation window",
                          probation.get("job_id"))

    def _probation(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.probation_path.read_text())
        except (OSError, ValueError):
            return None

    def _next(self) -> dict[str, Any] | None:
        for rec in self.records():
            if rec.get("state") not in [str(s) for s in TERMINAL]:
                return rec
        return None

    def _loop(self) -> None:
        while not self.stop.is_set():
            rec = self._next()
            if rec is None:
                self.wake.wait(0.5)
                self.wake.clear()
                continue
            try:
                self._run(rec)
            except Stopping:
                return
            except Refused as exc:
                self._set(rec, exc.state, exc.reason)
                self._discard(rec["id"])
            except Exception as exc:
                log.exception("update failed", extra=kv(job_id=rec["id"]))
                self._set(rec, UpdateState.FAILED, f"internal error: {type(exc).__name__}: {exc}")
                self._discard(rec["id"])

    def _discard(self, job_id: str) -> None:
        for suffix in (".part", ".bitmap", ".bitmap.tmp"):
            (self.downloads / f"{job_id}{suffix}").unlink(missing_ok=True)

    def _run(self, rec: dict[str, Any]) -> None:
        job = JobDoc.model_validate(rec["job"])
        assert self.chain is not None
        try:
            key = self.chain.signing_key(rec["envelope"]["cert"])  # revoked meanwhile: stop here
        except ChainError as exc:
            raise Refused(UpdateState.REJECTED, str(exc)) from None
        archive = self.downloads / f"{job.id}.part"
        if rec["state"] in (UpdateState.QUEUED, UpdateState.DOWNLOADING) or not archive.is_file():
            if rec["state"] == UpdateState.QUEUED and job.expired():
                raise Refused(UpdateState.REJECTED, "job expired while it waited")
            self._download(rec, job)
            self._set(rec, UpdateState.VERIFYING)
            fault("downloaded")
        slots = self.slots[job.kind]
        final = slots.version_dir(job.name, job.version, job.sha256)
        if rec["state"] == UpdateState.VERIFYING:
            if archive.stat().st_size != job.size:
                raise Refused(UpdateState.REJECTED, f"size mismatch: got {archive.stat().st_size} bytes, the job "
                              f"says {job.size}")
            if sha256_path(archive) != job.sha256:
                raise Refused(UpdateState.REJECTED, "sha256 mismatch: the bundle is not the one the job names")
            try:
                slots.stage(archive, final)
                fault("staged")
                self._verify_bundle(final, job, key)
            except (BadInput, ChainError) as exc:
                shutil.rmtree(final, ignore_errors=True)
                raise Refused(UpdateState.REJECTED, str(exc)) from None
            self._set(rec, UpdateState.HEALTH_CHECK)
        if not (final / "manifest.json").is_file():
            slots.stage(archive, final)  # a crash removed the staged copy: stage again from the archive
        current = slots.current()
        if current is None or current.resolve() != final.resolve():
            try:
                health = self._health(job, final, key)
            except HealthCheckFailed as exc:
                shutil.rmtree(final, ignore_errors=True)
                self._discard(job.id)
                self._set(rec, UpdateState.FAILED, f"health check failed: {exc}")
                return
            rec["result"] = {"health": health}
            fault("health_checked")
            slots.switch(final)
            fault("switched")
        until = time.time() + self.cfg.probation_s
        atomic_write(self.probation_path, json.dumps(
            {"job_id": job.id, "kind": job.kind, "until": until, "restarts": 0}).encode())
        try:
            self.apply(job.kind)
        except Exception as exc:
            self.rollback(job.kind, f"the new {job.kind} did not start: {type(exc).__name__}: {exc}", job.id)
            return
        self._discard(job.id)
        self._set(rec, UpdateState.SUCCEEDED, None, result={**(rec.get("result") or {}),
                                                           "probation_until": round(until, 3)})
        fault("succeeded")

    def _verify_bundle(self, folder: Path, job: JobDoc, key: Any) -> None:
        verify_bundle_signature(folder, key)
        doc = manifest(folder)
        if (doc.get("name"), doc.get("version")) != (job.name, job.version):
            raise BadInput(f"the bundle is {doc.get('name')} {doc.get('version')}; "
                           f"the job names {job.name} {job.version}")
        kinds = doc.get("device_kinds") or []
        if kinds and self.d.config.device.kind not in kinds:
            raise BadInput(f"bundle manifest is for device kinds {kinds}, this is a {self.d.config.device.kind!r}")
        if job.kind == "model":
            from device.runtime.bundle import Bundle

            Bundle(folder, keys=[key])  # format and contract

    def _health(self, job: JobDoc, folder: Path, key: Any) -> dict[str, Any]:
        if job.kind == "content":
            return check_content(folder)
        return check_model(folder, self.d.config.generator.backend, key, self.cfg.latency_budget_ms)

    def apply(self, kind: str) -> None:
        """Make the running daemon use what `current` now points at."""
        backend = self.d.config.generator.backend
        animator = self.d.animator
        if kind == "model" and backend != "none" and animator is not None and hasattr(animator, "generator"):
            from device.runtime import load_generator

            animator.generator = load_generator(backend, bundle=self.slots["model"].current(),
                                                keys=self.trusted_keys())
            from device.service.daemon import model_info

            self.d.model = model_info(animator)
        if kind == "content":
            current = self.slots["content"].current()
            apply_content = getattr(self.d, "apply_content", None)
            if current is not None and callable(apply_content):
                apply_content(current)
        self.d.publish_state()

    def trusted_keys(self) -> list[Any]:
        """The repo's trusted keys plus every certified, unrevoked key that signed a bundle installed here."""
        from device.runtime.bundle import trusted_keys

        keys = trusted_keys()
        if self.chain is not None:
            for rec in self.records():
                with contextlib.suppress(ChainError, KeyError, TypeError):
                    keys.append(self.chain.signing_key(rec["envelope"]["cert"]))
        return keys

    def rollback(self, kind: str, reason: str, job_id: str | None = None) -> dict[str, Any]:
        slots = self.slots[kind]
        restored = slots.rollback()
        probation = self._probation()
        if probation is not None and probation.get("kind") == kind:
            self.probation_path.unlink(missing_ok=True)
        with contextlib.suppress(Exception):
            self.apply(kind)
        doc = {"kind": kind, "restored": describe(restored), "reason": reason}
        if job_id is not None and self._path(job_id).exists():
            self._set(self._load(job_id), UpdateState.ROLLED_BACK, reason)
        self.d.emit("update.rolled_back", {"job_id": job_id, **doc})
        self.d.publish_state()
        log.warning("rolled back", extra=kv(kind=kind, reason=reason))
        return doc

    def rollback_command(self, kind: str) -> dict[str, Any]:
        """The operator's `rollback` verb: back to the kept previous version."""
        probation = self._probation()
        job_id = probation.get("job_id") if probation and probation.get("kind") == kind else None
        if job_id is None:
            for rec in reversed(self.records()):
                if rec.get("state") == UpdateState.SUCCEEDED and (rec.get("job") or {}).get("kind") == kind:
                    job_id = rec["id"]
                    break
        try:
            return self.rollback(kind, "rolled back by the operator", job_id)
        except BadInput as exc:
            raise CommandError("kind", str(exc)) from None

    # -- downloads ------------------------------------------------------------------------------------

    def _progress(self, rec: dict[str, Any], have: int, total: int, nbytes: int, resumed: int) -> None:
        rec["progress"] = {"chunks": have, "total": total, "bytes": nbytes, "resumed_from": resumed}

    def _download(self, rec: dict[str, Any], job: JobDoc) -> None:
        if isinstance(job.source, HttpSource):
            return self._download_http(rec, job, job.source)
        src = job.source
        cf = ChunkFile(self.downloads, job.id, job.size, src.chunk_bytes, src.chunks)
        try:
            if cf.resumed_with:
                cf.verify_chunks()
            resumed = cf.have()
            total = len(src.chunks)
            self._progress(rec, resumed, total, min(resumed * src.chunk_bytes, job.size), resumed)
            self._set(rec, UpdateState.DOWNLOADING)
            with contextlib.suppress(queue.Empty):
                while True:
                    self.inbox.get_nowait()
            started, fetched = time.monotonic(), 0
            last_report = time.monotonic()
            while missing := cf.missing():
                window = missing[: self.cfg.window_chunks]
                topics = {chunk_topic(src.topic, i): i for i in window}
                pending = set(window)
                asked_gen, asked_at = -1, 0.0
                while pending:
                    if self.stop.is_set():
                        cf.checkpoint()
                        raise Stopping
                    now = time.monotonic()
                    if asked_gen != self.connects or now - asked_at > self.cfg.chunk_timeout_s:
                        # First ask, a reconnect (clean session: subscriptions gone), or chunks lost: ask again.
                        wanted = [t for t, i in topics.items() if i in pending]
                        if self._subscribe(wanted):
                            asked_gen, asked_at = self.connects, now
                    try:
                        topic, data = self.inbox.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    index = topics.get(topic)
                    if index is None or index not in pending:
                        continue
                    try:
                        ok = cf.write(index, data)
                    except BadInput as exc:
                        raise Refused(UpdateState.REJECTED, f"size mismatch: {exc}") from None
                    if ok:
                        pending.discard(index)
                        fetched += len(data)
                self._unsubscribe(list(topics))
                cf.checkpoint()
                if time.monotonic() - last_report >= 0.5 or not cf.missing():
                    last_report = time.monotonic()
                    self._progress(rec, cf.have(), total, min(cf.have() * src.chunk_bytes, job.size), resumed)
                    self._set(rec, UpdateState.DOWNLOADING)
                if self.cfg.rate_bytes_s:
                    ahead = fetched / self.cfg.rate_bytes_s - (time.monotonic() - started)
                    if ahead > 0 and self.stop.wait(ahead):
                        raise Stopping
                if not cf.missing():
                    cf.verify_chunks()  # a torn write before a crash shows up here and is fetched again
        finally:
            cf.close()

    def _download_http(self, rec: dict[str, Any], job: JobDoc, src: HttpSource) -> None:
        """HTTP(S) with Range resume into the same partial file."""
        part = self.downloads / f"{job.id}.part"
        resumed = part.stat().st_size if part.is_file() else 0
        self._progress(rec, 0, 0, resumed, resumed)
        self._set(rec, UpdateState.DOWNLOADING)
        for _attempt in range(100):
            have = part.stat().st_size if part.is_file() else 0
            if have >= job.size:
                break
            request = urllib.request.Request(src.url, headers={"Range": f"bytes={have}-"} if have else {})
            try:
                with urllib.request.urlopen(request, timeout=30) as resp:
                    if have and resp.status != 206:
                        have = 0  # the server ignored Range: start over
                    with part.open("ab" if have else "wb") as fh:
                        while block := resp.read(1 << 16):
                            if self.stop.is_set():
                                raise Stopping
                            have += len(block)
                            if have > job.size:
                                raise Refused(UpdateState.REJECTED, f"size mismatch: the server sends more than "
                                              f"{job.size} bytes")
                            fh.write(block)
                        fh.flush()
                        os.fsync(fh.fileno())
            except (urllib.error.URLError, OSError) as exc:
                log.warning("download interrupted; resuming", extra=kv(job_id=job.id, error=str(exc)))
                if self.stop.wait(2.0):
                    raise Stopping from None
        self._progress(rec, 0, 0, part.stat().st_size if part.is_file() else 0, resumed)
