"""MP4 out (H.264 + AAC), through PyAV's bundled FFmpeg (reading a video back: device.media.video).

The writer gives frame i the timestamp i/fps, so N frames last exactly N/fps seconds, and it trims or pads the
audio to that length: the clip is as long as its video. It writes to a hidden temporary file beside the target
and renames it on close, so a crash never leaves a half-written MP4 at the target path.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from device.errors import BadInput
from device.media.audio import resample
from device.outputs.sink import FrameSink

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


# Full-range chroma (JPEG's YCbCr, 0..255 about 128) to video's limited range (16..240 about 128).
LIMITED_CHROMA = np.clip(np.round((np.arange(256) - 128) * 224 / 255 + 128), 0, 255).astype(np.uint8)


class I420Converter:
    """RGB frames (even width and height) to planar YUV 4:2:0, BT.601 limited range, as swscale makes it
    by default, but several times faster (at 1080x1920 about 3 ms against swscale's 13 ms). Keeps its
    buffers: fresh multi-megabyte arrays each frame cost more in page faults than the conversion."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def _buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        buffer = self._buffers.get(name)
        if buffer is None or buffer.shape != shape:
            buffer = self._buffers[name] = np.empty(shape, np.uint8)
        return buffer

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        height, width = frame.shape[:2]
        yuv = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420, dst=self._buffer("yuv", (height * 3 // 2, width)))
        # OpenCV's I420 takes each 2x2 block's chroma from one of its pixels, which frays colour edges;
        # swscale averages the block. Chroma is linear in RGB, so it is the chroma of the block's mean
        # colour: full-range YCbCr of the half-size frame, scaled to the limited range.
        half = cv2.resize(
            frame, (width // 2, height // 2), dst=self._buffer("half", (height // 2, width // 2, 3)),
            interpolation=cv2.INTER_AREA,
        )  # fmt: skip
        ycrcb = cv2.cvtColor(half, cv2.COLOR_RGB2YCrCb, dst=self._buffer("ycrcb", half.shape))
        ycrcb = cv2.LUT(ycrcb, LIMITED_CHROMA, dst=self._buffer("limited", half.shape))
        quarter = height // 4  # each chroma plane: (height/2 x width/2) stored as height/4 rows of width
        yuv[height : height + quarter].reshape(height // 2, width // 2)[...] = ycrcb[..., 2]  # U = Cb
        yuv[height + quarter :].reshape(height // 2, width // 2)[...] = ycrcb[..., 1]  # V = Cr
        return yuv


def pick_video_codec() -> str:
    """The first H.264 (else MPEG-4) encoder that PyAV's FFmpeg has."""
    for name in VIDEO_CODECS:
        try:
            av.codec.Codec(name, "w")
        except Exception:  # UnknownCodecError, or a build without that encoder
            continue
        return name
    raise RuntimeError("PyAV's FFmpeg has no H.264 or MPEG-4 encoder")


class VideoWriter(FrameSink):
    """Encode RGB frames (and optionally mono audio) to an H.264 MP4/MOV/MKV file.

    Width and height must be even (yuv420p); the caller pads or crops. Use as a context manager: a clean exit
    finalizes the file, an exception discards it (device.outputs.sink.FrameSink).
    """

    kind = "video output"

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
        fmt = CONTAINERS.get(Path(path).suffix.lower())
        if fmt is None:
            raise BadInput(f"video output {Path(path)}: unsupported suffix; use one of {', '.join(CONTAINERS)}")
        super().__init__(path, fps, width, height, audio, sample_rate)
        if self._audio is not None and self._rate not in AAC_RATES:
            self._audio, self._rate = resample(self._audio, self._rate, 48000), 48000
        self._audio_sent = 0  # samples handed to the encoder so far
        self._to_i420 = I420Converter()

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

    @staticmethod
    def _check_size(width: int, height: int) -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(f"frame size {width}x{height}: width and height must be positive and even")

    def _write_frame(self, frame: np.ndarray) -> None:
        vf = av.VideoFrame.from_ndarray(self._to_i420(np.ascontiguousarray(frame)), format="yuv420p")
        vf.pts = self.frames
        vf.time_base = Fraction(1, self.fps)  # not the stream's: the muxer may change that one
        vf.duration = 1  # so the last frame, too, lasts 1/fps
        self._container.mux(self._video.encode(vf))
        # Keep the audio level with the video, in whole AAC frames, so the file comes out interleaved.
        self._send_audio(self.audio_samples(self.frames + 1), final=False)

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

    def _finalize(self) -> None:
        """Flush the encoders, finish the file and move it to the target path."""
        if self.frames == 0:  # an MP4 with no frames is unplayable: leave nothing rather than that
            raise ValueError(f"video output {self.path}: no frames were written")
        self._container.mux(self._video.encode(None))
        if self._astream is not None:
            self._send_audio(self.audio_samples(), final=True)
            self._container.mux(self._astream.encode(None))
        self._container.close()
        os.replace(self._tmp, self.path)

    def _discard(self) -> None:
        with contextlib.suppress(Exception):
            self._container.close()
        self._tmp.unlink(missing_ok=True)
