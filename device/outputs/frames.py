"""Frames out as numbered PNG files (plus ``audio.wav``), the choice between that and a video file, and
the one rule for an output that is already there (file or folder alike): refused unless overwrite."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import wave
from pathlib import Path

import cv2
import numpy as np

from device.errors import BadInput
from device.outputs.sink import FrameSink
from device.outputs.video import CONTAINERS, VideoWriter

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


class PngFramesWriter(FrameSink):
    """Write RGB frames as ``frame_000000.png`` ... into a folder, with the audio as 16-bit ``audio.wav``.

    Same contract as ``VideoWriter`` (device.outputs.sink.FrameSink). The audio is trimmed or padded with
    silence to the frames' duration. An existing non-empty folder is refused unless ``overwrite`` is set.
    The frames are written to a
    hidden folder inside the output and moved into place only when the clip is complete (earlier frames
    and audio are removed then, other files are left alone): a failed or cancelled render leaves the
    folder as it was.
    """

    kind = "frames output"

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
        super().__init__(path, fps, width, height, audio, sample_rate)
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

    def _write_frame(self, frame: np.ndarray) -> None:
        """The frame as the next PNG."""
        target = self._partial / FRAME_PATTERN.format(self.frames)
        if not cv2.imwrite(str(target), np.ascontiguousarray(frame[..., ::-1]), PNG_PARAMS):
            raise OSError(f"frames output {target}: could not be written")

    def _finalize(self) -> None:
        """Write ``audio.wav`` (if audio was given) as long as the frames last, then put the clip in place."""
        if self._audio is not None:
            n = self.audio_samples()
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
        with contextlib.suppress(OSError):
            self._partial.rmdir()

    def _discard(self) -> None:
        """Remove what this writer wrote (and the folder, if it made it); an earlier clip there stays."""
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
) -> FrameSink:
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
