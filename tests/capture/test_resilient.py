"""ResilientCamera: a camera that fails is reported, retried with bounded backoff, and comes back."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device.capture import (
    CameraError,
    CameraUnsupported,
    FileCamera,
    Picamera2Camera,
    ResilientCamera,
)
from tests.capture.conftest import StandInPicamera2, solid, write_photo


def _has_picamera2() -> bool:
    try:
        import picamera2  # noqa: F401
    except ImportError:
        return False
    return True


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, kind: str, detail: dict[str, Any]) -> None:
        self.seen.append((kind, detail))

    @property
    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.seen]


def read_until(camera: ResilientCamera, done: Callable[[np.ndarray | None], bool], timeout: float = 3.0) -> float:
    """Read until `done(frame)`; return the slowest single read() seen, to show none blocked."""
    deadline = time.monotonic() + timeout
    slowest = 0.0
    while time.monotonic() < deadline:
        start = time.monotonic()
        frame = camera.read()
        slowest = max(slowest, time.monotonic() - start)
        if done(frame):
            return slowest
        time.sleep(0.002)
    raise AssertionError("condition not reached in time")


def test_failing_capture_is_reported_retried_with_backoff_and_restored(
    picamera2_class: type[StandInPicamera2],
) -> None:
    events = Events()
    camera = ResilientCamera(
        Picamera2Camera(picamera2_class=picamera2_class), on_event=events, min_backoff=0.02, max_backoff=0.08
    )
    with camera:
        assert camera.read() is not None and camera.available
        picamera2_class.fail_capture = True
        picamera2_class.fail_open = 4  # the camera stays away for four reopen attempts
        assert camera.read() is None
        assert events.kinds == ["camera_lost"] and not camera.available
        assert "Device or resource busy" in events.seen[0][1]["error"]
        picamera2_class.fail_capture = False
        slowest = read_until(camera, lambda frame: frame is not None)
        assert camera.available and camera.losses == 1
    assert slowest < 0.05  # reopening happened off the caller's thread
    assert events.kinds == ["camera_lost", "camera_restored"]
    assert events.seen[1][1]["attempts"] == 5 and events.seen[1][1]["camera"] == "picamera2:0"
    # The first open, then five reopen attempts: waits of 20, 40, 80, 80, 80 ms.
    gaps = np.diff(picamera2_class.open_times[1:])
    assert len(gaps) == 4
    assert gaps[0] >= 0.035 and gaps[-1] >= 0.07  # it backs off ...
    assert gaps.max() < 0.08 + 0.06  # ... but never beyond max_backoff (plus scheduling slack)
    # Every camera that was given up on was stopped and closed; the live one is closed on exit.
    assert all(cam.closed for cam in picamera2_class.instances)


def test_a_file_source_that_vanishes_and_returns(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    write_photo(folder / "a.png", solid((10, 20, 30)))
    events = Events()
    camera = ResilientCamera(FileCamera(folder), on_event=events, min_backoff=0.01, max_backoff=0.05)
    with camera:
        assert camera.read() is not None
        folder.rename(tmp_path / "away")  # the USB stick is pulled
        assert camera.read() is None
        assert events.kinds == ["camera_lost"] and "no such folder" in events.seen[0][1]["error"]
        time.sleep(0.1)
        assert camera.read() is None and not camera.available  # still down, still answering
        (tmp_path / "away").rename(folder)
        read_until(camera, lambda frame: frame is not None and tuple(frame[0, 0]) == (10, 20, 30))
    assert events.kinds == ["camera_lost", "camera_restored"]
    assert events.seen[1][1]["down_seconds"] >= 0.1


def test_a_camera_missing_at_start_does_not_stop_the_caller(tmp_path: Path) -> None:
    photo = tmp_path / "later.png"
    events = Events()
    camera = ResilientCamera(FileCamera(photo), on_event=events, min_backoff=0.01, max_backoff=0.02)
    camera.open()  # does not raise: the daemon starts without its camera
    try:
        assert camera.read() is None and events.kinds == ["camera_lost"]
        write_photo(photo, solid((1, 2, 3)))
        read_until(camera, lambda frame: frame is not None)
        assert events.kinds == ["camera_lost", "camera_restored"]
    finally:
        camera.close()


def test_a_live_camera_that_stalls_is_declared_lost(picamera2_class: type[StandInPicamera2]) -> None:
    events = Events()
    camera = ResilientCamera(
        Picamera2Camera(picamera2_class=picamera2_class),
        on_event=events,
        min_backoff=0.01,
        max_backoff=0.02,
        stall_timeout=0.05,
    )
    with camera:
        picamera2_class.stall = True
        read_until(camera, lambda _: events.kinds == ["camera_lost"])
        assert "no frame" in events.seen[0][1]["error"]
        picamera2_class.stall = False
        read_until(camera, lambda frame: frame is not None)
    assert events.kinds == ["camera_lost", "camera_restored"]


def test_a_finished_file_is_not_a_lost_camera(gray_video: Path) -> None:
    events = Events()
    with ResilientCamera(FileCamera(gray_video, loop=False), on_event=events, stall_timeout=0.0) as camera:
        frames = [camera.read() for _ in range(8)]
    assert sum(f is not None for f in frames) == 5 and events.seen == []


@pytest.mark.skipif(_has_picamera2(), reason="picamera2 is installed here")
def test_unsupported_camera_raises_at_open_and_gives_up_later(
    picamera2_class: type[StandInPicamera2],
) -> None:
    # A configuration this machine can never run is an error at once, not an endless retry.
    with pytest.raises(CameraUnsupported, match="python3-picamera2"):
        ResilientCamera(Picamera2Camera()).open()

    # Lost later, and the library is gone by then (here: really not installed): give up, say so.
    events = Events()
    source = Picamera2Camera(picamera2_class=picamera2_class)
    camera = ResilientCamera(source, on_event=events, min_backoff=0.01, max_backoff=0.02)
    with camera:
        picamera2_class.fail_capture = True
        source._picamera2_class = None
        read_until(camera, lambda _: "camera_failed" in events.kinds)
        assert camera.failed is not None and "picamera2 is not installed" in camera.failed
        assert camera.read() is None
    assert events.kinds == ["camera_lost", "camera_failed"]


def test_a_broken_event_callback_does_not_stop_recovery(tmp_path: Path) -> None:
    photo = tmp_path / "p.png"

    def explode(kind: str, detail: dict[str, Any]) -> None:
        raise RuntimeError("reporter down")

    camera = ResilientCamera(FileCamera(photo), on_event=explode, min_backoff=0.01, max_backoff=0.02)
    with camera:
        write_photo(photo, solid((5, 5, 5)))
        read_until(camera, lambda frame: frame is not None)


def test_close_while_down_returns_promptly(tmp_path: Path) -> None:
    camera = ResilientCamera(FileCamera(tmp_path / "never.png"), min_backoff=10, max_backoff=10)
    camera.open()
    start = time.monotonic()
    camera.close()
    assert time.monotonic() - start < 1.0
    with pytest.raises(CameraError, match="not open"):
        camera.read()
