"""Audio in: decode any file FFmpeg reads into float32 mono, and resample.

PyAV (with its bundled FFmpeg) does the decoding and the resampling, so WAV, MP3, FLAC, OGG and M4A all take
the same path, at any rate and sample format.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from device.errors import BadInput

# Speech clips are seconds long; ten minutes bounds memory (600 s x 48 kHz x 4 B = 115 MB) and time.
MAX_SECONDS = 600.0


def load_audio(
    path: str | Path, target_rate: int | None = None, max_seconds: float = MAX_SECONDS
) -> tuple[np.ndarray, int]:
    """Decode an audio file to float32 mono in [-1, 1] and its sample rate.

    Channels are averaged. With ``target_rate`` the audio is resampled to it. Raises ``BadInput``, naming the
    file, when it is missing, unreadable, has no audio stream, holds no samples, or runs past ``max_seconds``.
    """
    path = Path(path)
    if not path.is_file():
        problem = "not a file" if path.exists() else "not found"
        raise BadInput(f"audio file {path}: {problem}")
    if target_rate is not None and target_rate <= 0:
        raise BadInput(f"target sample rate {target_rate}: must be positive")
    chunks: list[np.ndarray] = []
    total = 0
    rate = 0
    try:
        with av.open(str(path), "r") as container:
            if not container.streams.audio:
                raise BadInput(f"audio file {path}: has no audio stream")
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate or stream.rate or 0
            # Planar float keeps every input format (u8, s16, s32, flt, dbl, packed or planar) on one path;
            # the channel average is done here because swresample's own downmix is not an average.
            to_float = av.AudioResampler(format="fltp")
            limit = None
            for frame in container.decode(stream):
                if limit is None:
                    rate = frame.sample_rate or rate
                    if rate <= 0:
                        raise BadInput(f"audio file {path}: has no sample rate")
                    limit = int(max_seconds * rate)
                for converted in to_float.resample(frame):
                    chunk = converted.to_ndarray()
                    chunks.append(chunk.mean(axis=0, dtype=np.float32) if chunk.shape[0] > 1 else chunk[0])
                    total += chunk.shape[1]
                if total > limit:
                    raise BadInput(f"audio file {path}: longer than the {max_seconds:g} s limit")
            for converted in to_float.resample(None):
                chunk = converted.to_ndarray()
                chunks.append(chunk.mean(axis=0, dtype=np.float32) if chunk.shape[0] > 1 else chunk[0])
                total += chunk.shape[1]
    except BadInput:
        raise
    except (av.FFmpegError, ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"audio file {path}: cannot be decoded ({exc})") from exc
    if total == 0:
        raise BadInput(f"audio file {path}: contains no audio samples")
    audio = np.clip(np.concatenate(chunks).astype(np.float32, copy=False), -1.0, 1.0)
    if target_rate is not None and target_rate != rate:
        audio = resample(audio, rate, target_rate)
        rate = target_rate
    return audio, rate


def resample(audio: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Resample mono audio from ``rate`` to ``target_rate`` with FFmpeg's resampler.

    The result has exactly ``round(len(audio) * target_rate / rate)`` samples, so durations are kept.
    """
    if rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {rate} -> {target_rate}")
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"resample takes mono audio (1-D), got shape {audio.shape}")
    want = round(len(audio) * target_rate / rate)
    if rate == target_rate or len(audio) == 0:
        return audio.copy() if want == len(audio) else np.zeros(want, np.float32)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=target_rate)
    out: list[np.ndarray] = []
    step = 1 << 16  # bounded frames keep the filter graph's buffers small
    for start in range(0, len(audio), step):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(audio[None, start : start + step]), format="flt", layout="mono"
        )
        frame.sample_rate = rate
        frame.pts = None
        out.extend(f.to_ndarray()[0] for f in resampler.resample(frame))
    out.extend(f.to_ndarray()[0] for f in resampler.resample(None))
    result = np.concatenate(out) if out else np.zeros(0, np.float32)
    # The filter's flush can leave a sample more or less than the exact ratio; pin the length.
    if len(result) >= want:
        return np.ascontiguousarray(result[:want], dtype=np.float32)
    return np.concatenate([result, np.zeros(want - len(result), np.float32)])
