"""Video in: describe a video file (exact frame count, audio length) and decode its frames as RGB, through
PyAV's bundled FFmpeg, as device.media.audio does for sound. Every failure is a BadInput naming the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from device.errors import BadInput


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
