"""Frames out as numbered PNG files (plus ``audio.wav``), and the choice between that and a video file."""

from __future__ import annotations

import contextlib
import wave
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from device.errors import BadInput
from device.outputs.video import CONTAINERS, VideoWriter, to_mono_float

FRAME_PATTERN = "frame_{:06d}.png"
AUDIO_NAME = "audio.wav"
# zlib level 1: a 512x512 frame in a few ms instead of tens; the files come out ~15% larger.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]


class PngFramesWriter:
    """Write RGB frames as ``frame_000000.png`` ... into a folder, with the audio as 16-bit ``audio.wav``.

    Same interface as ``VideoWriter``. The audio is trimmed or padded with silence to the frames' duration.
    An existing non-empty folder is refused unless ``overwrite`` is set; then earlier frames and audio
    written there are removed first (other files are left alone).
    """

    def __init__(
        self,
        path: str | Path,
        fps: int,
        width: int,
        height: int,
        audio: np.ndarray | None = None,
        sample_rate: int | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        if int(fps) != fps or fps <= 0:
            raise ValueError(f"fps must be a positive integer, got {fps}")
        if width <= 0 or height <= 0:
            raise ValueError(f"frame size {width}x{height}: must be positive")
        if audio is not None and (sample_rate is None or sample_rate <= 0):
            raise ValueError("audio needs a positive sample_rate")
        self.fps, self.width, self.height = int(fps), int(width), int(height)
        self._audio = to_mono_float(audio) if audio is not None else None
        self._rate = int(sample_rate or 0)
        self.frames = 0
        self._closed = False
        if self.path.exists() and not self.path.is_dir():
            raise BadInput(f"frames output {self.path}: exists and is not a folder")
        if self.path.is_dir() and any(self.path.iterdir()):
            if not overwrite:
                raise BadInput(f"frames output {self.path}: folder exists and is not empty (use overwrite)")
            for old in [*self.path.glob("frame_*.png"), self.path / AUDIO_NAME]:
                old.unlink(missing_ok=True)
        self._created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInput(f"frames output {self.path}: cannot create the folder ({exc})") from exc

    def __enter__(self) -> PngFramesWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, frame: np.ndarray) -> None:
        """Write one RGB uint8 frame of shape (height, width, 3) as the next PNG."""
        if self._closed:
            raise ValueError(f"frames output {self.path}: writer is closed")
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            want = (self.height, self.width, 3)
            raise ValueError(f"frame must be uint8 of shape {want}, got {frame.dtype} {frame.shape}")
        target = self.path / FRAME_PATTERN.format(self.frames)
        if not cv2.imwrite(str(target), np.ascontiguousarray(frame[..., ::-1]), PNG_PARAMS):
            raise OSError(f"frames output {target}: could not be written")
        self.frames += 1

    def close(self) -> None:
        """Write ``audio.wav`` (if audio was given), as long as the frames last."""
        if self._closed:
            return
        self._closed = True
        if self._audio is None:
            return
        n = self.frames * self._rate // self.fps
        audio = self._audio[:n]
        if len(audio) < n:
            audio = np.concatenate([audio, np.zeros(n - len(audio), np.float32)])
        pcm = np.round(audio * 32767.0).astype("<i2")
        with wave.open(str(self.path / AUDIO_NAME), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(self._rate)
            wav.writeframes(pcm.tobytes())

    def abort(self) -> None:
        """Remove what this writer wrote (and the folder, if it made it)."""
        if self._closed:
            return
        self._closed = True
        for i in range(self.frames):
            (self.path / FRAME_PATTERN.format(i)).unlink(missing_ok=True)
        if self._created:
            with contextlib.suppress(OSError):
                self.path.rmdir()


def open_writer(
    out: str | Path,
    fps: int,
    width: int,
    height: int,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
    overwrite: bool = False,
) -> VideoWriter | PngFramesWriter:
    """A video writer for ``.mp4``/``.mov``/``.mkv``, a PNG frames writer for a folder (no suffix)."""
    out = Path(out)
    if out.is_dir() or not out.suffix:
        return PngFramesWriter(out, fps, width, height, audio, sample_rate, overwrite=overwrite)
    if out.suffix.lower() in CONTAINERS:
        return VideoWriter(out, fps, width, height, audio, sample_rate)
    raise BadInput(
        f"output {out}: unsupported suffix {out.suffix!r}; use a video file "
        f"({', '.join(CONTAINERS)}) or a folder (no suffix) for PNG frames"
    )
