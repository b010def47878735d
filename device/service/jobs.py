"""A persistent job queue in one SQLite file: a job accepted is never lost.

States: QUEUED -> RUNNING -> DONE | FAILED | CANCELLED. A job found RUNNING when the queue opens was
interrupted by a crash or power cut: `recover()` puts it back in the queue, or fails it once it has
been started `max_attempts` times, and returns what it did so the daemon can report each one.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

# Lower runs first: a visitor waiting at the kiosk before an operator's batch job.
PRIORITIES = {"kiosk": 0, "interactive": 1, "batch": 2}


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FINISHED = (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


class QueueFull(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(f"queue full: {size} jobs waiting or running; try again later")
        self.size = size


class DuplicateJob(Exception):
    """The id is taken: a redelivered command (QoS 1 is at-least-once) must not run twice."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} exists ({job.state})")
        self.job = job


class UnknownJob(KeyError):
    pass


@dataclass
class Job:
    id: str
    kind: str
    priority: str
    payload: dict[str, Any]
    state: JobState
    attempts: int
    timeout_s: float
    created: float
    started: float | None = None
    finished: float | None = None
    done: int = 0
    total: int = 0
    reason: str | None = None
    result: dict[str, Any] | None = None
    cancel_requested: bool = False

    @property
    def deadline(self) -> float | None:
        return None if self.started is None else self.started + self.timeout_s

    def summary(self) -> dict[str, Any]:
        """What `status` and events show; the payload stays on the device (it may hold visitor data)."""
        return {
            "job_id": self.id,
            "kind": self.kind,
            "priority": self.priority,
            "state": str(self.state),
            "attempts": self.attempts,
            "progress": {"done": self.done, "total": self.total},
            "reason": self.reason,
            "result": self.result,
        }


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- FIFO order within a priority
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    priority INTEGER NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    timeout_s REAL NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    result TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_next ON jobs (state, priority, seq);
"""
_COLUMNS = (
    "id, kind, priority, payload, state, attempts, timeout_s, created, started, finished, done, total, "
    "reason, result, cancel_requested"
)
_PRIORITY_NAMES = {v: k for k, v in PRIORITIES.items()}


class JobQueue:
    """Thread-safe: the command handler accepts, the worker claims, the main loop inspects."""

    def __init__(self, path: Path, max_size: int = 50, max_attempts: int = 3, timeout_s: float = 600.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_size = max_size
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self._lock = threading.RLock()
        # autocommit mode: every statement commits unless wrapped in an explicit BEGIN IMMEDIATE.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: the "accepted" reply goes out after the commit reached the disk, power cut included.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _row(self, row: tuple[Any, ...]) -> Job:
        (
            jid,
            kind,
            prio,
            payload,
            state,
            attempts,
            timeout_s,
            created,
            started,
            finished,
            done,
            total,
            reason,
            result,
            cancel,
        ) = row
        return Job(
            id=jid,
            kind=kind,
            priority=_PRIORITY_NAMES.get(prio, "batch"),
            payload=json.loads(payload),
            state=JobState(state),
            attempts=attempts,
            timeout_s=timeout_s,
            created=created,
            started=started,
            finished=finished,
            done=done,
            total=total,
            reason=reason,
            result=json.loads(result) if result else None,
            cancel_requested=bool(cancel),
        )

    def get(self, job_id: str) -> Job:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise UnknownJob(job_id)
        return self._row(row)

    def depth(self) -> int:
        """Jobs waiting or running: what the bound applies to."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs WHERE state IN ('QUEUED', 'RUNNING')").fetchone()[0]

    def jobs(self, *states: JobState) -> list[Job]:
        """Jobs in these states (all when none given) in the order they would run."""
        query = f"SELECT {_COLUMNS} FROM jobs"
        if states:
            query += f" WHERE state IN ({','.join('?' * len(states))})"
        with self._lock:
            rows = self._db.execute(query + " ORDER BY priority, seq", [str(s) for s in states]).fetchall()
        return [self._row(r) for r in rows]

    def accept(
        self,
        kind: str,
        payload: dict[str, Any],
        priority: str = "interactive",
        job_id: str | None = None,
        timeout_s: float | None = None,
    ) -> Job:
        """Store a new job; raises QueueFull or DuplicateJob, and then nothing is stored."""
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {sorted(PRIORITIES)}")
        job_id = job_id or uuid.uuid4().hex[:12]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                existing = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if existing is not None:
                    raise DuplicateJob(self._row(existing))
                depth = self._db.execute("SELECT COUNT(*) FROM jobs WHERE state IN ('QUEUED', 'RUNNING')").fetchone()[0]
                if depth >= self.max_size:
                    raise QueueFull(self.max_size)
                self._db.execute(
                    "INSERT INTO jobs (id, kind, priority, payload, state, timeout_s, created) "
                    "VALUES (?, ?, ?, ?, 'QUEUED', ?, ?)",
                    (
                        job_id,
                        kind,
                        PRIORITIES[priority],
                        json.dumps(payload),
                        timeout_s if timeout_s is not None else self.timeout_s,
                        time.time(),
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return self.get(job_id)

    def set_payload(self, job_id: str, payload: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET payload = ? WHERE id = ?", (json.dumps(payload), job_id))

    def claim(self) -> Job | None:
        """The next job by priority, then first come first served; it is RUNNING from now on."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT id FROM jobs WHERE state = 'QUEUED' ORDER BY priority, seq LIMIT 1"
                ).fetchone()
                if row is not None:
                    self._db.execute(
                        "UPDATE jobs SET state = 'RUNNING', attempts = attempts + 1, started = ?, "
                        "done = 0, total = 0 WHERE id = ?",
                        (time.time(), row[0]),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return None if row is None else self.get(row[0])

    def progress(self, job_id: str, done: int, total: int) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET done = ?, total = ? WHERE id = ?", (done, total, job_id))

    def _finish(self, job_id: str, state: JobState, reason: str | None, result: dict[str, Any] | None) -> Job:
        with self._lock:
            cursor = self._db.execute(
                "UPDATE jobs SET state = ?, finished = ?, reason = ?, result = ? "
                "WHERE id = ? AND state IN ('QUEUED', 'RUNNING')",
                (str(state), time.time(), reason, json.dumps(result) if result is not None else None, job_id),
            )
        job = self.get(job_id)
        if cursor.rowcount == 0:
            raise ValueError(f"job {job_id} is already {job.state}")
        return job

    def complete(self, job_id: str, result: dict[str, Any]) -> Job:
        return self._finish(job_id, JobState.DONE, None, result)

    def fail(self, job_id: str, reason: str) -> Job:
        return self._finish(job_id, JobState.FAILED, reason, None)

    def cancel(self, job_id: str) -> Job:
        """A waiting job is cancelled now; a running one is asked to stop (the worker finishes it)."""
        job = self.get(job_id)
        if job.state == JobState.QUEUED:
            return self._finish(job_id, JobState.CANCELLED, "cancelled by command", None)
        if job.state == JobState.RUNNING:
            with self._lock:
                self._db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            return self.get(job_id)
        raise ValueError(f"job {job_id} is already {job.state}")

    def mark_cancelled(self, job_id: str, reason: str = "cancelled by command") -> Job:
        return self._finish(job_id, JobState.CANCELLED, reason, None)

    def release(self, job_id: str) -> Job:
        """Put a running job back at the head of its priority (clean shutdown): no attempt is used up."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state = 'QUEUED', attempts = MAX(attempts - 1, 0), started = NULL "
                "WHERE id = ? AND state = 'RUNNING'",
                (job_id,),
            )
        return self.get(job_id)

    def recover(self) -> list[tuple[Job, str]]:
        """Jobs left RUNNING by a crash, each with what became of it: 'resumed', 'failed' or 'cancelled'."""
        outcomes = []
        for job in self.jobs(JobState.RUNNING):
            if job.cancel_requested:
                outcomes.append((self.mark_cancelled(job.id, "cancelled; interrupted by a restart"), "cancelled"))
            elif job.attempts >= self.max_attempts:
                reason = f"interrupted {job.attempts} times (crash or restart); giving up"
                outcomes.append((self.fail(job.id, reason), "failed"))
            else:
                with self._lock:
                    self._db.execute(
                        "UPDATE jobs SET state = 'QUEUED', started = NULL WHERE id = ? AND state = 'RUNNING'",
                        (job.id,),
                    )
                outcomes.append((self.get(job.id), "resumed"))
        return outcomes

    def prune(self, older_than_s: float) -> int:
        """Forget finished jobs older than this, so the file does not grow for months."""
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM jobs WHERE state IN ('DONE', 'FAILED', 'CANCELLED') AND finished < ?",
                (time.time() - older_than_s,),
            )
        return cursor.rowcount
