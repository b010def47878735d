"""Visemes: the phone to viseme maps and the coarticulated mouth track."""

from __future__ import annotations

import numpy as np
import pytest

from device.motion.params import MOUTH_CHANNELS
from device.motion.speech import TimedPhone
from device.motion.visemes import (
    VISEMES,
    mouth_track,
    openness,
    split_glides,
    viseme_for_arpabet,
    viseme_for_espeak,
    visemes_for_arpabet,
    visemes_for_espeak,
)

JAW, ROUND, WIDE, PRESS = range(4)


def test_viseme_shapes() -> None:
    assert len(VISEMES) == 15
    for name, shape in VISEMES.items():
        assert len(shape) == len(MOUTH_CHANNELS), name
        assert all(0.0 <= value <= 1.0 for value in shape), name
    assert VISEMES["sil"].jaw_open == 0.0 and VISEMES["PP"].jaw_open == 0.0
    assert VISEMES["PP"].lip_press == 1.0
    assert VISEMES["aa"].jaw_open == max(shape.jaw_open for shape in VISEMES.values())
    assert VISEMES["ou"].lip_round == 1.0 and VISEMES["ih"].lip_wide > 0.5


@pytest.mark.parametrize(
    ("mnemonic", "viseme"),
    [
        ("m", "PP"),
        ("b", "PP"),
        ("p", "PP"),
        ("m;", "PP"),  # Russian soft m
        ("f", "FF"),
        ("v", "FF"),
        ("T", "TH"),
        ("D", "TH"),
        ("t", "DD"),
        ("t#", "DD"),  # American flap
        ("k", "kk"),
        ("N", "kk"),
        ("tS", "CH"),
        ("S", "CH"),
        ("s", "SS"),
        ("ts", "SS"),
        ("n", "nn"),
        ("l^", "nn"),
        ("r", "RR"),
        ("**", "RR"),  # Spanish trill
        ("'A:", "aa"),
        ("'aI", "aa"),  # diphthong: its first shape
        ("'V", "aa"),
        ("'E", "E"),
        ("@", "E"),
        ("i:", "ih"),
        ("I", "ih"),
        ("'0", "oh"),
        ("'oU", "oh"),
        ("'Y:", "oh"),  # German ö
        ("u:", "ou"),
        ("'y", "ou"),  # French u
        ("w", "ou"),
        ("_", "sil"),
        ("_:", "sil"),
        ("(en)", "sil"),
    ],
)
def test_espeak_mnemonics(mnemonic: str, viseme: str) -> None:
    assert viseme_for_espeak(mnemonic) == viseme


def test_espeak_diphthongs_glide() -> None:
    assert visemes_for_espeak("'aI") == ("aa", "ih")
    assert visemes_for_espeak("aU") == ("aa", "ou")
    assert visemes_for_espeak("'&U~") == ("aa", "ou")  # Portuguese nasal diphthong, by its letters
    assert visemes_for_espeak("m") == ("PP",)


@pytest.mark.parametrize("mnemonic", ["", "   ", "Qz#", "€", "9999", "'", "'!", "@@@@@@@@", "t[", "r-"])
def test_espeak_unknown_symbols_fall_back(mnemonic: str) -> None:
    assert viseme_for_espeak(mnemonic) in VISEMES


@pytest.mark.parametrize(
    ("phone", "viseme"),
    [
        ("AA1", "aa"),
        ("AE", "aa"),
        ("AY", "aa"),
        ("EH2", "E"),
        ("IY0", "ih"),
        ("OW", "oh"),
        ("UW", "ou"),
        ("W", "ou"),
        ("M", "PP"),
        ("B", "PP"),
        ("F", "FF"),
        ("DH", "TH"),
        ("T", "DD"),
        ("NG", "kk"),
        ("JH", "CH"),
        ("Z", "SS"),
        ("L", "nn"),
        ("ER", "RR"),
        ("SIL", "sil"),
        ("+NSN+", "sil"),
        ("+SPN+", "sil"),
        ("<sil>", "sil"),
        ("sil", "sil"),
    ],
)
def test_arpabet(phone: str, viseme: str) -> None:
    assert viseme_for_arpabet(phone) == viseme


def test_arpabet_unknown_and_glides() -> None:
    assert viseme_for_arpabet("XYZ") in VISEMES
    assert viseme_for_arpabet("OQ") == "oh"
    assert visemes_for_arpabet("OY1") == ("oh", "ih")


def test_split_glides() -> None:
    parts = split_glides(1.0, 1.2, "aI", ("aa", "ih"))
    assert [p.viseme for p in parts] == ["aa", "ih"]
    assert parts[0].start == 1.0 and parts[1].end == 1.2 and parts[0].end == parts[1].start
    assert all(p.phone == "aI" for p in parts)
    assert split_glides(0.0, 0.1, "m", ("PP",)) == [TimedPhone(0.0, 0.1, "m", "PP")]


def _phones(*spec: tuple[float, str]) -> list[TimedPhone]:
    """Back-to-back phones from (duration, viseme) pairs, starting at 0.3 s."""
    phones, t = [], 0.3
    for duration, viseme in spec:
        phones.append(TimedPhone(t, t + duration, viseme, viseme))
        t += duration
    return phones


def test_track_shape_and_silence() -> None:
    assert mouth_track([], 25, 0, lead_s=0.0).shape == (0, 4)
    quiet = mouth_track([], 25, 10, lead_s=0.0)
    assert quiet.shape == (10, 4) and quiet.dtype == np.float32 and not quiet.any()
    phones = _phones((0.2, "aa"), (0.2, "E"))
    track = mouth_track(phones, 25, 50, lead_s=0.0)  # 2 s: speech ends at 0.7 s
    assert track.shape == (50, 4) and track.dtype == np.float32
    assert track.min() >= 0.0 and track.max() <= 1.0
    assert np.all(track[:3, JAW] == 0.0)  # before speech (to 0.08 s)
    assert np.all(track[22:] == 0.0)  # after speech (from 0.88 s), all channels at rest
    with pytest.raises(ValueError, match="fps"):
        mouth_track(phones, 0, 10, lead_s=0.0)


def test_frame_k_shows_time_k_over_fps() -> None:
    phones = [TimedPhone(1.0, 1.3, "a", "aa")]
    for fps in (25, 30, 60):
        jaw = mouth_track(phones, fps, int(2 * fps), lead_s=0.0)[:, JAW]
        peak = int(np.argmax(jaw)) / fps
        assert 1.0 <= peak <= 1.3, (fps, peak)
        assert jaw.max() > 0.8


def test_bilabial_closes_even_when_short() -> None:
    # "ama" with a 25 ms m, shorter than a frame period at 25 fps: the lips must still be seen shut.
    for fps in (25, 30, 60):
        phones = _phones((0.2, "aa"), (0.025, "PP"), (0.2, "aa"))
        track = mouth_track(phones, fps, int(1.2 * fps), lead_s=0.0)
        times = np.arange(len(track)) / fps
        near = np.abs(times - 0.5125) <= 0.5 / fps + 1e-9  # the frame nearest the m
        assert np.all(track[near, JAW] < 1e-6) and np.all(track[near, PRESS] == 1.0), fps
        inside_vowels = (np.abs(times - 0.4) < 0.02) | (np.abs(times - 0.62) < 0.02)
        assert track[inside_vowels, JAW].max() > 0.5, fps


def test_long_bilabial_and_pause_hold_closed() -> None:
    phones = _phones((0.2, "aa"), (0.15, "PP"), (0.2, "oh"), (0.3, "sil"), (0.2, "ih"))
    fps = 50
    track = mouth_track(phones, fps, 80, lead_s=0.0)
    times = np.arange(80) / fps
    in_m = (times >= 0.55) & (times <= 0.6)  # the core of the m (0.5 .. 0.65)
    assert np.all(track[in_m, JAW] < 1e-6) and np.all(track[in_m, PRESS] > 0.999)
    in_pause = (times >= 0.95) & (times <= 1.0)  # the middle of the pause (0.85 .. 1.15)
    assert np.all(track[in_pause] < 1e-6)
    assert track[(times > 0.7) & (times < 0.8), ROUND].max() > 0.5  # the rounded vowel rounds
    assert track[(times > 1.2) & (times < 1.3), WIDE].max() > 0.5  # the spread vowel spreads


def test_short_pause_does_not_force_closure() -> None:
    # A 40 ms gap between two open vowels (a glottal break) only dips the jaw.
    phones = [TimedPhone(0.3, 0.5, "a", "aa"), TimedPhone(0.54, 0.74, "a", "aa")]
    jaw = mouth_track(phones, 100, 100, lead_s=0.0)[:, JAW]
    assert jaw[50:54].min() > 0.3


def test_coarticulation_is_smooth() -> None:
    # A naive track snaps from 0 to 1 between frames; this one moves at a bounded speed.
    phones = _phones((0.2, "sil"), (0.08, "PP"), (0.12, "aa"), (0.06, "DD"), (0.1, "ou"), (0.05, "PP"), (0.2, "aa"))
    # (fps, largest jaw step, largest step of any channel): about 14 jaw units/s, 22/s for the fast lips.
    for fps, jaw_bound, any_bound in ((25, 0.55, 0.85), (60, 0.3, 0.45), (100, 0.2, 0.3)):
        track = mouth_track(phones, fps, int(1.5 * fps), lead_s=0.0)
        steps = np.abs(np.diff(track, axis=0))
        assert steps[:, JAW].max() <= jaw_bound, fps
        assert steps.max() <= any_bound, fps


def test_tongue_consonant_between_vowels_keeps_jaw_open() -> None:
    # "ada": the d barely closes the jaw; "aba" closes it fully.
    ada = mouth_track(_phones((0.15, "aa"), (0.06, "DD"), (0.15, "aa")), 100, 80, lead_s=0.0)[:, JAW]
    aba = mouth_track(_phones((0.15, "aa"), (0.06, "PP"), (0.15, "aa")), 100, 80, lead_s=0.0)[:, JAW]
    middle = slice(47, 50)  # 0.47 .. 0.49 s, inside the consonant (0.45 .. 0.51)
    assert ada[middle].min() > 0.5
    assert aba[middle].min() < 1e-6


def test_unknown_viseme_and_odd_phones_are_safe() -> None:
    phones = [
        TimedPhone(0.5, 0.4, "x", "aa"),  # reversed: ignored
        TimedPhone(0.2, 0.4, "?", "not-a-viseme"),  # unknown viseme: treated as silence
        TimedPhone(0.3, 0.6, "a", "aa"),  # overlaps the one before: starts where it ended
        TimedPhone(float("nan"), 1.0, "n", "nn"),
    ]
    track = mouth_track(phones, 25, 30, lead_s=0.0)
    assert np.isfinite(track).all() and track[:, JAW].max() > 0.5


def test_openness() -> None:
    phones = _phones((0.2, "aa"), (0.1, "PP"), (0.2, "E"))
    track = mouth_track(phones, 50, 50, lead_s=0.0)
    value = openness(track)
    assert value.shape == (50,) and value.dtype == np.float32
    np.testing.assert_allclose(value, track[:, JAW] * (1 - track[:, PRESS]), atol=1e-6)
    assert value[:5].max() == 0.0 and value.max() > 0.7
    with pytest.raises(ValueError, match="shape"):
        openness(np.zeros((5, 3)))
