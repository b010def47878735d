"""The one contract every clip output keeps (a frame sink), whatever its format.

A sink takes RGB uint8 frames of one size at one frame rate, with optional mono audio that it trims or
pads to the frames' duration. `write(frame)` appends one and counts it (`frames`); `close()` finalizes
the clip and only then puts it in place; `abort()` discards it, leaving nothing of it behind and any
earlier clip at that path as it was. As a context manager a clean exit closes and an exception aborts.
A sink that fails to finalize aborts itself. A closed or aborted sink takes no more frames.

The formats (device.outputs.video.VideoWriter, device.outputs.frames.PngFramesWriter) add only what is
theirs: `_check_size`, `_write_frame`, `_finalize` and `_discard`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np


def to_mono_float(audio: np.ndarray) -> np.ndarray:
    """Mono audio as float32 in [-1, 1] (integer samples scaled by their type's range)."""
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono (1-D), got shape {audio.shape}")
    if np.issubdtype(audio.dtype, np.integer):
        audio = audio.astype(np.float32) / float(np.iinfo(audio.dtype).max)
    return np.clip(audio.astype(np.float32, copy=False), -1.0, 1.0)


class FrameSink(ABC):
    """Base of the frame writers: validation, frame counting, close/abort and the context manager."""

    kind = "output"  # how messages name it: "<kind> <path>: ..."

    def __init__(
        self,
        path: str | Path,
        fps: int,
        width: int,
        height: int,
        audio: np.ndarray | None = None,
        sample_rate: int | None = None,
    ) -> None:
        self.path = Path(path)
        if int(fps) != fps or fps <= 0:
            raise ValueError(f"fps must be a positive integer, got {fps}")
        self._check_size(width, height)
        if audio is not None and (sample_rate is None or sample_rate <= 0):
            raise ValueError("audio needs a positive sample_rate")
        self.fps, self.width, self.height = int(fps), int(width), int(height)
        self.frames = 0  # frames written so far
        self._closed = False
        self._audio: np.ndarray | None = None
        self._rate = 0
        if audio is not None and sample_rate is not None:
            self._audio, self._rate = to_mono_float(audio), int(sample_rate)

    # --- what a format adds -------------------------------------------------------------------
    @staticmethod
    def _check_size(width: int, height: int) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"frame size {width}x{height}: must be positive")

    @abstractmethod
    def _write_frame(self, frame: np.ndarray) -> None:
        """Store one checked frame, the one numbered `self.frames` (counted by the caller once stored)."""

    @abstractmethod
    def _finalize(self) -> None:
        """Finish the clip and put it in place; raising makes `close` discard it."""

    @abstractmethod
    def _discard(self) -> None:
        """Remove everything this sink wrote (called once, by `abort`)."""

    # --- the contract -------------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def audio_samples(self, frames: int | None = None) -> int:
        """Audio samples that last as long as `frames` frames (default: those written so far)."""
        return (self.frames if frames is None else frames) * self._rate // self.fps

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB uint8 frame of shape (height, width, 3)."""
        if self._closed:
            raise ValueError(f"{self.kind} {self.path}: writer is closed")
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            want = (self.height, self.width, 3)
            raise ValueError(f"frame must be uint8 of shape {want}, got {frame.dtype} {frame.shape}")
        self._write_frame(frame)
        self.frames += 1

    def close(self) -> None:
        """Finalize the clip and put it in place; on failure discard it and raise."""
        if self._closed:
            return
        try:
            self._finalize()
        except BaseException:
            self.abort()
            raise
        self._closed = True

    def abort(self) -> None:
        """Discard the output: nothing of it is left at the target or beside it."""
        if self._closed:
            return
        self._closed = True
        self._discard()
