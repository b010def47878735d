"""The camera interface, and the frame transform every source shares.

Sources only open a device and hand back RGB frames; rotation, mirroring and resizing live here once,
in `TransformedCamera`, so each source file stays small.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Literal, Self

import cv2
import numpy as np

from device.errors import BadInput, PortraitError


class CameraError(PortraitError):
    """A camera could not be opened or read (missing, unplugged, busy). Worth retrying."""


class CameraUnsupported(CameraError):
    """This machine cannot run this camera at all (a library or an OpenCV feature is missing).

    Retrying will not help: `ResilientCamera` gives up on it instead of retrying forever.
    """


class CameraNotFound(CameraError, BadInput):
    """A configured path names nothing (exit code 2 from the CLI; still retried by the daemon)."""


class Camera(ABC):
    """A source of RGB uint8 frames, HxWx3.

    `open()` is idempotent; `read()` returns the next frame, or None when none is available right now
    (a finished file, a live device with nothing new); `close()` may be called twice. Use as a context
    manager to open and close.
    """

    #: A short human-readable name for logs and events, e.g. "opencv:/dev/video0".
    name: str = "camera"
    #: True for a real device: there, a long run of None means the device is gone.
    live: bool = True

    @abstractmethod
    def open(self) -> None:
        """Open the source; raise CameraError (or a subclass) if it cannot be opened."""

    @abstractmethod
    def read(self) -> np.ndarray | None:
        """The next RGB uint8 HxWx3 frame, or None when none is available right now."""

    @abstractmethod
    def close(self) -> None:
        """Release the device. Safe to call when not open."""

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def to_rgb(frame: np.ndarray, order: Literal["bgr", "rgb"] = "bgr") -> np.ndarray:
    """Any 8-bit gray, 3- or 4-channel frame in the given channel order as contiguous RGB uint8."""
    if frame.dtype != np.uint8:
        raise CameraError(f"camera gave {frame.dtype} pixels, expected uint8")
    if frame.ndim == 2:
        return np.ascontiguousarray(np.repeat(frame[:, :, None], 3, axis=2))
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise CameraError(f"camera gave a frame of shape {frame.shape}, expected HxWx3 or HxWx4")
    # The fourth channel (alpha or padding) is dropped; BGR is reversed in the same slice.
    rgb = frame[:, :, 2::-1] if order == "bgr" else frame[:, :, :3]
    return np.ascontiguousarray(rgb)


_ROTATE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def transform_frame(
    frame: np.ndarray,
    rotation: int = 0,
    mirror: bool = False,
    width: int | None = None,
    height: int | None = None,
    fit: Literal["crop", "pad", "stretch"] = "crop",
) -> np.ndarray:
    """Rotate clockwise, then mirror left-right, then bring to width x height (see `fit`)."""
    if rotation:
        frame = cv2.rotate(frame, _ROTATE[rotation])
    if mirror:
        frame = frame[:, ::-1]
    h, w = frame.shape[:2]
    if width is None and height is None:
        return np.ascontiguousarray(frame)
    if width is None or height is None:
        # One side given: keep the aspect ratio.
        if width is None:
            width = max(1, round(w * height / h))  # type: ignore[operator]
        else:
            height = max(1, round(h * width / w))
        return _resize(frame, width, height)
    if fit == "crop" and w * height != h * width:
        # Take the largest centred window of the target's aspect ratio, so faces keep their shape.
        if w * height > h * width:
            cw = max(1, round(h * width / height))
            x0 = (w - cw) // 2
            frame = frame[:, x0 : x0 + cw]
        else:
            ch = max(1, round(w * height / width))
            y0 = (h - ch) // 2
            frame = frame[y0 : y0 + ch]
    elif fit == "pad" and w * height != h * width:
        scale = min(width / w, height / h)
        inner = _resize(frame, max(1, round(w * scale)), max(1, round(h * scale)))
        out = np.zeros((height, width, frame.shape[2]), frame.dtype)
        y0 = (height - inner.shape[0]) // 2
        x0 = (width - inner.shape[1]) // 2
        out[y0 : y0 + inner.shape[0], x0 : x0 + inner.shape[1]] = inner
        return out
    return _resize(frame, width, height)


def _resize(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = frame.shape[:2]
    if (w, h) == (width, height):
        return np.ascontiguousarray(frame)
    # INTER_AREA averages when shrinking (no aliasing); linear is the cheap good choice when enlarging.
    interp = cv2.INTER_AREA if width < w and height < h else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(frame), (width, height), interpolation=interp)


class TransformedCamera(Camera):
    """Applies rotation, mirroring and the output size to whatever another camera returns."""

    def __init__(
        self,
        source: Camera,
        rotation: int = 0,
        mirror: bool = False,
        width: int | None = None,
        height: int | None = None,
        fit: Literal["crop", "pad", "stretch"] = "crop",
    ) -> None:
        if rotation not in (0, 90, 180, 270):
            raise BadInput(f"camera rotation {rotation} is not one of 0, 90, 180, 270")
        self.source = source
        self.rotation = rotation
        self.mirror = mirror
        self.width = width
        self.height = height
        self.fit = fit
        self.name = source.name
        self.live = source.live

    def open(self) -> None:
        self.source.open()

    def read(self) -> np.ndarray | None:
        frame = self.source.read()
        if frame is None:
            return None
        return transform_frame(frame, self.rotation, self.mirror, self.width, self.height, self.fit)

    def close(self) -> None:
        self.source.close()
