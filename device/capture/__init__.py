"""Capture: one camera interface, one file per source, and a wrapper that survives a vanishing camera.

Usage: `with ResilientCamera(open_camera(config), on_event=publish) as cam: frame = cam.read()`;
a frame is RGB uint8 HxWx3, or None (nothing new yet, or the camera is down and being retried).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from device.capture.base import (
    Camera,
    CameraError,
    CameraNotFound,
    CameraUnsupported,
    TransformedCamera,
    transform_frame,
)
from device.capture.config import (
    CameraConfig,
    FileCameraConfig,
    OpenCVCameraConfig,
    Picamera2CameraConfig,
)
from device.capture.file import FileCamera
from device.capture.opencv import OpenCVCamera
from device.capture.picamera2 import Picamera2Camera

__all__ = [
    "Camera",
    "CameraConfig",
    "CameraError",
    "CameraNotFound",
    "CameraUnsupported",
    "FileCamera",
    "FileCameraConfig",
    "OpenCVCamera",
    "OpenCVCameraConfig",
    "Picamera2Camera",
    "Picamera2CameraConfig",
    "ResilientCamera",
    "TransformedCamera",
    "open_camera",
    "transform_frame",
]

log = logging.getLogger(__name__)

EventCallback = Callable[[str, dict[str, Any]], None]


def open_camera(config: CameraConfig, **source_options: Any) -> Camera:
    """The camera a config describes, with its rotation, mirroring and size applied. Not yet opened:
    call open(), use it in a `with`, or hand it to ResilientCamera.

    `source_options` go to the source's constructor (e.g. `picamera2_class=` for a stand-in).
    """
    source: Camera
    if isinstance(config, FileCameraConfig):
        source = FileCamera(config.path, loop=config.loop, fps=config.fps, **source_options)
    elif isinstance(config, OpenCVCameraConfig):
        width, height = _capture_size(config)
        source = OpenCVCamera(
            config.device, width=width, height=height, fps=config.fps, fourcc=config.fourcc, **source_options
        )
    elif isinstance(config, Picamera2CameraConfig):
        width, height = _capture_size(config)
        source = Picamera2Camera(
            config.camera_num,
            size=(width, height) if width and height else None,
            configuration=config.configuration,
            fps=config.fps,
            **source_options,
        )
    else:
        raise TypeError(f"not a camera config: {config!r}")
    if config.rotation == 0 and not config.mirror and config.width is None and config.height is None:
        return source
    return TransformedCamera(source, config.rotation, config.mirror, config.width, config.height, config.fit)


def _capture_size(config: OpenCVCameraConfig | Picamera2CameraConfig) -> tuple[int | None, int | None]:
    """What to ask the hardware for: the capture size if given, else the output size before rotation."""
    if config.capture_width or config.capture_height:
        return config.capture_width, config.capture_height
    if config.width and config.height:
        # The sensor sees the scene before rotation: a portrait output from a sideways camera.
        if config.rotation in (90, 270):
            return config.height, config.width
        return config.width, config.height
    return None, None


class ResilientCamera(Camera):
    """Wraps a camera so that losing it never stops the caller.

    A read that raises, or a live camera that gives no frame for `stall_timeout` seconds, marks the
    camera lost: `on_event("camera_lost", detail)` is called and logged, and a background thread
    reopens it with exponential backoff from `min_backoff` to `max_backoff` seconds. Meanwhile read()
    returns None at once. On success: `on_event("camera_restored", detail)`. A CameraUnsupported error
    (a missing library) is final: `on_event("camera_failed", detail)` and no more retries.

    `on_event` may be called from the reconnect thread; it must be quick and thread-safe.
    """

    def __init__(
        self,
        camera: Camera,
        on_event: EventCallback | None = None,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        stall_timeout: float = 5.0,
    ) -> None:
        if not 0 < min_backoff <= max_backoff:
            raise ValueError("backoff must satisfy 0 < min_backoff <= max_backoff")
        self.camera = camera
        self.name = camera.name
        self.live = camera.live
        self.on_event = on_event
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.stall_timeout = stall_timeout
        self.losses = 0  # how many times the camera was lost, for stats
        self.failed: str | None = None  # set when retrying was given up (CameraUnsupported)
        self._lock = threading.Lock()
        self._up = False
        self._opened = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_frame = 0.0
        self._lost_at = 0.0

    @property
    def available(self) -> bool:
        """Whether the camera is open and serving frames now."""
        return self._up

    def open(self) -> None:
        """Open the camera; if it is missing, report it and keep retrying in the background.

        Raises only CameraUnsupported: a configuration this machine can never run.
        """
        if self._opened:
            return
        self._opened = True
        self.failed = None
        self._stop.clear()
        try:
            self.camera.open()
        except CameraUnsupported:
            self._opened = False
            raise
        except Exception as exc:
            self._lose(exc)
            return
        self._last_frame = time.monotonic()
        self._up = True

    def read(self) -> np.ndarray | None:
        if not self._opened:
            raise CameraError(f"{self.name} is not open")
        if not self._up:
            return None
        try:
            frame = self.camera.read()
        except Exception as exc:
            self._lose(exc)
            return None
        now = time.monotonic()
        if frame is not None:
            self._last_frame = now
        elif self.live and now - self._last_frame > self.stall_timeout:
            self._lose(CameraError(f"no frame for {now - self._last_frame:.1f} s"))
        return frame

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5.0)
        # Bounded: a driver call stuck in the reconnect thread must not hang shutdown.
        locked = self._lock.acquire(timeout=5.0)
        try:
            self._up = False
            self._opened = False
            self.camera.close()
        finally:
            if locked:
                self._lock.release()

    def _lose(self, exc: BaseException) -> None:
        with self._lock:
            self._up = False
            self.losses += 1
            self._lost_at = time.monotonic()
            try:
                self.camera.close()
            except Exception:  # the device is already gone; closing is best effort
                log.debug("closing lost camera %s failed", self.name, exc_info=True)
        self._emit("camera_lost", {"error": _describe(exc)}, logging.WARNING)
        previous = self._thread
        if previous is not None and previous is not threading.current_thread():
            # The last reconnect succeeded (the camera was up) and is at most finishing its report.
            previous.join(timeout=1.0)
        self._thread = threading.Thread(target=self._reconnect, name=f"reconnect {self.name}", daemon=True)
        self._thread.start()

    def _reconnect(self) -> None:
        delay = self.min_backoff
        attempt = 0
        while not self._stop.wait(delay):
            attempt += 1
            try:
                with self._lock:
                    if self._stop.is_set():
                        return
                    self.camera.open()
                    self._last_frame = time.monotonic()
                    self._up = True
            except CameraUnsupported as exc:
                self.failed = _describe(exc)
                self._emit("camera_failed", {"error": self.failed, "attempts": attempt}, logging.ERROR)
                return
            except Exception as exc:
                log.info("camera %s: reopen attempt %d failed: %s", self.name, attempt, _describe(exc))
                # A half-opened device: close it so the next attempt starts clean.
                with contextlib.suppress(Exception):
                    self.camera.close()
                delay = min(delay * 2, self.max_backoff)
                continue
            down = round(time.monotonic() - self._lost_at, 3)
            self._emit("camera_restored", {"attempts": attempt, "down_seconds": down}, logging.INFO)
            return

    def _emit(self, kind: str, detail: dict[str, Any], level: int) -> None:
        detail = {"camera": self.name, **detail}
        log.log(level, "%s %s", kind, detail)
        if self.on_event is None:
            return
        try:
            self.on_event(kind, detail)
        except Exception:  # a broken reporter must not stop the camera from coming back
            log.exception("camera event callback failed for %s", kind)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
