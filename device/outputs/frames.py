"""Frames out as numbered PNG files (plus ``audio.wav``), the choice between that and a video file, and
the one rule for an output that is already there (file or folder alike): refused unless overwrite."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import wave
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from device.errors import BadInput
from device.outputs.video import CONTAINERS, VideoWriter, to_mono_float

FRAME_PATTERN = "frame_{:06d}.png"
AUDIO_NAME = "audio.wav"
PARTIAL_PREFIX = ".partial-"  # where a render's frames wait, inside the output folder, until it finishes
# zlib level 1: a 512x512 frame in a few ms instead of tens; the files come out ~15% larger.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]


def check_output(out: str | Path, overwrite: bool) -> None:
    """Refuse an output that is already there unless ``overwrite``: a file at a video path, or a folder
    that is not empty at a frames path. BadInput names the path and the remedy."""
    out = Path(out)
    if out.is_dir():
        if not overwrite and any(out.iterdir()):
            raise BadInput(
                f"output {out}: the folder exists and is not empty; pass --overwrite to replace the frames "
                "in it, or choose another --out"
            )
    elif out.exists() or out.is_symlink():
        if not out.suffix:
            raise BadInput(f"output {out}: exists and is not a folder (a path without a suffix is a folder of frames)")
        if not overwrite:
            raise BadInput(f"output {out}: the file exists; pass --overwrite to replace it, or choose another --out")


class PngFramesWriter:
    """Write RGB frames as ``frame_000000.png`` ... into a folder, with the audio as 16-bit ``audio.wav``.

    Same interface as ``VideoWriter``. The audio is trimmed or padded with silence to the frames' duration.
    An existing non-empty folder is refused unless ``overwrite`` is set. The frames are written to a
    hidden folder inside the output and moved into place only when the clip is complete (earlier frames
    and audio are removed then, other files are left alone): a failed or cancelled render leaves the
    folder as it was.
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
        check_output(self.path, overwrite)
        self._created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._partial = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=self.path))
        except OSError as exc:
            if self._created:
                with contextlib.suppress(OSError):
                    self.path.rmdir()
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
        target = self._partial / FRAME_PATTERN.format(self.frames)
        if not cv2.imwrite(str(target), np.ascontiguousarray(frame[..., ::-1]), PNG_PARAMS):
            raise OSError(f"frames output {target}: could not be written")
        self.frames += 1

    def close(self) -> None:
        """Write ``audio.wav`` (if audio was given) as long as the frames last, then put the clip in place."""
        if self._closed:
            return
        try:
            if self._audio is not None:
                n = self.frames * self._rate // self.fps
                audio = self._audio[:n]
                if len(audio) < n:
                    audio = np.concatenate([audio, np.zeros(n - len(audio), np.float32)])
                pcm = np.round(audio * 32767.0).astype("<i2")
                with wave.open(str(self._partial / AUDIO_NAME), "wb") as wav:
                    wav.setnchannels(1)
                    wav.setsampwidth(2)
                    wav.setframerate(self._rate)
                    wav.writeframes(pcm.tobytes())
            # Only now does the earlier clip go: until here a failure leaves it as it was.
            for old in [*self.path.glob("frame_*.png"), self.path / AUDIO_NAME]:
                old.unlink(missing_ok=True)
            for stale in self.path.glob(f"{PARTIAL_PREFIX}*"):
                if stale != self._partial:  # left by a render that was killed
                    shutil.rmtree(stale, ignore_errors=True)
            for new in sorted(self._partial.iterdir()):
                os.replace(new, self.path / new.name)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        with contextlib.suppress(OSError):
            self._partial.rmdir()

    def abort(self) -> None:
        """Remove what this writer wrote (and the folder, if it made it); an earlier clip there stays."""
        if self._closed:
            return
        self._closed = True
        shutil.rmtree(self._partial, ignore_errors=True)
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
    """A video writer for ``.mp4``/``.mov``/``.mkv``, a PNG frames writer for a folder (no suffix).

    What is already at ``out`` is refused unless ``overwrite`` (see check_output); either writer puts
    the clip in place only once it is complete."""
    out = Path(out)
    if out.is_dir() or not out.suffix:
        return PngFramesWriter(out, fps, width, height, audio, sample_rate, overwrite=overwrite)
    if out.suffix.lower() in CONTAINERS:
        check_output(out, overwrite)
        return VideoWriter(out, fps, width, height, audio, sample_rate)
    raise BadInput(
        f"output {out}: unsupported suffix {out.suffix!r}; use a video file "
        f"({', '.join(CONTAINERS)}) or a folder (no suffix) for PNG frames"
    )
