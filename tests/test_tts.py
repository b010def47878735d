"""Text to speech with eSpeak NG: real synthesis, its phone timings, and the mouth track they drive."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from device.errors import BadInput
from device.motion.speech import Speech
from device.motion.tts import MAX_TEXT_CHARS, list_languages, list_voices, synthesize, text_to_phonemes
from device.motion.visemes import VISEMES, mouth_track

JAW, PRESS = 0, 3
TEXT = "Hello, my name is Ada."


@pytest.fixture(scope="module")
def hello() -> Speech:
    return synthesize(TEXT)


def _rms(speech: Speech, start: float, end: float) -> float:
    chunk = speech.audio[int(start * speech.sample_rate) : int(end * speech.sample_rate)]
    return float(np.sqrt(np.mean(chunk.astype(np.float64) ** 2))) if len(chunk) else 0.0


def _check_phones(speech: Speech) -> None:
    assert speech.phones
    previous_end = 0.0
    for phone in speech.phones:
        assert phone.viseme in VISEMES
        assert 0.0 <= phone.start < phone.end <= speech.duration + 1e-9
        assert phone.start >= previous_end - 1e-9  # in order, no overlaps
        previous_end = phone.end


def test_synthesize_hello(hello: Speech) -> None:
    assert hello.sample_rate == 22050
    assert hello.audio.dtype == np.float32 and hello.audio.ndim == 1
    assert np.abs(hello.audio).max() <= 1.0 and np.abs(hello.audio).max() > 0.2
    assert 0.8 < hello.duration < 3.0
    assert hello.text == TEXT
    _check_phones(hello)
    # Back to back: each phone ends where the next one starts, the last at the end of the audio.
    for before, after in zip(hello.phones, hello.phones[1:], strict=False):
        assert after.start == pytest.approx(before.end)
    assert hello.phones[-1].end == pytest.approx(hello.duration)
    visemes = [p.viseme for p in hello.phones]
    assert visemes.count("PP") == 2  # the m of "my" and of "name"
    assert "sil" in visemes  # the pause at the comma
    assert "aa" in visemes  # the open start of the diphthong in "my"


def test_phone_timings_follow_the_audio(hello: Speech) -> None:
    # Vowels are loud, pauses quiet: the phone times really match the samples.
    vowels = [p for p in hello.phones if p.viseme in ("aa", "E", "ih", "oh", "ou")]
    pauses = [p for p in hello.phones if p.viseme == "sil" and p.end - p.start > 0.05]
    assert vowels and pauses
    vowel_rms = np.mean([_rms(hello, p.start, p.end) for p in vowels])
    pause_rms = np.mean([_rms(hello, p.start + 0.01, p.end - 0.01) for p in pauses])
    assert vowel_rms > 0.05 and pause_rms < 0.1 * vowel_rms


def test_mouth_track_from_speech(hello: Speech) -> None:
    fps = 25
    n_frames = int(np.ceil(hello.duration * fps)) + 10
    track = mouth_track(hello.phones, fps, n_frames, lead_s=0.0)
    times = np.arange(n_frames) / fps
    jaw = track[:, JAW]
    assert np.all(jaw[times > hello.duration + 0.1] == 0.0)  # trailing silence: shut
    assert jaw[0] < 0.15  # speech starts 12 ms in: the mouth is only beginning to open
    pause = next(p for p in hello.phones if p.viseme == "sil" and p.end - p.start > 0.1)
    assert jaw[(times > pause.start + 0.05) & (times < pause.end - 0.05)].max() < 0.05
    for m in (p for p in hello.phones if p.viseme == "PP"):
        nearest = round(0.5 * (m.start + m.end) * fps)
        assert jaw[nearest] < 0.01 and track[nearest, PRESS] > 0.99, m
    opens = [p for p in hello.phones if p.viseme in ("aa", "E", "oh")]
    assert max(jaw[(times >= p.start) & (times <= p.end + 0.02)].max() for p in opens) > 0.4
    assert np.abs(np.diff(jaw)).max() < 0.55


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("en", "Welcome to the museum."),
        ("en-us", "Welcome to the museum."),
        ("de", "Willkommen im Museum, bitte nehmen Sie Platz."),
        ("fr", "Bienvenue au musée, mon ami."),
        ("es", "Bienvenidos al museo, por favor."),
    ],
)
def test_languages(lang: str, text: str) -> None:
    assert lang in list_languages()
    speech = synthesize(text, lang=lang)
    assert np.abs(speech.audio).max() > 0.1 and 0.5 < speech.duration < 5.0
    _check_phones(speech)
    visemes = {p.viseme for p in speech.phones}
    assert "PP" in visemes  # every sentence has an m, b or p
    assert visemes & {"aa", "E", "oh"}  # and an open vowel


def test_voice_and_rate_change_the_speech(hello: Speech) -> None:
    assert "f3" in list_voices() and "m1" in list_voices()
    female = synthesize(TEXT, voice="f3")
    assert len(female.audio) != len(hello.audio) or not np.array_equal(female.audio, hello.audio)
    # Same words, same mouth (a voice may end on a pause of its own).
    assert [p.viseme for p in female.phones if p.viseme != "sil"] == [
        p.viseme for p in hello.phones if p.viseme != "sil"
    ]
    fast = synthesize(TEXT, rate_wpm=300)
    slow = synthesize(TEXT, rate_wpm=100)
    assert fast.duration < hello.duration < slow.duration
    _check_phones(fast)
    _check_phones(slow)


def test_concurrent_calls_are_serialized(hello: Speech) -> None:
    # eSpeak is one global C engine: calls from several threads must not mix their audio or phones.
    # (Its output is not bit-exact from call to call: the voice's pitch flutter carries its phase over,
    # moving phones and the end by up to ~10 ms after other languages were spoken in the same process.)
    results: list[tuple[str, Speech | BaseException]] = []

    def speak(lang: str) -> None:
        try:
            results.append((lang, synthesize(TEXT, lang=lang)))
        except BaseException as exc:  # surfaced below
            results.append((lang, exc))

    threads = [threading.Thread(target=speak, args=("en" if i % 2 == 0 else "de",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    german = synthesize(TEXT, lang="de")
    assert len(results) == 6
    for lang, result in results:
        assert isinstance(result, Speech)
        expected = hello if lang == "en" else german
        assert abs(len(result.audio) - len(expected.audio)) < 0.02 * expected.sample_rate
        assert [p.phone for p in result.phones] == [p.phone for p in expected.phones]
        starts = np.array([p.start for p in result.phones]) - [p.start for p in expected.phones]
        assert np.abs(starts).max() < 0.02


def test_text_to_phonemes() -> None:
    phonemes = text_to_phonemes("hello world", "en-us")
    assert phonemes[:3] == ["h", "@", "l"]
    assert "w" in phonemes and "d" in phonemes


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"text": ""}, "text"),
        ({"text": "  \n\t "}, "text"),
        ({"text": "a" * (MAX_TEXT_CHARS + 1)}, str(MAX_TEXT_CHARS)),
        ({"text": "..."}, "'...'"),
        ({"text": "Hello", "lang": "klingon"}, "'klingon'"),
        ({"text": "Hello", "lang": "en-xx"}, "'en-xx'"),
        ({"text": "Hello", "voice": "nobody"}, "'nobody'"),
        ({"text": "Hello", "rate_wpm": 10}, "10"),
        ({"text": "Hello", "rate_wpm": 1000}, "1000"),
    ],
)
def test_bad_input(kwargs: dict, named: str) -> None:
    with pytest.raises(BadInput) as error:
        synthesize(**kwargs)
    assert named in str(error.value)
    assert error.value.exit_code == 2


def test_bad_language_message_says_how_to_list() -> None:
    with pytest.raises(BadInput, match=r"`portrait languages`"):
        synthesize("Hello", lang="klingon")
    with pytest.raises(BadInput, match=r"did you mean .*en-us"):
        synthesize("Hello", lang="en-xx")
    with pytest.raises(BadInput, match=r"`portrait languages --voices`"):
        synthesize("Hello", voice="nobody")
