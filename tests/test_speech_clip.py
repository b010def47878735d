"""Talking clips decoded back: frames, duration, the audio track, and lip sync measured by the face
mesh on the rendered frames (the exact figures are in `python -m tools.lipsync`)."""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest

from device.media.video import probe_video
from tests.conftest import run_cli

SENTENCE = "Hello! My name is Ada, and I am a very old painting."


@pytest.fixture(scope="module")
def lipsync_report(analyzer):
    from tools.lipsync import evaluate

    return evaluate(None, SENTENCE, analyzer=analyzer)


@pytest.mark.slow
def test_text_clip_has_exact_frames_and_the_speech_track(tmp_path) -> None:
    out = tmp_path / "talk.mp4"
    result = run_cli("animate", "--text", SENTENCE, "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    info = probe_video(out)
    assert info.frames == summary["frames"]
    assert info.duration == pytest.approx(summary["frames"] / 25, abs=1e-6)
    assert info.has_audio
    # The audio lasts as long as the video (one AAC frame of padding at most), which covers the speech.
    assert abs(info.audio_duration - info.duration) <= 1024 / info.audio_rate + 1e-3
    assert info.duration > 2.0


def test_mouth_follows_the_visemes(lipsync_report) -> None:
    assert lipsync_report.pearson_r > 0.6
    assert lipsync_report.open_mean > 2.0 * lipsync_report.closed_mean


def test_the_portrait_shows_its_own_mouth_before_it_speaks(lipsync_report, astronaut_face) -> None:
    """eSpeak starts with a short pause: the first frame is silent, and the sample portrait smiles there
    with its teeth, as in its photo (speech closes the lips only while it lasts)."""
    from device.face import topology as topo

    assert lipsync_report.expected[0] < 0.1
    own = topo.mouth_opening(astronaut_face.landmarks)
    assert own > 0.15 and lipsync_report.measured[0] > 0.8 * own  # open as in the photo (shut is < 0.1)
    assert lipsync_report.measured[-1] > 0.8 * own  # and it smiles again after the last word


@pytest.mark.slow
def test_other_language(tmp_path) -> None:
    out = tmp_path / "de.mp4"
    result = run_cli("animate", "--text", "Guten Tag, ich bin ein altes Bild.", "--lang", "de", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert probe_video(out).has_audio


def test_unknown_language_exits_2(tmp_path) -> None:
    result = run_cli("animate", "--text", "hello", "--lang", "xx-nowhere", "--out", str(tmp_path / "x.mp4"))
    assert result.returncode == 2 and "xx-nowhere" in result.stderr


def _write_wav(path, audio: np.ndarray, rate: int, channels: int) -> None:
    samples = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    if channels == 2:
        samples = np.repeat(samples[:, None], 2, axis=1)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())


@pytest.mark.slow
@pytest.mark.parametrize("transcript", [SENTENCE, None])
def test_audio_driver_lip_syncs_a_recording(tmp_path, transcript) -> None:
    from device.media.audio import resample
    from device.motion.tts import synthesize
    from device.motion.visemes import mouth_track, openness

    speech = synthesize(SENTENCE)
    stereo_44k = resample(speech.audio, speech.sample_rate, 44100)
    wav = tmp_path / "speech.wav"
    _write_wav(wav, stereo_44k, 44100, channels=2)
    out = tmp_path / "audio.mp4"
    args = ["animate", "--audio", str(wav), "--out", str(out), "--json"]
    if transcript:
        args += ["--transcript", transcript]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    info = probe_video(out)
    assert info.has_audio and info.duration >= speech.duration

    # The recording's mouth track agrees with eSpeak's own timing of the same words.
    from device.media.audio import load_audio
    from device.motion.align import align_audio

    audio, rate = load_audio(wav)
    phones = align_audio(audio, rate, transcript)
    frames = info.frames
    aligned = openness(mouth_track(phones, 25, frames))
    reference = openness(mouth_track(speech.phones, 25, frames))
    assert np.corrcoef(aligned, reference)[0, 1] > (0.6 if transcript else 0.4)
