"""A Raspberry Pi camera through picamera2 (libcamera). picamera2 is imported only when one is opened."""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import numpy as np

from device.capture.base import Camera, CameraError, CameraUnsupported, to_rgb

#: Tests (or a board-specific build) may set this to a class that behaves like picamera2.Picamera2.
Picamera2Class: Any = None


def _import_picamera2() -> Any:
    try:
        from picamera2 import Picamera2  # only exists on Raspberry Pi OS
    except ImportError as exc:
        raise CameraUnsupported(
            "picamera2 is not installed (it comes with Raspberry Pi OS: apt install python3-picamera2)"
        ) from exc
    return Picamera2


class Picamera2Camera(Camera):
    """Frames from `Picamera2(camera_num)`, configured for RGB888 at `size` (None: the camera's default)."""

    def __init__(
        self,
        camera_num: int = 0,
        size: tuple[int, int] | None = None,
        configuration: Literal["video", "still"] = "video",
        fps: float | None = None,
        picamera2_class: Any = None,
    ) -> None:
        self.camera_num = camera_num
        self.size = size
        self.configuration = configuration
        self.fps = fps
        self._picamera2_class = picamera2_class
        self.name = f"picamera2:{camera_num}"
        self._cam: Any = None

    def open(self) -> None:
        if self._cam is not None:
            return
        cls = self._picamera2_class or Picamera2Class or _import_picamera2()
        try:
            cam = cls(self.camera_num)
        except Exception as exc:  # picamera2 raises IndexError & co. when the camera is absent
            raise CameraError(f"{self.name}: cannot open the camera ({exc!r})") from exc
        try:
            main: dict[str, Any] = {"format": "RGB888"}
            if self.size is not None:
                main["size"] = tuple(self.size)
            kwargs: dict[str, Any] = {"main": main}
            if self.fps:
                kwargs["controls"] = {"FrameRate": self.fps}
            if self.configuration == "still":
                config = cam.create_still_configuration(**kwargs)
            else:
                config = cam.create_video_configuration(**kwargs)
            cam.configure(config)
            cam.start()
        except Exception as exc:
            # Without close() the camera stays claimed and the next open fails with "busy".
            _quietly(cam.close)
            raise CameraError(f"{self.name}: cannot start the camera ({exc!r})") from exc
        self._cam = cam

    def read(self) -> np.ndarray | None:
        if self._cam is None:
            raise CameraError(f"{self.name} is not open")
        try:
            frame = self._cam.capture_array("main")
        except Exception as exc:
            raise CameraError(f"{self.name}: capture failed ({exc!r})") from exc
        if frame is None:
            return None
        # picamera2's "RGB888" is libcamera's name: the bytes are B, G, R per pixel (and XRGB8888 is
        # B, G, R, X), so it is BGR to numpy, as OpenCV expects; turn it around to RGB.
        return to_rgb(np.asarray(frame), "bgr")

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is None:
            return
        # stop() may fail on a camera that vanished; close() must run regardless to free it.
        _quietly(cam.stop)
        _quietly(cam.close)


def _quietly(fn: Any) -> None:
    # Cleanup of a device that may already be gone: failing here must not hide the real error.
    with contextlib.suppress(Exception):
        fn()
