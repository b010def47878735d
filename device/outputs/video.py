"""MP4 out (H.264 + AAC) and MP4 back in, through PyAV's bundled FFmpeg.

The writer gives frame i the timestamp i/fps, so N frames last exactly N/fps seconds, and it trims or pads the
audio to that length: the clip is as long as its video. It writes to a hidden temporary file beside the target
and renames it on close, so a crash never leaves a half-written MP4 at the target path.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from device.errors import BadInput
from device.media.audio import resample

# Tried in order; the first one this FFmpeg can encode with wins.
VIDEO_CODECS = ("libx264", "h264", "mpeg4")
# x264 "veryfast" costs about 4.5 ms of CPU per 512x512 frame here (superfast: 4 ms at 3.5x the size).
X264_PRESET = "veryfast"
# Rates the AAC encoder takes; anything else is resampled to 48 kHz.
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
AAC_FRAME = 1024
AAC_BIT_RATE = 96_000
CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def pick_video_codec() -> str:
    """The first H.264 (else MPEG-4) encoder that PyAV's FFmpeg has."""
    for name in VIDEO_CODECS:
        try:
            av.codec.Codec(name, "w")
        except Exception:  # UnknownCodecError, or a build without that encoder
            continue
        return name
    raise RuntimeError("PyAV's FFmpeg has no H.264 or MPEG-4 encoder")


def to_mono_float(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono (1-D), got shape {audio.shape}")
    if np.issubdtype(audio.dtype, np.integer):
        audio = audio.astype(np.float32) / float(np.iinfo(audio.dtype).max)
    return np.clip(audio.astype(np.float32, copy=False), -1.0, 1.0)


class VideoWriter:
    """Encode RGB frames (and optionally mono audio) to an H.264 MP4/MOV/MKV file.

    Width and height must be even (yuv420p); the caller pads or crops. Use as a context manager: a clean exit
    finalizes the file, an exception discards it.
    """

    def __init__(
        self,
        path: str | Path,
        fps: int,
        width: int,
        height: int,
        audio: np.ndarray | None = None,
        sample_rate: int | None = None,
        crf: int = 20,
        threads: int | None = None,
    ) -> None:
        self.path = Path(path)
        fmt = CONTAINERS.get(self.path.suffix.lower())
        if fmt is None:
            raise BadInput(f"video output {self.path}: unsupported suffix; use one of {', '.join(CONTAINERS)}")
        if int(fps) != fps or fps <= 0:
            raise ValueError(f"fps must be a positive integer, got {fps}")
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(f"frame size {width}x{height}: width and height must be positive and even")
        if audio is not None and (sample_rate is None or sample_rate <= 0):
            raise ValueError("audio needs a positive sample_rate")
        self.fps, self.width, self.height = int(fps), int(width), int(height)
        self.frames = 0
        self._closed = False

        self._audio: np.ndarray | None = None
        self._rate = 0
        if audio is not None and sample_rate is not None:
            mono = to_mono_float(audio)
            rate = int(sample_rate)
            if rate not in AAC_RATES:
                mono, rate = resample(mono, rate, 48000), 48000
            self._audio, self._rate = mono, rate
        self._audio_sent = 0  # samples handed to the encoder so far

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(
                prefix=f".{self.path.stem}.", suffix=f".part{self.path.suffix}", dir=self.path.parent
            )
            os.close(fd)
            # mkstemp makes the file private (0600); a clip should get the usual permissions.
            os.chmod(tmp, 0o666 & ~_current_umask())
        except OSError as exc:
            raise BadInput(f"video output {self.path}: cannot write there ({exc})") from exc
        self._tmp = Path(tmp)
        try:
            self._open(fmt, crf, threads)
        except BaseException:
            if hasattr(self, "_container"):
                with contextlib.suppress(Exception):
                    self._container.close()
            self._tmp.unlink(missing_ok=True)
            raise

    def _open(self, fmt: str, crf: int, threads: int | None) -> None:
        # faststart moves the index to the front so players can start before the whole file has arrived.
        options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
        self._container = av.open(str(self._tmp), "w", format=fmt, options=options)
        self.codec = pick_video_codec()
        stream = self._container.add_stream(self.codec, rate=self.fps)
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
        stream.time_base = Fraction(1, self.fps)
        encoder = av.codec.Codec(self.codec, "w").name
        if encoder == "libx264":
            stream.codec_context.options = {"preset": X264_PRESET, "crf": str(crf)}
        elif encoder == "mpeg4":
            # mpeg4 has no crf: a fixed quantizer of about the same quality.
            stream.codec_context.qscale = max(2, min(31, crf // 5))
        else:  # another H.264 encoder (a hardware one): a bit rate that suits talking heads
            stream.codec_context.bit_rate = 4 * self.width * self.height
        # Two frame threads let x264 encode in the background while the caller renders the next frame.
        stream.thread_type = "FRAME"
        stream.thread_count = threads if threads is not None else min(2, os.cpu_count() or 1)
        self._video = stream
        self._astream = None
        if self._audio is not None:
            astream = self._container.add_stream("aac", rate=self._rate)
            astream.codec_context.layout = "mono"
            astream.codec_context.format = "fltp"
            astream.codec_context.bit_rate = AAC_BIT_RATE
            astream.time_base = Fraction(1, self._rate)
            self._astream = astream

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB uint8 frame of shape (height, width, 3)."""
        if self._closed:
            raise ValueError(f"video output {self.path}: writer is closed")
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            want = (self.height, self.width, 3)
            raise ValueError(f"frame must be uint8 of shape {want}, got {frame.dtype} {frame.shape}")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts = self.frames
        vf.time_base = Fraction(1, self.fps)  # not the stream's: the muxer may change that one
        vf.duration = 1  # so the last frame, too, lasts 1/fps
        self._container.mux(self._video.encode(vf))
        self.frames += 1
        # Keep the audio level with the video, in whole AAC frames, so the file comes out interleaved.
        self._send_audio(self.frames * self._rate // self.fps, final=False)

    def _send_audio(self, until: int, final: bool) -> None:
        if self._astream is None or self._audio is None:
            return
        end = until if final else self._audio_sent + (until - self._audio_sent) // AAC_FRAME * AAC_FRAME
        while self._audio_sent < end:
            n = min(AAC_FRAME, end - self._audio_sent)
            chunk = self._audio[self._audio_sent : self._audio_sent + n]
            if len(chunk) < n:  # past the end of the given audio: silence up to the video's length
                chunk = np.concatenate([chunk, np.zeros(n - len(chunk), np.float32)])
            af = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
            af.sample_rate = self._rate
            af.pts = self._audio_sent
            af.time_base = Fraction(1, self._rate)
            self._container.mux(self._astream.encode(af))
            self._audio_sent += n

    def close(self) -> None:
        """Flush the encoders, finish the file and move it to the target path."""
        if self._closed:
            return
        if self.frames == 0:  # an MP4 with no frames is unplayable: leave nothing rather than that
            self.abort()
            raise ValueError(f"video output {self.path}: no frames were written")
        self._closed = True
        try:
            self._container.mux(self._video.encode(None))
            if self._astream is not None:
                self._send_audio(self.frames * self._rate // self.fps, final=True)
                self._container.mux(self._astream.encode(None))
            self._container.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            with contextlib.suppress(Exception):
                self._container.close()
            self._tmp.unlink(missing_ok=True)
            raise

    def abort(self) -> None:
        """Discard the output: nothing is left at the target or beside it."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._container.close()
        self._tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: float
    duration: float  # seconds, of the video stream
    width: int
    height: int
    video_codec: str
    has_audio: bool
    audio_duration: float  # seconds, from the decoded samples (0.0 without audio)
    audio_rate: int  # 0 without audio


def _open_for_reading(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise BadInput(f"video file {path}: not found")
    try:
        return av.open(str(path), "r")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise BadInput(f"video file {path}: cannot be read ({exc})") from exc


def probe_video(path: str | Path) -> VideoInfo:
    """Decode a video file completely and describe it: exact frame count and audio length."""
    path = Path(path)
    with _open_for_reading(path) as container:
        if not container.streams.video:
            raise BadInput(f"video file {path}: has no video stream")
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        frames = 0
        samples = 0
        streams = [video] if audio is None else [video, audio]
        try:
            for frame in container.decode(*streams):
                if isinstance(frame, av.VideoFrame):
                    frames += 1
                else:
                    samples += frame.samples
        except av.FFmpegError as exc:
            raise BadInput(f"video file {path}: cannot be decoded ({exc})") from exc
        if video.duration is not None and video.time_base is not None:
            duration = float(video.duration * video.time_base)
        else:
            duration = (container.duration or 0) / av.time_base
        rate = video.average_rate or video.guessed_rate or 0
        audio_rate = audio.codec_context.sample_rate if audio is not None else 0
        return VideoInfo(
            frames=frames,
            fps=float(rate),
            duration=duration,
            width=video.codec_context.width,
            height=video.codec_context.height,
            video_codec=video.codec_context.name,
            has_audio=audio is not None,
            audio_duration=samples / audio_rate if audio_rate else 0.0,
            audio_rate=audio_rate,
        )


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Yield the video's frames as RGB uint8 arrays of shape (height, width, 3)."""
    path = Path(path)
    with _open_for_reading(path) as container:
        if not container.streams.video:
            raise BadInput(f"video file {path}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")
