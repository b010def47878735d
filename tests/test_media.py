"""Audio in and video/frames out, on real files encoded and decoded by PyAV's FFmpeg."""

from __future__ import annotations

import wave
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from device.errors import BadInput
from device.media.audio import load_audio, resample
from device.media.video import probe_video, read_frames
from device.outputs.frames import PngFramesWriter, open_writer
from device.outputs.video import AAC_FRAME, VideoWriter

# ---------------------------------------------------------------- helpers


def tone(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_freq(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * rate / len(audio))


def write_wav16(path: Path, channels: np.ndarray, rate: int) -> None:
    """channels: (n_channels, n_samples) float in [-1, 1], written with the stdlib as 16-bit PCM."""
    pcm = np.round(channels.T * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels.shape[0])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def encode_audio(path: Path, mono: np.ndarray, rate: int, codec: str, fmt: str) -> None:
    """Encode mono float audio with PyAV: FLAC, MP3, AAC, Opus, float WAV."""
    try:
        av.codec.Codec(codec, "w")
    except Exception:
        pytest.skip(f"this FFmpeg has no {codec} encoder")
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.codec_context.layout = "mono"
        stream.codec_context.format = fmt
        data = mono if fmt.startswith(("flt", "dbl")) else np.round(mono * 32767).astype(np.int16)
        step = 4096
        for start in range(0, len(data), step):
            frame = av.AudioFrame.from_ndarray(data[None, start : start + step].copy(), format=fmt, layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def gradient_frames(n: int, width: int, height: int) -> list[np.ndarray]:
    """Smooth moving gradients: compressible, and every frame different."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for i in range(n):
        frame = np.empty((height, width, 3), np.uint8)
        frame[..., 0] = 128 + 100 * np.sin(xx / 30 + i / 4)
        frame[..., 1] = 128 + 100 * np.sin(yy / 25 - i / 7)
        frame[..., 2] = 128 + 80 * np.sin((xx + yy) / 40 + i / 5)
        frames.append(frame)
    return frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


# ---------------------------------------------------------------- audio in


@pytest.mark.parametrize(("rate", "nch"), [(8000, 2), (44100, 1), (16000, 1)])
def test_load_wav16(tmp_path: Path, rate: int, nch: int) -> None:
    left = tone(1.5, rate, amp=0.6)
    channels = np.stack([left, left / 3])[:nch]  # stereo: L = 0.6 sin, R = 0.2 sin
    path = tmp_path / f"s16_{rate}_{nch}.wav"
    write_wav16(path, channels, rate)
    audio, got_rate = load_audio(path)
    assert got_rate == rate
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == len(left)  # PCM: exact
    assert abs(dominant_freq(audio, rate) - 440) < 2
    expected_peak = 0.4 if nch == 2 else 0.6  # stereo is averaged, not summed
    assert abs(np.abs(audio).max() - expected_peak) < 0.01


def test_load_float32_wav_and_resample(tmp_path: Path) -> None:
    rate = 22050
    src = tone(1.0, rate, freq=1000, amp=0.9)
    path = tmp_path / "f32.wav"
    encode_audio(path, src, rate, "pcm_f32le", "flt")
    audio, got_rate = load_audio(path)
    assert got_rate == rate and len(audio) == len(src)
    np.testing.assert_allclose(audio, src, atol=1e-6)  # float PCM is lossless
    audio16, rate16 = load_audio(path, target_rate=16000)
    assert rate16 == 16000 and len(audio16) == 16000
    assert abs(dominant_freq(audio16, 16000) - 1000) < 2


@pytest.mark.parametrize(
    ("name", "codec", "fmt", "rate", "tolerance_s"),
    [
        ("a.flac", "flac", "s16", 44100, 0.0),
        ("a.mp3", "libmp3lame", "fltp", 44100, 0.06),
        ("a.m4a", "aac", "fltp", 48000, 0.06),
        ("a.ogg", "libopus", "flt", 48000, 0.06),
    ],
)
def test_load_compressed(tmp_path: Path, name: str, codec: str, fmt: str, rate: int, tolerance_s: float) -> None:
    src = tone(2.0, rate)
    path = tmp_path / name
    encode_audio(path, src, rate, codec, fmt)
    audio, got_rate = load_audio(path)
    assert got_rate == rate
    assert abs(len(audio) / rate - 2.0) <= tolerance_s + 1e-9
    assert abs(dominant_freq(audio, rate) - 440) < 2
    middle = audio[rate // 2 : rate * 3 // 2]  # away from the onset, where lossy codecs ring
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    audio16, _ = load_audio(path, target_rate=16000)
    assert abs(len(audio16) / 16000 - 2.0) <= tolerance_s + 1e-4


def test_resample_keeps_length_and_pitch() -> None:
    src = tone(1.0, 16000, freq=440)
    for target in (8000, 22050, 48000):
        out = resample(src, 16000, target)
        assert out.dtype == np.float32 and len(out) == target
        reference = tone(1.0, target, freq=440)
        # Same signal, same phase, away from the edges where the filter has no history.
        assert np.abs(out[500:-500] - reference[500:-500]).max() < 1e-3
    assert len(resample(src[:7], 16000, 44100)) == round(7 * 44100 / 16000)


def test_load_audio_bad_inputs(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.wav"
    with pytest.raises(BadInput, match=r"nowhere\.wav"):
        load_audio(missing)

    text = tmp_path / "notes.wav"
    text.write_text("this is not audio, just text pretending to be a WAV file\n" * 20)
    with pytest.raises(BadInput, match=r"notes\.wav"):
        load_audio(text)

    empty_file = tmp_path / "zero_bytes.wav"
    empty_file.write_bytes(b"")
    with pytest.raises(BadInput, match=r"zero_bytes\.wav"):
        load_audio(empty_file)

    no_samples = tmp_path / "no_samples.wav"
    write_wav16(no_samples, np.zeros((1, 0)), 16000)
    with pytest.raises(BadInput, match=r"no_samples\.wav.*no audio samples"):
        load_audio(no_samples)

    long = tmp_path / "long.wav"
    write_wav16(long, tone(1.0, 8000)[None], 8000)
    with pytest.raises(BadInput, match=r"long\.wav.*limit"):
        load_audio(long, max_seconds=0.5)

    silent_video = tmp_path / "silent.mp4"
    with VideoWriter(silent_video, 10, 32, 32) as w:
        w.write(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(BadInput, match=r"silent\.mp4.*no audio stream"):
        load_audio(silent_video)


# ---------------------------------------------------------------- video out


@pytest.mark.parametrize(("fps", "n", "audio_seconds"), [(25, 50, 2.6), (30, 47, 1.0)])
def test_mp4_roundtrip(tmp_path: Path, fps: int, n: int, audio_seconds: float) -> None:
    """Exact frame count and duration; audio trimmed (first case) or padded (second) to the video's length."""
    width, height, rate = 160, 128, 16000
    frames = gradient_frames(n, width, height)
    audio = tone(audio_seconds, rate)
    path = tmp_path / "clip.mp4"
    with VideoWriter(path, fps, width, height, audio=audio, sample_rate=rate) as writer:
        for frame in frames:
            writer.write(frame)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # no temp file left beside it

    info = probe_video(path)
    assert info.frames == n
    assert info.fps == fps
    assert info.duration == pytest.approx(n / fps, abs=1e-6)
    assert (info.width, info.height) == (width, height)
    assert info.video_codec in ("h264", "mpeg4")
    assert info.has_audio and info.audio_rate == rate
    assert abs(info.audio_duration - n / fps) <= AAC_FRAME / rate

    decoded = list(read_frames(path))
    assert len(decoded) == n
    assert all(d.shape == (height, width, 3) and d.dtype == np.uint8 for d in decoded)
    assert min(psnr(d, f) for d, f in zip(decoded, frames, strict=True)) > 30

    # The audio starts on time (no encoder delay left in): the tone is there from the first samples,
    # and after the given audio ends (the padded case) there is silence.
    sound, _ = load_audio(path)
    assert np.abs(sound[:400]).max() > 0.3
    if audio_seconds < n / fps:
        assert np.abs(sound[int((audio_seconds + 0.1) * rate) : int(n / fps * rate)]).max() < 0.02


def test_mp4_without_audio_and_odd_sizes(tmp_path: Path) -> None:
    path = tmp_path / "silent.mkv"
    with VideoWriter(path, 12, 64, 48) as writer:
        for frame in gradient_frames(7, 64, 48):
            writer.write(frame)
    info = probe_video(path)
    assert info.frames == 7 and not info.has_audio and info.audio_duration == 0.0
    assert info.duration == pytest.approx(7 / 12, abs=1e-3)

    with pytest.raises(ValueError, match="even"):
        VideoWriter(tmp_path / "odd.mp4", 25, 63, 48)
    writer = VideoWriter(tmp_path / "shape.mp4", 25, 64, 48)
    with pytest.raises(ValueError, match="shape"):
        writer.write(np.zeros((48, 64), np.uint8))
    writer.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["silent.mkv"]


def test_crash_inside_writer_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "crash.mp4"
    with (
        pytest.raises(RuntimeError, match="render failed"),
        VideoWriter(target, 25, 64, 64, audio=tone(1.0, 16000), sample_rate=16000) as writer,
    ):
        for frame in gradient_frames(5, 64, 64):
            writer.write(frame)
        raise RuntimeError("render failed")
    assert list(tmp_path.iterdir()) == []

    # An earlier good clip at the target survives a failed re-render untouched.
    with VideoWriter(target, 25, 64, 64) as writer:
        writer.write(np.zeros((64, 64, 3), np.uint8))
    before = target.read_bytes()
    with pytest.raises(RuntimeError), VideoWriter(target, 25, 64, 64) as writer:
        writer.write(np.full((64, 64, 3), 200, np.uint8))
        raise RuntimeError("render failed")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["crash.mp4"]

    # No frames at all: an error, not an unplayable file.
    with pytest.raises(ValueError, match="no frames"), VideoWriter(tmp_path / "empty.mp4", 25, 64, 64):
        pass
    assert [p.name for p in tmp_path.iterdir()] == ["crash.mp4"]


# ---------------------------------------------------------------- frames out, and the choice of writer


def test_png_frames_writer(tmp_path: Path) -> None:
    out = tmp_path / "frames"
    frames = gradient_frames(6, 40, 30)  # PNG takes odd sizes too
    audio = tone(2.0, 16000)
    with PngFramesWriter(out, 24, 40, 30, audio=audio, sample_rate=16000) as writer:
        for frame in frames:
            writer.write(frame)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["audio.wav"] + [f"frame_{i:06d}.png" for i in range(6)]
    for i, frame in enumerate(frames):
        back = cv2.imread(str(out / f"frame_{i:06d}.png"))[..., ::-1]
        assert np.array_equal(back, frame)  # lossless, and RGB order kept
    with wave.open(str(out / "audio.wav")) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        assert w.getnframes() == 6 * 16000 // 24  # trimmed to the frames' duration
    sound, _ = load_audio(out / "audio.wav")
    np.testing.assert_allclose(sound, audio[: len(sound)], atol=1e-4)

    with pytest.raises(BadInput, match="frames"):
        PngFramesWriter(out, 24, 40, 30)
    with PngFramesWriter(out, 24, 40, 30, overwrite=True) as writer:
        writer.write(frames[0])
    assert sorted(p.name for p in out.iterdir()) == ["frame_000000.png"]  # stale frames and audio gone


def test_open_writer_choice(tmp_path: Path) -> None:
    assert isinstance(open_writer(tmp_path / "a", 25, 32, 32), PngFramesWriter)
    existing = tmp_path / "dir.mp4"
    existing.mkdir()
    assert isinstance(open_writer(existing, 25, 32, 32), PngFramesWriter)
    for suffix in (".mp4", ".MOV", ".mkv"):
        writer = open_writer(tmp_path / f"clip{suffix}", 25, 32, 32)
        assert isinstance(writer, VideoWriter)
        writer.abort()
    with pytest.raises(BadInput, match=r"clip\.avi.*\.mp4"):
        open_writer(tmp_path / "clip.avi", 25, 32, 32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "dir.mp4"]  # no temp files left


@pytest.mark.parametrize("name", ["clip.mp4", "frames"])
def test_both_writers_keep_the_one_sink_contract(tmp_path: Path, name: str) -> None:
    from device.outputs.sink import FrameSink

    frame = np.zeros((32, 48, 3), np.uint8)
    with open_writer(tmp_path / name, 25, 48, 32, audio=np.zeros(800, np.float32), sample_rate=16000) as writer:
        assert isinstance(writer, FrameSink)
        for _ in range(3):
            writer.write(frame)
        assert writer.frames == 3 and writer.audio_samples() == 3 * 16000 // 25
        with pytest.raises(ValueError, match="shape"):
            writer.write(frame[:16])
    assert (tmp_path / name).exists()
    writer.close()  # a second close is a no-op
    with pytest.raises(ValueError, match="writer is closed"):
        writer.write(frame)

    discarded = tmp_path / f"discarded-{name}"
    with pytest.raises(RuntimeError, match="render failed"), open_writer(discarded, 25, 48, 32) as writer:
        writer.write(frame)
        raise RuntimeError("render failed")
    assert not discarded.exists() and sorted(p.name for p in tmp_path.iterdir()) == sorted([name])


def test_the_writers_yuv_matches_swscales_and_keeps_colour_edges(astronaut) -> None:
    """The fast RGB -> YUV 4:2:0 of the video writer is the same picture swscale makes (BT.601 limited
    range, each 2x2 block's mean chroma), not OpenCV's one-pixel chroma that frays colour edges."""
    from device.outputs.video import I420Converter

    frame = np.ascontiguousarray(astronaut[:256, :254])  # even, not square
    ours = I420Converter()(frame).astype(int)
    theirs = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p").to_ndarray().astype(int)
    assert ours.shape == theirs.shape
    height = frame.shape[0]
    assert np.abs(ours[:height] - theirs[:height]).mean() < 0.1  # luma
    assert np.abs(ours[height:] - theirs[height:]).mean() < 0.6  # chroma
    point_sampled = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).astype(int)
    assert np.abs(point_sampled[height:] - theirs[height:]).mean() > 2 * np.abs(ours[height:] - theirs[height:]).mean()
