"""The device side of fleet updates: one update job at a time, each step persisted, so a restart
(or a power cut) resumes where it stopped and leaves the old or the new version working.

The job is a state machine (device.updates.machine): one step function per active state, each ending
in a checked transition. Every state goes out retained on portrait/<id>/jobs/<job_id> and as an
`update.state` event.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from device.config import ConfigError
from device.errors import BadInput, CommandError
from device.files import atomic_write
from device.logs import kv
from device.updates.download import ChunkFeed, Download, utc
from device.updates.host import RollbackRequest, UpdaterHost
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
    BundleKind,
    Envelope,
    JobDoc,
    MqttSource,
    OrderEnvelope,
    RollbackOrder,
    UpdateState,
    semver_key,
)
from device.updates.keys import ChainError, KeyChain, load_public, verify_with
from device.updates.machine import TRANSITIONS, JobRecord, JobResult, Probation, Progress, Refused, Stopping
from device.updates.orders import SeenOrders
from device.updates.paths import job_file
from device.updates.transfer import sha256_path

log = logging.getLogger("portrait.updates")

# Fault injection for the power-cut tests: SIGKILL ourselves right after this install step.
FAULT_ENV = "PORTRAIT_UPDATE_FAULT"
STEPS = ("downloaded", "staged", "health_checked", "switched", "succeeded")
S = UpdateState


def fault(step: str) -> None:
    if os.environ.get(FAULT_ENV) == step:
        log.warning("fault injection: SIGKILL", extra=kv(step=step))
        os.kill(os.getpid(), signal.SIGKILL)


def first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    return f"{where}: {error['msg'].removeprefix('Value error, ')}" if where else error["msg"]


@dataclass
class Run:
    """One job being worked on: its record, its validated document, the key that signed it, where it goes."""

    rec: JobRecord
    job: JobDoc
    key: Any  # Ed25519PublicKey
    slots: Slots
    archive: Path  # the download, <state>/updates/downloads/<id>.part
    final: Path  # where the bundle is installed, <slot root>/versions/<name>-<version>-<sha8>


class Updater:
    def __init__(self, host: UpdaterHost) -> None:
        from device.assets import assets_dir
        from device.runtime import DEFAULT_BUNDLE

        self.host = host
        config = host.config
        self.cfg = config.updates  # update policy comes from the local file only, read once
        self.dir = config.device.state_dir / "updates"
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
        prefix = config.mqtt.topic_prefix
        self.jobs_topic = f"{prefix}/{config.device.id}/jobs"
        self.fleet_prefix = f"{prefix}/fleet/"
        self.revocations_topic = f"{prefix}/fleet/revocations"
        self.feed = ChunkFeed(lambda: self.host.link)
        self.wake = threading.Event()
        self.stop = threading.Event()
        self._lock = threading.RLock()  # job records: command thread, updater thread, network thread
        self._thread: threading.Thread | None = None
        self.probation_path = self.dir / "probation.json"
        self.orders = SeenOrders(self.dir / "orders.json")
        self.steps: dict[UpdateState, Callable[[Run], None]] = {
            S.QUEUED: self._step_queued,
            S.DOWNLOADING: self._step_downloading,
            S.VERIFYING: self._step_verifying,
            S.HEALTH_CHECK: self._step_health_check,
        }

    @property
    def device_id(self) -> str:
        return self.host.config.device.id

    @property
    def groups(self) -> list[str]:
        return list(self.host.config.device.groups)

    # -- records ----------------------------------------------------------------------------------

    def _path(self, job_id: str) -> Path:
        return job_file(self.jobs_dir, job_id, ".json")

    def _load(self, job_id: str) -> JobRecord:
        return JobRecord.model_validate_json(self._path(job_id).read_bytes())

    def records(self) -> list[JobRecord]:
        out = []
        for path in self.jobs_dir.glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                out.append(JobRecord.model_validate_json(path.read_bytes()))
        return sorted(out, key=lambda r: r.accepted)

    def _publish(self, rec: JobRecord) -> None:
        link = self.host.link
        if link is not None:
            link.publish_json(f"{self.jobs_topic}/{rec.id}", rec.public(self.device_id), retain=True)

    def _save(self, rec: JobRecord, persist: bool = True) -> None:
        """Persist (unless told not to), then tell: the retained job topic, an event, the log."""
        with self._lock:
            if persist:
                atomic_write(self._path(rec.id), rec.dump())
        self._publish(rec)
        event: dict[str, Any] = {"job_id": rec.id, "state": str(rec.state), "reason": rec.reason}
        if rec.state == S.DOWNLOADING and rec.progress is not None:
            event["progress"] = rec.progress.model_dump()
        self.host.emit("update.state", event)
        log.info("update", extra=kv(job_id=rec.id, state=str(rec.state), reason=rec.reason))
        if rec.done:
            self.host.publish_state()

    def _move(self, rec: JobRecord, state: UpdateState, reason: str | None = None, persist: bool = True) -> None:
        rec.move(state, reason)  # raises IllegalTransition for a change the table does not allow
        if state == S.DOWNLOADING and rec.download_started is None:
            rec.download_started = rec.updated
        self._save(rec, persist)

    # -- what is installed --------------------------------------------------------------------------

    def installed(self) -> dict[str, Any]:
        probation = self._probation()
        return {
            "model": describe(self.slots["model"].current()),
            "content": describe(self.slots["content"].current()),
            "probation": probation.model_dump() if probation else None,
        }

    def _installed_version(self, kind: str) -> str | None:
        current = self.slots[kind].current()
        if current is None:
            return None
        with contextlib.suppress(BadInput):
            return str(manifest(current).get("version"))
        return None

    def _check_newer(self, job: JobDoc) -> None:
        """Anti-rollback: the job's version must be newer than what is installed now."""
        installed = self._installed_version(job.kind)
        if installed is None:
            return
        try:
            newer = semver_key(job.version) > semver_key(installed)
        except ValueError:
            newer = True  # an installed bundle without a semantic version cannot hold anything back
        if not newer:
            raise Refused(
                S.REJECTED,
                f"anti-rollback: version {job.version} is not newer than the installed {job.kind} {installed}",
            )

    # -- accepting a job (command thread) -------------------------------------------------------------

    def _require_chain(self) -> KeyChain:
        if self.chain is None:
            raise CommandError("updates", "updates are off on this device: no updates.root_key in its config")
        return self.chain

    def submit(self, envelope: dict[str, Any]) -> dict[str, Any]:
        chain = self._require_chain()
        try:
            env = Envelope.model_validate(envelope)
        except ValidationError as exc:
            raise CommandError("job", f"not an update envelope: {first_error(exc)}") from None
        job_id = env.job.get("id")
        if not isinstance(job_id, str) or not re.match(JOB_ID, job_id):
            raise CommandError("job.id", "missing or not a valid job id (letters, digits, '_', '.', '-', at most 64)")
        try:
            key = self._authenticate(chain, env.cert, env.signature, env.job, env.revocations, "update job")
        except Refused as exc:  # not signed by us: reported, but the id is not burnt
            self._save(JobRecord.new(job_id, env.job, exc.state, exc.reason), persist=False)
            raise CommandError("job", exc.reason) from None
        with self._lock:
            if self._path(job_id).exists():
                reason = f"replayed job id {job_id}: this device has seen it before"
                # The retained record keeps what really happened to the first one; the refusal goes
                # to the reply and the events.
                self.host.emit("update.state", {"job_id": job_id, "state": str(S.REJECTED), "reason": reason})
                raise CommandError("job.id", reason)
            try:
                self._admit(env, key)
            except Refused as exc:
                rec = JobRecord.new(job_id, env.job, exc.state, exc.reason)
                rec.envelope, rec.signer = env, env.cert.get("body", {}).get("key_id")
                self._save(rec)
                raise CommandError("job", exc.reason) from None
            rec = JobRecord.new(job_id, env.job)
            rec.envelope, rec.signer = env, env.cert.get("body", {}).get("key_id")
            self._save(rec)
        self.wake.set()
        return {"job_id": job_id, "state": str(S.QUEUED)}

    @staticmethod
    def _authenticate(
        chain: KeyChain,
        cert: dict[str, Any],
        signature: str,
        doc: dict[str, Any],
        revocations: dict[str, Any] | None,
        what: str,
    ) -> Any:
        """The certified signing key that signed `doc`; Refused(REJECTED) with the reason otherwise."""
        try:
            if revocations is not None:
                chain.accept_revocations(revocations)
            key = chain.signing_key(cert)
            verify_with(key, signature, doc, what)
        except (ChainError, ValidationError) as exc:
            raise Refused(S.REJECTED, str(exc)) from None
        return key

    def _admit(self, env: Envelope, key: Any) -> JobDoc:
        try:
            job = JobDoc.model_validate(env.job)
        except ValidationError as exc:
            raise Refused(S.REJECTED, f"job {first_error(exc)}") from None
        if job.expired():
            raise Refused(S.REJECTED, f"job expired at {utc(job.expires)} UTC")
        if (why := job.targets.refusal(self.device_id, self.groups)) is not None:
            raise Refused(S.REJECTED, f"job {why}")
        kind = self.host.config.device.kind
        if job.device_kinds and kind not in job.device_kinds:
            raise Refused(S.REJECTED, f"bundle is for device kinds {job.device_kinds}, this is a {kind!r}")
        self._check_newer(job)
        if job.size > self.cfg.max_bundle_bytes:
            raise Refused(
                S.REJECTED,
                f"bundle of {job.size} bytes is over the limit of "
                f"{self.cfg.max_bundle_bytes} (updates.max_bundle_bytes)",
            )
        free = shutil.disk_usage(self.downloads).free
        need = 2 * job.size + self.cfg.min_free_bytes  # the download and the staged copy
        if need > free:
            raise Refused(
                S.REJECTED,
                f"not enough disk: {job.size} bytes twice plus {self.cfg.min_free_bytes} reserved, {free} free",
            )
        if isinstance(job.source, MqttSource) and not job.source.topic.startswith(self.fleet_prefix):
            raise Refused(S.REJECTED, f"chunk topic must lie under {self.fleet_prefix}")
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
        self.feed.put(topic, payload)

    def on_connected(self) -> None:
        self.feed.connected()
        link = self.host.link
        if link is not None:
            link.client.subscribe(self.revocations_topic, qos=1)
            # Retained job states again: anything sent while the broker was away is current now.
            for rec in self.records()[-20:]:
                self._publish(rec)

    # -- the worker ----------------------------------------------------------------------------------

    def startup(self) -> None:
        """Before the models load: clean up after a crash, count a restart in probation, roll back a loop."""
        for slots in self.slots.values():
            slots.clean()
        probation = self._probation()
        if probation is None:
            return
        if time.time() > probation.until:
            self.probation_path.unlink(missing_ok=True)
            return
        probation.restarts += 1
        atomic_write(self.probation_path, probation.model_dump_json().encode())
        if probation.restarts >= self.cfg.max_restarts:
            self.rollback(
                probation.kind,
                f"crash loop: started {probation.restarts} times within the "
                f"probation window of {self.cfg.probation_s:g} s",
                probation.job_id,
            )

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
        if time.time() > probation.until:
            self.probation_path.unlink(missing_ok=True)
            self.host.emit("update.confirmed", {"job_id": probation.job_id, "kind": probation.kind})
            self.host.publish_state()
        elif not healthy:
            self.rollback(
                probation.kind, "watchdog: the daemon was unhealthy within the probation window", probation.job_id
            )

    def _probation(self) -> Probation | None:
        try:
            return Probation.model_validate_json(self.probation_path.read_bytes())
        except (OSError, ValueError):
            return None

    def _next(self) -> JobRecord | None:
        for rec in self.records():
            if not rec.done:
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
                self._move(rec, exc.state, exc.reason)
                self._discard(rec.id)
            except Exception as exc:
                log.exception("update failed", extra=kv(job_id=rec.id))
                if not rec.done:
                    self._move(rec, S.FAILED, f"internal error: {type(exc).__name__}: {exc}")
                self._discard(rec.id)

    def _discard(self, job_id: str) -> None:
        for suffix in (".part", ".bitmap", ".bitmap.tmp"):
            job_file(self.downloads, job_id, suffix).unlink(missing_ok=True)

    def _run(self, rec: JobRecord) -> None:
        """Step the job from wherever it stands (a restart resumes here) until it is done."""
        try:
            job = rec.doc()
        except ValidationError as exc:
            raise Refused(S.REJECTED, f"job {first_error(exc)}") from None
        assert self.chain is not None and rec.envelope is not None
        try:
            key = self.chain.signing_key(rec.envelope.cert)  # revoked meanwhile: stop here
        except ChainError as exc:
            raise Refused(S.REJECTED, str(exc)) from None
        slots = self.slots[job.kind]
        try:
            final = slots.version_dir(job.name, job.version, job.sha256)
        except BadInput as exc:
            raise Refused(S.REJECTED, str(exc)) from None
        run = Run(rec, job, key, slots, job_file(self.downloads, job.id, ".part"), final)
        while not rec.done:
            self.steps[rec.state](run)

    # -- one step per state ---------------------------------------------------------------------------

    def _step_queued(self, run: Run) -> None:
        if run.job.expired():
            raise Refused(S.REJECTED, "job expired while it waited")
        self._check_newer(run.job)  # another job may have installed something newer meanwhile
        self._move(run.rec, S.DOWNLOADING)

    def _step_downloading(self, run: Run) -> None:
        rec = run.rec

        def report(progress: Progress) -> None:
            rec.progress = progress
            self._move(rec, S.DOWNLOADING)

        if rec.download_started is None:  # a record from before deadlines, or a download started over
            rec.download_started = round(time.time(), 3)
        Download(run.job, self.cfg, self.downloads, rec.download_started, self.stop, report).run(self.feed)
        self._move(rec, S.VERIFYING)
        fault("downloaded")

    def _step_verifying(self, run: Run) -> None:
        job, archive = run.job, run.archive
        if not archive.is_file():  # lost with a crash: fetch it again, a new download with its own deadline
            run.rec.download_started = None
            self._move(run.rec, S.DOWNLOADING)
            return
        if archive.stat().st_size != job.size:
            raise Refused(S.REJECTED, f"size mismatch: got {archive.stat().st_size} bytes, the job says {job.size}")
        if sha256_path(archive) != job.sha256:
            raise Refused(S.REJECTED, "sha256 mismatch: the bundle is not the one the job names")
        self._stage_verified(run, after_stage=lambda: fault("staged"))
        self._move(run.rec, S.HEALTH_CHECK)

    def _stage_verified(self, run: Run, after_stage: Callable[[], None] = lambda: None) -> None:
        try:
            run.slots.stage(run.archive, run.final)
            after_stage()
            self._verify_bundle(run.final, run.job, run.key)
        except (BadInput, ChainError) as exc:
            shutil.rmtree(run.final, ignore_errors=True)
            raise Refused(S.REJECTED, str(exc)) from None

    def _step_health_check(self, run: Run) -> None:
        rec, job, slots, final = run.rec, run.job, run.slots, run.final
        current = slots.current()
        switched = current is not None and current.resolve() == final.resolve()
        if not switched:
            if not (final / "manifest.json").is_file():  # a crash removed the staged copy
                if not run.archive.is_file():
                    rec.download_started = None
                    self._move(rec, S.DOWNLOADING)
                    return
                self._stage_verified(run)
            try:
                self._check_newer(job)  # again at install time: a job admitted earlier may be older by now
            except Refused:
                shutil.rmtree(final, ignore_errors=True)
                raise
            try:
                health = self._health(job, final, run.key)
            except HealthCheckFailed as exc:
                shutil.rmtree(final, ignore_errors=True)
                raise Refused(S.FAILED, f"health check failed: {exc}") from None
            rec.result = JobResult(health=health)
            with self._lock:  # kept across a power cut right after the switch
                atomic_write(self._path(rec.id), rec.dump())
            fault("health_checked")
            slots.switch(final)
            fault("switched")
        until = time.time() + self.cfg.probation_s
        probation = Probation(job_id=job.id, kind=job.kind, until=until)
        atomic_write(self.probation_path, probation.model_dump_json().encode())
        try:
            self.apply(job.kind)
        except Exception as exc:
            self._roll_back(job.kind, f"the new {job.kind} did not start: {type(exc).__name__}: {exc}", rec)
            return
        self._discard(job.id)
        rec.result = JobResult(health=rec.result.health if rec.result else None, probation_until=round(until, 3))
        self._move(rec, S.SUCCEEDED)
        fault("succeeded")

    def _verify_bundle(self, folder: Path, job: JobDoc, key: Any) -> None:
        verify_bundle_signature(folder, key)
        doc = manifest(folder)
        if (doc.get("name"), doc.get("version")) != (job.name, job.version):
            raise BadInput(
                f"the bundle is {doc.get('name')} {doc.get('version')}; the job names {job.name} {job.version}"
            )
        kinds = doc.get("device_kinds") or []
        kind = self.host.config.device.kind
        if kinds and kind not in kinds:
            raise BadInput(f"bundle manifest is for device kinds {kinds}, this is a {kind!r}")
        if job.kind == "model":
            from device.runtime.bundle import Bundle

            Bundle(folder, keys=[key])  # format and contract

    def _health(self, job: JobDoc, folder: Path, key: Any) -> dict[str, Any]:
        if job.kind == "content":
            return check_content(folder)
        generator = self.host.config.generator
        return check_model(folder, generator.backend, key, self.cfg.latency_budget_ms, generator.runtime_settings())

    def apply(self, kind: str) -> None:
        """Make the running daemon use what `current` now points at."""
        current = self.slots[kind].current()
        if kind == "model" and current is not None:
            self.host.apply_model(current, self.trusted_keys())
        if kind == "content" and current is not None:
            self.host.apply_content(current)
        self.host.publish_state()

    def trusted_keys(self) -> list[Any]:
        """The repo's trusted keys plus every certified, unrevoked key that signed a bundle installed here."""
        from device.runtime.bundle import trusted_keys

        keys = trusted_keys()
        if self.chain is not None:
            for rec in self.records():
                if rec.envelope is not None:
                    with contextlib.suppress(ChainError):
                        keys.append(self.chain.signing_key(rec.envelope.cert))
        return keys

    # -- rollback -------------------------------------------------------------------------------------

    def rollback(self, kind: BundleKind, reason: str, job_id: str | None = None) -> dict[str, Any]:
        """Back to the kept previous version: local triggers (crash loop, watchdog) and signed orders."""
        rec = None
        if job_id is not None:
            with contextlib.suppress(OSError, ValueError, BadInput):
                rec = self._load(job_id)
        return self._roll_back(kind, reason, rec)

    def _roll_back(self, kind: BundleKind, reason: str, rec: JobRecord | None) -> dict[str, Any]:
        restored = self.slots[kind].rollback()
        probation = self._probation()
        if probation is not None and probation.kind == kind:
            self.probation_path.unlink(missing_ok=True)
        try:
            self.apply(kind)
        except Exception as exc:  # the old version is on disk; the next start loads it
            log.warning("rollback: could not apply the restored version", extra=kv(kind=kind, error=str(exc)))
        doc = {"kind": kind, "restored": describe(restored), "reason": reason}
        if rec is not None and S.ROLLED_BACK in TRANSITIONS[rec.state]:
            self._move(rec, S.ROLLED_BACK, reason)
        self.host.emit("update.rolled_back", {"job_id": rec.id if rec else None, **doc})
        self.host.publish_state()
        log.warning("rolled back", extra=kv(kind=kind, reason=reason))
        return doc

    def rollback_command(self, command: RollbackRequest) -> dict[str, Any]:
        """The operator's `rollback` verb: a signed order that names this device, once per order id."""
        chain = self._require_chain()
        try:
            order = self._accept_order(chain, command)
        except Refused as exc:
            self.host.emit("update.rollback_refused", {"reason": exc.reason})
            log.warning("rollback refused", extra=kv(reason=exc.reason))
            raise CommandError("order", exc.reason) from None
        kind = order.kind
        probation = self._probation()
        job_id = probation.job_id if probation and probation.kind == kind else None
        if job_id is None:
            for rec in reversed(self.records()):
                if rec.state == S.SUCCEEDED and rec.job.get("kind") == kind:
                    job_id = rec.id
                    break
        try:
            doc = self.rollback(kind, f"rolled back by the operator (order {order.id})", job_id)
        except BadInput as exc:
            raise CommandError("order.kind", str(exc)) from None
        return {"order_id": order.id, **doc}

    def _accept_order(self, chain: KeyChain, command: RollbackRequest) -> RollbackOrder:
        try:
            env = OrderEnvelope(
                order=command.order, signature=command.signature, cert=command.cert, revocations=command.revocations
            )
        except ValidationError as exc:
            raise Refused(S.REJECTED, f"not a signed rollback order: {first_error(exc)}") from None
        self._authenticate(chain, env.cert, env.signature, env.order, env.revocations, "rollback order")
        try:
            order = RollbackOrder.model_validate(env.order)
        except ValidationError as exc:
            raise Refused(S.REJECTED, f"rollback order {first_error(exc)}") from None
        if order.expired():
            raise Refused(S.REJECTED, f"rollback order {order.id} expired at {utc(order.expires)} UTC")
        if (why := order.targets.refusal(self.device_id, self.groups)) is not None:
            raise Refused(S.REJECTED, f"rollback order {order.id} is {why}")
        if not self.orders.claim(order.id, order.expires):
            raise Refused(S.REJECTED, f"replayed rollback order {order.id}: this device has carried it out before")
        return order
