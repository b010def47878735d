"""The job worker and housekeeping, in process (no broker needed): timeouts, errors, retention."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from device.config import ConfigStore
from device.pipeline import AnimateRequest, AnimateResult
from device.service.daemon import Daemon
from device.service.jobs import JobState
from tests.service.support import toml_dumps


class BrokenAnimator:
    """A renderer whose runtime fails mid-clip, as a GPU driver fault would."""

    def animate(self, request: AnimateRequest, progress: Any = None, should_cancel: Any = None) -> AnimateResult:
        raise RuntimeError("GPU fell off the bus")


@pytest.fixture
def make_daemon(tmp_path: Path, photos: Path) -> Iterator[Any]:
    made: list[Daemon] = []

    def make(jobs: dict[str, Any] | None = None) -> Daemon:
        doc = {
            "device": {"id": "worker-test", "state_dir": str(tmp_path / "state")},
            "mqtt": {"enabled": False},
            "jobs": {"photo_dirs": [str(photos)], **(jobs or {})},
            "output": {"size": 128, "fps": 10},
            "generator": {"backend": "none"},
        }
        path = tmp_path / "portrait.toml"
        path.write_text(toml_dumps(doc))
        daemon = Daemon(ConfigStore(path))
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.queue.close()
        daemon.outbox.close()


def animate(daemon: Daemon, photos: Path, **options: Any) -> dict[str, Any]:
    payload = json.dumps({"photo": str(photos / "astronaut.png"), **options}).encode()
    return daemon.handle_command("portrait/worker-test/cmd/animate", payload)


def stored_events(daemon: Daemon) -> list[dict[str, Any]]:
    with sqlite3.connect(daemon.config.device.state_dir / "outbox.sqlite") as db:
        return [json.loads(row[0]) for row in db.execute("SELECT payload FROM outbox ORDER BY seq")]


def test_job_past_its_timeout_is_stopped_and_failed(make_daemon: Any, photos: Path) -> None:
    from device.pipeline import Animator

    daemon = make_daemon({"timeout_s": 0.5})
    daemon.animator = Animator(backend="none")
    job_id = animate(daemon, photos, seconds=120, fps=25)["job_id"]
    started = time.monotonic()
    job = daemon.run_next()
    assert time.monotonic() - started < 30
    assert job.state == JobState.FAILED and "timed out after 0.5 s" in job.reason
    event = stored_events(daemon)[-1]
    assert (event["type"], event["job_id"], event["error"]) == ("job.failed", job_id, "timeout")


def test_internal_error_fails_the_job_with_its_reason(make_daemon: Any, photos: Path) -> None:
    daemon = make_daemon()
    daemon.animator = BrokenAnimator()
    animate(daemon, photos, seconds=1)
    job = daemon.run_next()
    assert job.state == JobState.FAILED and job.reason == "internal error: RuntimeError: GPU fell off the bus"
    assert stored_events(daemon)[-1]["error"] == "internal"


def test_full_queue_is_refused_with_a_clear_reply(make_daemon: Any, photos: Path) -> None:
    daemon = make_daemon({"queue_size": 1})
    assert animate(daemon, photos)["ok"] is True
    reply = animate(daemon, photos)
    assert reply["ok"] is False and reply["error"]["field"] == "queue"
    assert "queue full" in reply["error"]["message"] and daemon.queue.depth() == 1


def test_retention_deletes_old_visitor_media_only(make_daemon: Any) -> None:
    daemon = make_daemon({"retention_hours": 1.0})
    old_photo, new_photo = daemon.config.media_dir / "old.png", daemon.config.media_dir / "new.png"
    operator_clip = daemon.config.clips_dir / "old.mp4"
    for path in (old_photo, new_photo, operator_clip):
        path.write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    for path in (old_photo, operator_clip):
        os.utime(path, (two_hours_ago, two_hours_ago))
    assert daemon.cleanup() == 1
    assert not old_photo.exists() and new_photo.exists() and operator_clip.exists()
