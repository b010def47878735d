"""Recorded speech in any language: each timing path, the mouth's lead over its sound, and bad input.

The recordings are eSpeak NG's own (another voice variant and speed than the aligner's reference), so
the true phone times are known from its phoneme events."""

from __future__ import annotations

import itertools
import json
import wave
from pathlib import Path

import numpy as np
import pytest

from device.errors import BadInput
from device.motion import acoustic
from device.motion.recording import MISMATCH_COST, time_phones
from device.motion.speech import Speech, TimedPhone
from device.motion.tts import list_languages, speakable, synthesize
from device.motion.visemes import SPEECH_LEAD_S, mouth_track, openness
from tests.conftest import run_cli

OPEN = {"aa", "E", "oh"}
FPS = 25
GERMAN = "Guten Abend und willkommen im Museum. Kommen Sie bitte näher."
ENGLISH = "Good evening, and welcome to the museum. Please come a bit closer."


def recording(text: str, lang: str) -> Speech:
    """A recording whose phone times are known: eSpeak, in another voice and at another speed."""
    return synthesize(text, lang=lang, voice="f3", rate_wpm=150)


def write_wav(path: Path, audio: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes((np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes())
    return path


def track(phones: list[TimedPhone], duration: float) -> np.ndarray:
    return openness(mouth_track(phones, FPS, int(duration * FPS) + 5))


def agreement(phones: list[TimedPhone], truth: Speech) -> float:
    return float(np.corrcoef(track(phones, truth.duration), track(truth.phones, truth.duration))[0, 1])


def open_vowels(phones: list[TimedPhone]) -> list[TimedPhone]:
    """Open vowels that follow a closure (m, b, p) or a pause: where a mouth must visibly open."""
    return [
        phone
        for before, phone in itertools.pairwise(phones)
        if phone.viseme in OPEN and before.viseme in ("PP", "sil") and phone.end - phone.start > 0.06
    ]


def vowel_onsets(phones: list[TimedPhone]) -> list[float]:
    return [phone.start for phone in open_vowels(phones)]


@pytest.fixture(scope="module")
def german() -> Speech:
    return recording(GERMAN, "de")


# -- timing: the mouth leads its sound, on every path -------------------------------------------------


def test_the_mouth_opens_within_a_frame_of_each_vowel_onset() -> None:
    speech = synthesize("Mama, papa, a map: baba.", lang="en-us")
    jaw = openness(mouth_track(speech.phones, FPS, int(speech.duration * FPS) + 5))
    vowels = open_vowels(speech.phones)
    assert len(vowels) >= 4
    for vowel in vowels:
        onset = round(vowel.start * FPS)
        first = max(onset - 3, 0)
        first += int(np.argmin(jaw[first : onset + 1]))  # from the closure before it
        window = jaw[first : round(vowel.end * FPS) + 1]
        opened = first + int(np.argmax(window >= 0.5 * window.max()))  # half way to this vowel's opening
        assert onset - 1 <= opened <= onset + 1, (vowel, jaw[first : onset + 4])


def test_the_lips_are_shut_before_each_m_b_p_is_heard() -> None:
    speech = synthesize("Mama, papa, a map: baba.", lang="en-us")
    values = mouth_track(speech.phones, FPS, int(speech.duration * FPS) + 5)
    for phone in (p for p in speech.phones if p.viseme == "PP"):
        seen = round((0.5 * (phone.start + phone.end) - SPEECH_LEAD_S) * FPS)
        assert values[seen, 0] < 0.02 and openness(values)[seen] < 0.01, phone  # jaw up, lips together


def test_the_lead_moves_the_whole_track_earlier() -> None:
    speech = synthesize("A bird in the hand.", lang="en-us")
    frames = int(speech.duration * 100) + 10
    on_time = mouth_track(speech.phones, 100, frames, lead_s=0.0)
    ahead = mouth_track(speech.phones, 100, frames, lead_s=0.04)
    np.testing.assert_allclose(ahead[:-4], on_time[4:], atol=2e-3)  # 4 frames at 100 fps = 40 ms


# -- each language path ------------------------------------------------------------------------------


def test_english_with_a_transcript_takes_pocketsphinx() -> None:
    speech = synthesize(ENGLISH, lang="en-us", rate_wpm=150)
    timing = time_phones(speech.audio, speech.sample_rate, ENGLISH, "en")
    assert timing.path == "pocketsphinx-align" and agreement(timing.phones, speech) > 0.8


def test_a_second_language_with_its_transcript_is_aligned_through_espeak(german: Speech) -> None:
    timing = time_phones(german.audio, german.sample_rate, GERMAN, "de")
    assert timing.path == "espeak-dtw" and timing.warning is None
    assert agreement(timing.phones, german) > 0.7  # 0.79 here; other voices and speeds 0.97-1.0
    truth = [p.start for p in german.phones if p.viseme in OPEN]
    found = np.array([p.start for p in timing.phones if p.viseme in OPEN])
    errors = [abs(found - t).min() for t in truth]
    assert len(truth) >= 8 and np.median(errors) <= 1.0 / FPS  # vowel onsets land within a frame


@pytest.mark.parametrize(
    ("lang", "text"), [("fr", "Bonsoir, et bienvenue au musée."), ("es", "Buenas noches y bienvenidos.")]
)
def test_other_languages_align_too(lang: str, text: str) -> None:
    speech = recording(text, lang)
    timing = time_phones(speech.audio, speech.sample_rate, text, lang)
    assert timing.path == "espeak-dtw" and agreement(timing.phones, speech) > 0.75


def test_without_a_transcript_the_sound_drives_the_mouth(german: Speech) -> None:
    timing = time_phones(german.audio, german.sample_rate, None, "de")
    assert timing.path == "acoustic"
    assert agreement(timing.phones, german) > 0.5
    mouth = track(timing.phones, german.duration)
    pause = next(p for p in german.phones if p.viseme == "sil" and p.end - p.start > 0.15 and p.start > 0.3)
    frames = slice(int((pause.start + 0.06) * FPS), int((pause.end - 0.06) * FPS))
    assert mouth[frames].max() < 0.1  # shut in the pause


def test_a_transcript_that_does_not_match_is_reported_and_the_sound_takes_over(german: Speech) -> None:
    timing = time_phones(german.audio, german.sample_rate, "Der Hund schläft unter dem Tisch im Garten.", "de")
    assert timing.path == "acoustic" and "does not fit" in (timing.warning or "")
    _, cost = acoustic.align_to_transcript(acoustic.to_16k(german.audio, german.sample_rate), GERMAN, "de")
    assert cost < MISMATCH_COST


def test_text_and_audio_of_the_same_sentence_agree(tmp_path: Path) -> None:
    speech = synthesize(GERMAN, lang="de")  # the very sound --text makes
    timing = time_phones(speech.audio, speech.sample_rate, GERMAN, "de")
    assert agreement(timing.phones, speech) > 0.9


# -- bad input ---------------------------------------------------------------------------------------


def test_silence_is_reported_and_the_mouth_stays_shut(tmp_path: Path) -> None:
    rate = 16000
    hiss = np.random.default_rng(1).normal(0, 3e-4, rate * 3).astype(np.float32)
    wav = write_wav(tmp_path / "silence.wav", hiss, rate)
    result = run_cli(
        "animate", "--audio", str(wav), "--size", "128", "--backend", "none", "--out", str(tmp_path / "s.mp4"), "--json"
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["speech_timing"] == "silence" and "no speech found" in summary["warnings"][0]
    assert "no speech found" in result.stderr


def test_audio_longer_than_a_clip_may_be_is_refused(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "long.wav", np.zeros(8000 * 600, np.float32), 8000)  # 10 minutes
    result = run_cli("animate", "--audio", str(wav), "--size", "128", "--out", str(tmp_path / "l.mp4"))
    assert result.returncode == 2 and "long.wav" in result.stderr and "limit" in result.stderr


def test_an_unknown_language_for_audio_is_refused(german: Speech) -> None:
    with pytest.raises(BadInput, match="xx-nowhere"):
        time_phones(german.audio, german.sample_rate, GERMAN, "xx-nowhere")


# -- the small things --------------------------------------------------------------------------------


def test_every_listed_language_speaks() -> None:
    languages = list_languages()
    assert "zh" in languages and "en-gb" in languages
    for lang in ("zh", "en-gb", "pt-pt", "yue"):
        assert synthesize("1 2 3", lang=lang).phones, lang


def test_emoji_are_not_read_aloud() -> None:
    assert speakable("Hello 😀 world 👍🏽!").split() == ["Hello", "world", "!"]
    plain = synthesize("Hello world!")
    with_emoji = synthesize("Hello 😀 world 👍🏽!")
    assert [p.phone for p in with_emoji.phones] == [p.phone for p in plain.phones]
    spoken = synthesize("Hello 😀 world!", speak_symbols=True)
    assert len(spoken.phones) > len(plain.phones) + 5  # "grinning face" is spoken


def test_text_of_emoji_only_is_bad_input() -> None:
    with pytest.raises(BadInput, match="nothing to speak"):
        synthesize("😀 👍")
