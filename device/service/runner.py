"""The job runner: renders queued jobs one at a time on its own thread; a job accepted is never lost.

It knows the queue, the renderer, and a few callbacks (events, frame metrics, the kiosk screen); it
does not know the daemon. A storage failure (a full disk: sqlite's "database or disk is full") does
not end the thread: the step that failed is retried with backoff, the failure is reported in
`storage_error` (health and state show it), and the job carries on from where it was once space is back.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from device.config import AppConfig
from device.errors import BadInput, CommandError
from device.logs import kv
from device.pipeline import AnimateRequest, AnimateResult
from device.service.commands import image_kind
from device.service.jobs import DuplicateJob, Job, JobQueue, JobState, QueueFull, UnknownJob
from device.service.stats import FrameMetrics

log = logging.getLogger("portrait.jobs")

T = TypeVar("T")
Emit = Callable[[str, dict[str, Any]], Any]
STORAGE_ERRORS = (sqlite3.OperationalError, OSError)  # a full or failing disk, as sqlite and the OS say it


class AnimatorLike(Protocol):
    def animate(
        self,
        request: AnimateRequest,
        progress: Callable[[int, int], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> AnimateResult: ...


class JobAborted(Exception):
    """Raised from the progress callback to stop a render: cancelled, timed out, or shutting down."""


class StorageRetry:
    """Backoff for storage that failed: 0.5 s doubling to 30 s; remembers the last error for health."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.error: str | None = None

    def run(self, what: str, step: Callable[[], T]) -> T:
        """Run step until it succeeds; raises JobAborted("shutdown") if the runner stops meanwhile."""
        delay = 0.5
        while True:
            try:
                result = step()
            except STORAGE_ERRORS as exc:
                if self.error is None:
                    log.error("storage failed; retrying", extra=kv(step=what, error=str(exc)))
                self.error = f"{what}: {exc}"
                if self.stop.wait(delay):
                    raise JobAborted("shutdown") from None
                delay = min(delay * 2, 30.0)
                continue
            if self.error is not None:
                log.warning("storage recovered", extra=kv(step=what))
                self.error = None
            return result


class JobRunner:
    def __init__(
        self,
        queue: JobQueue,
        config: Callable[[], AppConfig],
        emit: Emit,
        metrics: FrameMetrics,
        show_clip: Callable[[Path], None] | None = None,
    ) -> None:
        self.queue = queue
        self.config = config
        self.emit = emit
        self.metrics = metrics
        self.show_clip = show_clip
        self.animator: AnimatorLike | None = None
        self.current: Job | None = None
        self.last_timings: dict[str, Any] = {}
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        self.storage = StorageRetry(self.stop_event)
        self._abort: dict[str, str] = {}  # job id -> why it must stop
        self._shutting_down = False
        self._finishing: str | None = None  # the job that may still end during the shutdown
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- accepting --------------------------------------------------------------------------------

    def accept(
        self,
        payload: dict[str, Any],
        priority: str,
        job_id: str | None,
        visitor: bool,
        photo_bytes: bytes | None = None,
    ) -> dict[str, Any]:
        """Queue a render job and report it; the reply goes out after the job is on disk."""
        config = self.config()
        job_id = job_id or uuid.uuid4().hex[:12]
        try:
            existing = self.queue.get(job_id)
        except UnknownJob:
            existing = None
        if existing is not None:
            # A redelivered command (QoS 1 is at least once): report the job it made, run nothing new.
            return {"job_id": existing.id, "state": str(existing.state), "duplicate": True}
        photo = None
        try:
            if photo_bytes is not None:
                photo = config.media_dir / f"{job_id}.{image_kind(photo_bytes)}"
                photo.write_bytes(photo_bytes)
                payload["photo"] = str(photo)
            folder = config.media_dir if visitor else config.clips_dir
            payload.update({"out": str(folder / f"{job_id}.mp4"), "visitor": visitor})
            job = self.queue.accept("animate", payload, priority, job_id, config.jobs.timeout_s)
        except DuplicateJob as exc:
            return {"job_id": exc.job.id, "state": str(exc.job.state), "duplicate": True}
        except QueueFull as exc:
            if photo is not None:
                photo.unlink(missing_ok=True)
            raise CommandError("queue", str(exc)) from None
        except STORAGE_ERRORS as exc:
            if photo is not None:
                photo.unlink(missing_ok=True)
            log.error("job not stored", extra=kv(job_id=job_id, error=str(exc)))
            raise CommandError("storage", f"cannot store the job now ({exc}); nothing was queued, try again") from None
        self.emit("job.accepted", {"job_id": job.id, "priority": priority, "queue_depth": self.queue.depth()})
        self.wake.set()
        return {"job_id": job.id, "state": str(JobState.QUEUED)}

    def cancel(self, job_id: str) -> dict[str, Any]:
        try:
            job = self.queue.cancel(job_id)
        except UnknownJob:
            raise CommandError("job_id", f"no job {job_id}") from None
        except ValueError as exc:
            raise CommandError("job_id", str(exc)) from None
        if job.state == JobState.CANCELLED:
            self.emit("job.cancelled", {"job_id": job.id, "reason": job.reason})
        else:
            with self._lock:
                self._abort[job.id] = "cancelled"
        return {"job_id": job.id, "state": str(job.state), "cancel_requested": job.state == JobState.RUNNING}

    # -- the thread -------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="worker", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def begin_shutdown(self, grace_s: float) -> None:
        """Finish a job that is about to end; stop and re-queue anything longer."""
        job = self.current
        if job is not None:
            elapsed = time.time() - (job.started or time.time())
            remaining = elapsed * (job.total - job.done) / job.done if job.done else float("inf")
            if remaining <= grace_s:
                self._finishing = job.id
        self._shutting_down = True

    def stop(self, timeout: float) -> None:
        self.stop_event.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def hung(self) -> bool:
        """A job still running well past its timeout: it ignores cancellation."""
        job = self.current
        grace = self.config().jobs.hung_grace_s
        return job is not None and job.deadline is not None and time.time() > job.deadline + grace

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                job = self.run_next()
            except JobAborted:
                break
            except Exception:
                # Whatever went wrong with one job, the runner goes on with the next.
                log.exception("worker step failed")
                self.stop_event.wait(1.0)
                continue
            if job is None:
                self.wake.wait(0.5)
                self.wake.clear()

    def run_next(self) -> Job | None:
        """Claim the next job and run it to its end (done, failed, cancelled or re-queued)."""
        job = self.storage.run("claim a job", self.queue.claim)
        if job is None:
            return None
        if self.stop_event.is_set():  # claimed just as the shutdown began: leave it for next time
            return self.storage.run("re-queue a job", lambda: self.queue.release(job.id))
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
        config, p = self.config(), job.payload
        return AnimateRequest(
            photo=Path(p["photo"]),
            out=Path(p["out"]),
            text=p.get("text"),
            audio=Path(p["audio"]) if p.get("audio") else None,
            transcript=p.get("transcript"),
            lang=p.get("lang") or "en",
            voice=p.get("voice"),
            fps=p.get("fps") or config.output.fps,
            size=p.get("size") or config.output.size,
            seconds=p.get("seconds"),
            backend=config.generator.backend,
            max_pixels=config.jobs.max_photo_pixels,
            overwrite=True,  # the clip's name is the job's own: a job resumed after a crash renders it again
        )

    def _run_job(self, job: Job) -> None:
        self.current = job
        self.emit("job.started", {"job_id": job.id, "attempt": job.attempts})
        log.info("job started", extra=kv(job_id=job.id, attempt=job.attempts))
        interval = self.config().jobs.progress_interval_s
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
                try:
                    self.queue.progress(job.id, done, total)
                except STORAGE_ERRORS as exc:
                    self.storage.error = f"job progress: {exc}"  # progress is advisory: render on
                self.emit("job.progress", {"job_id": job.id, "done": done, "total": total})
            reason = self._abort_reason(job)
            if reason is not None:
                raise JobAborted(reason)

        try:
            if self.animator is None:
                raise RuntimeError("the renderer is not loaded")
            result = self.animator.animate(self._request(job), progress=progress, should_cancel=should_cancel)
        except Exception as exc:
            self._ended_badly(job, exc)
        else:
            summary = {
                "clip": str(result.out),
                "frames": result.frames,
                "seconds": result.seconds,
                "render_fps": round(result.render_fps, 2),
                "wall_seconds": round(result.wall_seconds, 3),
                "generator": result.generator,
            }
            self.last_timings = dict(result.timings)
            # The clip is rendered: keep trying to record that, rather than render it again.
            self.storage.run(
                "record a finished job", lambda: self.queue.complete(job.id, {**summary, "timings": result.timings})
            )
            self.emit("job.done", {"job_id": job.id, **summary})
            if job.priority == "kiosk" and self.show_clip is not None:
                self.show_clip(result.out)  # the visitor sees (and hears) their own face speak
            wall = round(time.monotonic() - started, 2)
            log.info("job done", extra=kv(job_id=job.id, frames=result.frames, wall_s=wall))
        finally:
            with self._lock:
                self._abort.pop(job.id, None)
            self.current = None

    def _ended_badly(self, job: Job, exc: Exception) -> None:
        abort = self._abort_reason(job)
        if abort == "shutdown":
            # Checkpoint: back in the queue without using up an attempt; the next start renders it.
            self.queue.release(job.id)
            self.emit("job.requeued", {"job_id": job.id, "reason": "shutdown"})
            log.info("job re-queued for shutdown", extra=kv(job_id=job.id))
        elif abort == "cancelled":
            self.storage.run("record a cancelled job", lambda: self.queue.mark_cancelled(job.id))
            self.emit("job.cancelled", {"job_id": job.id, "reason": "cancelled by command"})
        elif abort == "timeout":
            reason = f"timed out after {job.timeout_s:g} s (jobs.timeout_s)"
            self.storage.run("record a failed job", lambda: self.queue.fail(job.id, reason))
            self.emit("job.failed", {"job_id": job.id, "error": "timeout", "reason": reason})
            log.warning("job timed out", extra=kv(job_id=job.id))
        elif isinstance(exc, BadInput):
            self.storage.run("record a failed job", lambda: self.queue.fail(job.id, str(exc)))
            self.emit("job.failed", {"job_id": job.id, "error": "bad_input", "reason": str(exc)})
            log.warning("job refused its input", extra=kv(job_id=job.id, reason=str(exc)))
        else:
            reason = f"internal error: {type(exc).__name__}: {exc}"
            self.storage.run("record a failed job", lambda: self.queue.fail(job.id, reason))
            self.emit("job.failed", {"job_id": job.id, "error": "internal", "reason": reason})
            log.error("job failed", exc_info=exc, extra=kv(job_id=job.id))

    def recover(self) -> None:
        """Report what became of the jobs a crash or power cut interrupted."""
        for job, outcome in self.queue.recover():
            if outcome == "resumed":
                self.emit(
                    "job.resumed",
                    {"job_id": job.id, "attempt": job.attempts + 1, "reason": "interrupted by a crash or restart"},
                )
            elif outcome == "failed":
                self.emit("job.failed", {"job_id": job.id, "error": "interrupted", "reason": job.reason})
            else:
                self.emit("job.cancelled", {"job_id": job.id, "reason": job.reason})
            log.warning("unfinished job found", extra=kv(job_id=job.id, outcome=outcome, attempts=job.attempts))

    # -- housekeeping -----------------------------------------------------------------------------

    def cleanup(self, now: float | None = None) -> int:
        """Delete visitor photos and clips past the retention; forget old finished jobs."""
        config = self.config()
        now = time.time() if now is None else now
        limit = config.jobs.retention_hours * 3600.0
        removed = 0
        # A visitor's photo stays while its job waits or runs, however long that takes.
        active = {job.id for job in self.queue.jobs(JobState.QUEUED, JobState.RUNNING)}
        for path in config.media_dir.iterdir():
            try:
                if path.is_file() and now - path.stat().st_mtime >= limit and path.stem not in active:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        self.queue.prune(config.jobs.keep_finished_days * 86400.0)
        if removed:
            log.info("visitor media deleted", extra=kv(files=removed))
        return removed
