"""Shared fixtures: real photos and videos on disk, and a stand-in for picamera2.Picamera2."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from skimage import data


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """The sample portrait, RGB uint8 512x512."""
    return data.astronaut()


@pytest.fixture
def astronaut_png(tmp_path: Path, astronaut: np.ndarray) -> Path:
    path = tmp_path / "astronaut.png"
    assert cv2.imwrite(str(path), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    return path


def solid(rgb: tuple[int, int, int], size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """An RGB image of one colour, HxW = size."""
    return np.broadcast_to(np.array(rgb, np.uint8), (*size, 3)).copy()


def write_photo(path: Path, rgb_image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb_image, cv2.COLOR_RGB2BGR))
    return path


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """A lossless (FFV1) video of RGB frames, so a test can compare pixels exactly."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"FFV1"), fps, (w, h))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture
def gray_video(tmp_path: Path) -> Path:
    """Five frames whose gray level tells their index: 0, 40, 80, 120, 160."""
    return write_video(tmp_path / "clip.avi", [solid((40 * i,) * 3) for i in range(5)])


class StandInPicamera2:
    """Behaves like picamera2.Picamera2 for the methods the adapter uses, and records how it is used.

    Like the real one: configure() only while stopped, capture_array() only while started, and the
    "RGB888" format (libcamera's name) gives B, G, R bytes per pixel. Class attributes steer it:
    `fail_open` constructions raise IndexError (what picamera2 raises with no camera attached),
    `fail_capture` makes capture_array raise, `stall` makes it return None.
    """

    image: np.ndarray  # the scene, RGB
    fail_open = 0
    fail_capture = False
    stall = False
    instances: list[StandInPicamera2]
    open_times: list[float]

    def __init__(self, camera_num: int = 0) -> None:
        cls = type(self)
        cls.open_times.append(time.monotonic())
        if cls.fail_open > 0:
            cls.fail_open -= 1
            raise IndexError("list index out of range")
        self.camera_num = camera_num
        self.calls: list[str] = []
        self.config: dict[str, Any] | None = None
        self.started = False
        self.closed = False
        cls.instances.append(self)

    def _configuration(self, use_case: str, default_size: tuple[int, int], main: Any, controls: Any) -> dict:
        self.calls.append(f"create_{use_case}_configuration")
        return {
            "use_case": use_case,
            "main": {"format": "XBGR8888", "size": default_size, **(main or {})},
            "controls": dict(controls or {}),
        }

    def create_video_configuration(self, main: Any = None, controls: Any = None, **_: Any) -> dict:
        return self._configuration("video", (640, 480), main, controls)

    def create_still_configuration(self, main: Any = None, controls: Any = None, **_: Any) -> dict:
        return self._configuration("still", (1456, 1088), main, controls)

    def configure(self, config: dict) -> None:
        self.calls.append("configure")
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        self.config = config

    def start(self) -> None:
        self.calls.append("start")
        if self.config is None:
            raise RuntimeError("stand-in: configure() first")
        self.started = True

    def capture_array(self, name: str = "main") -> np.ndarray | None:
        self.calls.append("capture_array")
        if not self.started or self.closed:
            raise RuntimeError("Camera is not running")
        if type(self).fail_capture:
            raise RuntimeError("Device or resource busy")  # what a dropped CSI link looks like
        if type(self).stall:
            return None
        assert self.config is not None
        w, h = self.config["main"]["size"]
        rgb = cv2.resize(type(self).image, (w, h), interpolation=cv2.INTER_AREA)
        fmt = self.config["main"]["format"]
        pad = np.full((h, w, 1), 255, np.uint8)
        # libcamera names formats by their packed little-endian word; numpy sees the bytes reversed.
        memory = {
            "RGB888": rgb[:, :, ::-1],
            "BGR888": rgb,
            "XRGB8888": np.concatenate([rgb[:, :, ::-1], pad], axis=2),
            "XBGR8888": np.concatenate([rgb, pad], axis=2),
        }[fmt]
        return np.ascontiguousarray(memory)

    def stop(self) -> None:
        self.calls.append("stop")
        self.started = False

    def close(self) -> None:
        self.calls.append("close")
        self.started = False
        self.closed = True


@pytest.fixture
def picamera2_class(astronaut: np.ndarray) -> type[StandInPicamera2]:
    """A fresh stand-in class per test, so its switches and records do not leak between tests."""
    return type(
        "Picamera2",
        (StandInPicamera2,),
        {"image": astronaut, "instances": [], "open_times": []},
    )
