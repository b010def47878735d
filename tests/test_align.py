"""Timed phones from recorded speech: eSpeak speaks a sentence, pocketsphinx must find its phones again."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from device.errors import BadInput
from device.media.audio import resample
from device.motion.align import align_audio, transcript_words
from device.motion.speech import Speech, TimedPhone
from device.motion.tts import synthesize
from device.motion.visemes import VISEMES, mouth_track, openness

TEXT = "Hello, my name is Ada."
LONG_TEXT = "Welcome to the museum. Please take a seat, and I will tell you my story."
FPS = 100


@pytest.fixture(scope="module")
def hello() -> Speech:
    return synthesize(TEXT)


@pytest.fixture(scope="module")
def welcome() -> Speech:
    return synthesize(LONG_TEXT)


def _check(phones: list[TimedPhone], duration: float) -> None:
    assert phones
    previous_end = 0.0
    for phone in phones:
        assert phone.viseme in VISEMES
        assert 0.0 <= phone.start < phone.end <= duration + 1e-9
        assert phone.start >= previous_end - 1e-9
        previous_end = phone.end


def _openness(phones: list[TimedPhone], duration: float) -> np.ndarray:
    return openness(mouth_track(phones, FPS, int(duration * FPS) + 10))


def _agreement(aligned: list[TimedPhone], speech: Speech) -> float:
    """Pearson r between the mouth openness from the aligned phones and from eSpeak's own phones."""
    return float(np.corrcoef(_openness(aligned, speech.duration), _openness(speech.phones, speech.duration))[0, 1])


def _closures(phones: list[TimedPhone]) -> list[float]:
    """When the lips close: the starts of the m, b, p phones. (Their ends are fuzzy: a final m and the
    silence after it sound alike, and look alike too.)"""
    return [p.start for p in phones if p.viseme == "PP"]


def test_forced_alignment_matches_espeak_timing(hello: Speech) -> None:
    started = time.perf_counter()
    phones = align_audio(hello.audio, hello.sample_rate, TEXT)
    _check(phones, hello.duration)
    assert time.perf_counter() - started < 5.0  # includes loading the model, once
    names = [p.phone for p in phones if p.phone != "SIL"]
    assert names[:4] == ["HH", "AH", "L", "OW"] and names.count("M") == 2
    # The two m closures start where eSpeak put them (within 80 ms), and the pause is found.
    np.testing.assert_allclose(_closures(phones), _closures(hello.phones), atol=0.08)
    pause = next(p for p in hello.phones if p.viseme == "sil" and p.end - p.start > 0.1)
    assert any(p.viseme == "sil" and p.start < pause.end - 0.05 and p.end > pause.start + 0.05 for p in phones)
    assert _agreement(phones, hello) > 0.85


def test_resampled_stereo_gives_the_same_phones(hello: Speech) -> None:
    at_22k = align_audio(hello.audio, hello.sample_rate, TEXT)
    stereo = np.stack([resample(hello.audio, hello.sample_rate, 44100)] * 2, axis=1)  # (n, 2)
    at_44k = align_audio(stereo, 44100, TEXT)
    _check(at_44k, hello.duration)
    assert [p.phone for p in at_44k] == [p.phone for p in at_22k]
    np.testing.assert_allclose([p.start for p in at_44k], [p.start for p in at_22k], atol=0.03)
    planar = align_audio(stereo.T.copy(), 44100, TEXT)  # (2, n), as PyAV gives planar audio
    assert [p.phone for p in planar] == [p.phone for p in at_44k]
    as_int16 = align_audio((hello.audio * 32767).astype(np.int16), hello.sample_rate, TEXT)
    assert [p.phone for p in as_int16] == [p.phone for p in at_22k]


def test_longer_speech_with_word_boundaries(welcome: Speech) -> None:
    phones = align_audio(welcome.audio, welcome.sample_rate, LONG_TEXT)
    _check(phones, welcome.duration)
    # Every m/b/p eSpeak spoke is found within 80 ms.
    ours, theirs = _closures(phones), _closures(welcome.phones)
    assert len(ours) == len(theirs) >= 5
    np.testing.assert_allclose(ours, theirs, atol=0.08)
    assert _agreement(phones, welcome) > 0.8


def test_recognition_without_transcript(hello: Speech, welcome: Speech) -> None:
    for speech in (hello, welcome):
        started = time.perf_counter()
        phones = align_audio(speech.audio, speech.sample_rate)
        assert time.perf_counter() - started < speech.duration
        _check(phones, speech.duration)
        # Recognition of a synthetic voice is rough, but the opening and closing pattern comes through.
        assert _agreement(phones, speech) > 0.35
    # In the short sentence the mouth is shut where eSpeak closed the lips mid-speech ("name": an m heard
    # as an m, or as silence), and the pause at the comma is silence.
    phones = align_audio(hello.audio, hello.sample_rate)
    closures = [p for p in hello.phones if p.viseme == "PP"]
    middle = 0.5 * (closures[1].start + closures[1].end)
    assert next(p.viseme for p in phones if p.start <= middle < p.end) in ("PP", "sil"), closures[1]
    pause = next(p for p in hello.phones if p.viseme == "sil" and p.end - p.start > 0.1)
    middle = 0.5 * (pause.start + pause.end)
    assert next(p.viseme for p in phones if p.start <= middle < p.end) == "sil"


@pytest.mark.xfail(
    reason="known weakness: without a transcript the recognizer hears the m right after a pause "
    '("Hello, my") as the pause and the vowel, so the mouth opens ~70 ms early there',
    strict=False,
)
def test_recognition_closes_the_lips_right_after_a_pause(hello: Speech) -> None:
    phones = align_audio(hello.audio, hello.sample_rate)
    first = next(p for p in hello.phones if p.viseme == "PP")
    middle = 0.5 * (first.start + first.end)
    assert next(p.viseme for p in phones if p.start <= middle < p.end) in ("PP", "sil"), first


def test_unknown_words_get_a_pronunciation() -> None:
    text = "Mister Zyxwort bought 42 bananas."
    speech = synthesize(text)
    phones = align_audio(speech.audio, speech.sample_rate, text)
    _check(phones, speech.duration)
    names = [p.phone for p in phones if p.phone != "SIL"]
    # Forced alignment (not the recognition fallback): the transcript's phones in order, "zyxwort" and
    # "42" ("forty two") pronounced by eSpeak's rules.
    zyxwort = ["Z", "IH", "K", "S", "W", "AO", "R", "T"]
    forty_two = ["F", "AO", "R", "T", "IY", "T", "UW"]
    expected = ["M", "IH", "S", "T", "ER", *zyxwort, "B", "AO", "T", *forty_two, "B", "AH", "N", "AE", "N", "AH", "Z"]
    assert names == expected
    assert _agreement(phones, speech) > 0.8


def test_wrong_transcript_falls_back_to_recognition(hello: Speech, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="device.motion.align"):
        phones = align_audio(hello.audio, hello.sample_rate, "completely different words entirely")
    assert "recognizing phones instead" in caplog.text
    _check(phones, hello.duration)
    assert _agreement(phones, hello) > 0.35


def test_silence_is_silence() -> None:
    quiet = np.zeros(16000, np.float32)
    phones = align_audio(quiet, 16000)
    _check(phones, 1.0)
    assert all(p.viseme == "sil" for p in phones)


def test_transcript_words() -> None:
    assert transcript_words("Hello, my name is Ada!  Don’t  panic; it's 42.") == [
        "hello",
        "my",
        "name",
        "is",
        "ada",
        "don't",
        "panic",
        "it's",
        "42",
    ]


@pytest.mark.parametrize(
    ("audio", "rate", "transcript", "named"),
    [
        (np.zeros(0, np.float32), 16000, None, "no samples"),
        (np.full(1600, np.nan, np.float32), 16000, None, "NaN"),
        (np.zeros(1600, np.float32), 0, None, "sample rate 0"),
        (np.zeros(1600, np.float32), 22050.5, None, "22050.5"),
        (np.zeros((2, 2, 100), np.float32), 16000, None, "shape"),
        (np.zeros(1600, np.complex64), 16000, None, "complex64"),
        (np.zeros(1600, np.float32), 16000, " ?! ", "no words"),
    ],
)
def test_bad_input(audio: np.ndarray, rate: float, transcript: str | None, named: str) -> None:
    with pytest.raises(BadInput, match=named):
        align_audio(audio, rate, transcript)  # type: ignore[arg-type]
