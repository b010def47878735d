"""A camera OpenCV opens: a V4L2 device (USB webcam), a GStreamer pipeline (Jetson CSI), or a file/URL."""

from __future__ import annotations

import os
import re
from functools import cache

import cv2
import numpy as np

from device.capture.base import Camera, CameraError, CameraNotFound, CameraUnsupported, to_rgb


@cache
def gstreamer_available() -> bool:
    """Whether this OpenCV build can open GStreamer pipelines (pip wheels cannot; JetPack's can)."""
    match = re.search(r"GStreamer:\s*(\w+)", cv2.getBuildInformation())
    return bool(match and match.group(1).upper() == "YES")


def jetson_csi_pipeline(
    sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30, flip_method: int = 0
) -> str:
    """The usual GStreamer pipeline for a CSI camera on a Jetson, ending in a BGR appsink for OpenCV."""
    # drop/max-buffers: keep only the newest frame, so a slow reader sees the present, not a backlog.
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM), width={width}, height={height}, framerate={fps}/1 ! "
        f"nvvidconv flip-method={flip_method} ! video/x-raw, format=BGRx ! "
        "videoconvert ! video/x-raw, format=BGR ! appsink drop=true max-buffers=1"
    )


class OpenCVCamera(Camera):
    """cv2.VideoCapture on an index, a /dev/videoN path, a GStreamer pipeline (contains '!'), or a file."""

    def __init__(
        self,
        device: int | str = 0,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        fourcc: str | None = None,
    ) -> None:
        # "0" from a command line or an environment variable means the index, as cv2 would take it.
        self.device: int | str = int(device) if isinstance(device, str) and device.isdigit() else device
        self.width = width
        self.height = height
        self.fps = fps
        self.fourcc = fourcc
        self.gstreamer = isinstance(self.device, str) and "!" in self.device
        self.name = f"opencv:{'gstreamer' if self.gstreamer else self.device}"
        # A file read through OpenCV ends; that is not a lost device.
        self.live = not (isinstance(self.device, str) and not self.gstreamer and os.path.isfile(self.device))
        self._cap: cv2.VideoCapture | None = None

    def open(self) -> None:
        if self._cap is not None:
            return
        device = self.device
        if self.gstreamer:
            if not gstreamer_available():
                raise CameraUnsupported(
                    "this OpenCV build has no GStreamer support, so it cannot open a pipeline (pip's "
                    "opencv-python has none; on a Jetson use the OpenCV that comes with JetPack)"
                )
            cap = cv2.VideoCapture(device, cv2.CAP_GSTREAMER)
        elif isinstance(device, str) and device.startswith("/dev/"):
            if not os.path.exists(device):
                raise CameraNotFound(f"camera {device}: no such device (is it plugged in?)")
            cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
        else:
            cap = cv2.VideoCapture(device, cv2.CAP_ANY)
        if not cap.isOpened():
            cap.release()
            if isinstance(device, int):
                raise CameraError(f"camera {device}: OpenCV found no camera at this index")
            raise CameraError(f"camera {self.name}: OpenCV could not open it")
        if not self.gstreamer:
            # A pipeline fixes its own caps; for V4L2 the pixel format must be set before the size.
            if self.fourcc:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*self.fourcc))
            if self.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            if self.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            if self.fps:
                cap.set(cv2.CAP_PROP_FPS, self.fps)
            if self.live:
                # One buffered frame: mirror mode wants the newest frame, not one from a queue.
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            raise CameraError(f"{self.name} is not open")
        ok, frame = self._cap.read()
        if not ok or frame is None:
            if isinstance(self.device, str) and self.device.startswith("/dev/") and not os.path.exists(self.device):
                # Unplugged: say so now rather than let the caller wait out a stall timeout.
                raise CameraError(f"camera {self.device} disappeared")
            return None
        return to_rgb(frame, "bgr")

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
        self._cap = None
