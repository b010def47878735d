"""The persistent job queue: durable, ordered, bounded, cancellable, and honest after a crash."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from device.service.jobs import DuplicateJob, JobQueue, JobState, QueueFull


def queue(tmp_path: Path, **options: object) -> JobQueue:
    return JobQueue(tmp_path / "jobs.sqlite", **options)  # type: ignore[arg-type]


def test_accepted_job_survives_reopening(tmp_path: Path) -> None:
    q = queue(tmp_path)
    q.accept("animate", {"photo": "/p.png"}, job_id="j1")
    q.close()
    job = queue(tmp_path).get("j1")
    assert (job.state, job.payload) == (JobState.QUEUED, {"photo": "/p.png"})


def test_file_uses_write_ahead_logging(tmp_path: Path) -> None:
    queue(tmp_path).close()
    with sqlite3.connect(tmp_path / "jobs.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_claims_by_priority_then_first_come(tmp_path: Path) -> None:
    q = queue(tmp_path)
    for job_id, priority in [("b1", "batch"), ("i1", "interactive"), ("k1", "kiosk"), ("i2", "interactive")]:
        q.accept("animate", {}, priority, job_id)
    order = [q.claim().id for _ in range(4)]  # type: ignore[union-attr]
    assert order == ["k1", "i1", "i2", "b1"]
    assert q.claim() is None


def test_full_queue_rejects_clearly_and_stores_nothing(tmp_path: Path) -> None:
    q = queue(tmp_path, max_size=2)
    q.accept("animate", {}, job_id="a")
    q.accept("animate", {}, job_id="b")
    with pytest.raises(QueueFull, match="queue full: 2 jobs"):
        q.accept("animate", {}, job_id="c")
    assert [j.id for j in q.jobs()] == ["a", "b"]


def test_finished_jobs_free_their_place(tmp_path: Path) -> None:
    q = queue(tmp_path, max_size=1)
    q.accept("animate", {}, job_id="a")
    q.complete(q.claim().id, {"clip": "/c.mp4"})  # type: ignore[union-attr]
    assert q.accept("animate", {}, job_id="b").state == JobState.QUEUED


def test_repeated_id_is_not_queued_twice(tmp_path: Path) -> None:
    q = queue(tmp_path)
    q.accept("animate", {}, job_id="same")
    with pytest.raises(DuplicateJob):
        q.accept("animate", {}, job_id="same")
    assert q.depth() == 1


def test_cancel_waiting_job_removes_it_from_the_line(tmp_path: Path) -> None:
    q = queue(tmp_path)
    q.accept("animate", {}, job_id="a")
    assert q.cancel("a").state == JobState.CANCELLED
    assert q.claim() is None


def test_cancel_running_job_asks_the_worker(tmp_path: Path) -> None:
    q = queue(tmp_path)
    q.accept("animate", {}, job_id="a")
    q.claim()
    job = q.cancel("a")
    assert job.state == JobState.RUNNING and job.cancel_requested


def test_finished_job_cannot_be_cancelled(tmp_path: Path) -> None:
    q = queue(tmp_path)
    q.accept("animate", {}, job_id="a")
    q.fail(q.claim().id, "no face")  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="already FAILED"):
        q.cancel("a")


def test_running_job_gets_a_deadline_from_its_timeout(tmp_path: Path) -> None:
    q = queue(tmp_path, timeout_s=30.0)
    q.accept("animate", {}, job_id="a", timeout_s=5.0)
    job = q.claim()
    assert job is not None and job.deadline == pytest.approx(job.started + 5.0)


def test_crashed_job_is_resumed_with_its_attempt_counted(tmp_path: Path) -> None:
    q = queue(tmp_path, max_attempts=3)
    q.accept("animate", {}, job_id="a")
    q.claim()
    q.close()  # the process dies with the job RUNNING
    q = queue(tmp_path, max_attempts=3)
    [(job, outcome)] = q.recover()
    assert (job.id, outcome, job.state, job.attempts) == ("a", "resumed", JobState.QUEUED, 1)
    assert q.claim().attempts == 2  # type: ignore[union-attr]


def test_job_crashing_every_time_is_failed_explicitly(tmp_path: Path) -> None:
    q = queue(tmp_path, max_attempts=2)
    q.accept("animate", {}, job_id="a")
    for _ in range(2):
        q.claim()
        q.recover()  # a crash, then a restart
    job = q.get("a")
    assert job.state == JobState.FAILED and "interrupted 2 times" in (job.reason or "")


def test_crashed_job_with_a_pending_cancel_ends_cancelled(tmp_path: Path) -> None:
    q = queue(tmp_path)
    q.accept("animate", {}, job_id="a")
    q.claim()
    q.cancel("a")
    [(job, outcome)] = q.recover()
    assert (outcome, job.state) == ("cancelled", JobState.CANCELLED)


def test_release_for_shutdown_does_not_use_an_attempt(tmp_path: Path) -> None:
    q = queue(tmp_path)
    q.accept("animate", {}, job_id="a")
    q.claim()
    job = q.release("a")
    assert (job.state, job.attempts) == (JobState.QUEUED, 0)


def test_prune_forgets_only_old_finished_jobs(tmp_path: Path) -> None:
    q = queue(tmp_path)
    q.accept("animate", {}, job_id="done")
    q.complete(q.claim().id, {})  # type: ignore[union-attr]
    q.accept("animate", {}, job_id="waiting")
    assert q.prune(older_than_s=-1.0) == 1
    assert [j.id for j in q.jobs()] == ["waiting"]
