"""Visemes: the mouth shapes of speech, and how a stream of timed phones becomes a mouth track.

The set is the Oculus / MPEG-4 style one (15 shapes). Each has a target for the four mouth channels of
FaceParams. `mouth_track` turns timed phones into per-frame mouth values with coarticulation: each
phone pulls every channel toward its target with a dominance that is full inside the phone and decays
exponentially outside it (Cohen and Massaro's model), so neighbours blend and a tongue consonant
between two vowels barely moves the jaw. Two things are then enforced on top, because viewers notice
them at once: the lips really close for m, b, p (jaw 0, lips pressed) and the mouth is shut in silence.
Both closures ramp in and out with a raised cosine so that no frame snaps.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from device.motion.params import MOUTH_CHANNELS
from device.motion.speech import TimedPhone


class MouthShape(NamedTuple):
    """Target values of the mouth channels, in MOUTH_CHANNELS order, each 0..1."""

    jaw_open: float
    lip_round: float
    lip_wide: float
    lip_press: float


assert MouthShape._fields == MOUTH_CHANNELS

VISEMES: dict[str, MouthShape] = {
    "sil": MouthShape(0.0, 0.0, 0.0, 0.0),  # rest, lips closed
    "PP": MouthShape(0.0, 0.0, 0.0, 1.0),  # p b m: lips pressed
    "FF": MouthShape(0.08, 0.0, 0.15, 0.5),  # f v: lower lip to the upper teeth
    "TH": MouthShape(0.2, 0.0, 0.2, 0.0),  # th: tongue between the teeth
    "DD": MouthShape(0.18, 0.0, 0.25, 0.0),  # t d
    "kk": MouthShape(0.25, 0.0, 0.15, 0.0),  # k g ng h
    "CH": MouthShape(0.15, 0.6, 0.0, 0.0),  # ch j sh zh: lips pushed forward
    "SS": MouthShape(0.1, 0.0, 0.5, 0.0),  # s z: teeth almost together, lips spread
    "nn": MouthShape(0.2, 0.0, 0.2, 0.0),  # n l
    "RR": MouthShape(0.2, 0.5, 0.0, 0.0),  # r (English r is rounded)
    "aa": MouthShape(1.0, 0.0, 0.25, 0.0),  # father, cat
    "E": MouthShape(0.55, 0.0, 0.55, 0.0),  # bed, the schwa of about
    "ih": MouthShape(0.3, 0.0, 0.8, 0.0),  # tip, see
    "oh": MouthShape(0.6, 0.75, 0.0, 0.0),  # toe, thought
    "ou": MouthShape(0.25, 1.0, 0.0, 0.0),  # book, blue, w
}

# How strongly each viseme holds each channel against its neighbours (the alpha of the dominance
# function). Vowels own the jaw; tongue consonants hardly do, so the jaw flows through them; labials
# and rounded sounds own the lips; rounding spreads far ahead (anticipatory rounding).
_DOMINANCE: dict[str, tuple[float, float, float, float]] = {
    "sil": (0.8, 0.5, 0.5, 0.5),
    "PP": (1.0, 0.2, 0.2, 1.0),
    "FF": (0.7, 0.3, 0.3, 0.8),
    "TH": (0.5, 0.2, 0.3, 0.3),
    "DD": (0.35, 0.15, 0.2, 0.3),
    "kk": (0.3, 0.15, 0.2, 0.3),
    "CH": (0.5, 0.8, 0.6, 0.3),
    "SS": (0.6, 0.4, 0.6, 0.3),
    "nn": (0.35, 0.15, 0.2, 0.3),
    "RR": (0.4, 0.7, 0.4, 0.3),
    "aa": (1.0, 0.6, 0.6, 0.5),
    "E": (1.0, 0.6, 0.7, 0.5),
    "ih": (1.0, 0.7, 1.0, 0.5),
    "oh": (1.0, 1.0, 0.7, 0.5),
    "ou": (1.0, 1.0, 0.8, 0.5),
}
assert _DOMINANCE.keys() == VISEMES.keys()

# Time constants (s) of the dominance decay outside a phone: about the reach of coarticulation. A real
# mouth anticipates more than it lags (it moves toward the next sound while still making this one), so a
# phone pulls the mouth for longer before it starts than after it ends.
ANTICIPATION_TAU = 0.05
CARRYOVER_TAU = 0.035
COARTICULATION_TAU = max(ANTICIPATION_TAU, CARRYOVER_TAU)  # the longer reach: padding and cut-offs
# The mouth leads its sound: lips part before a vowel is heard and close before the m, b or p is. Every
# phone's visible shape is placed this much ahead of its acoustic time.
SPEECH_LEAD_S = 0.04
# Raised-cosine ramp widths (s) into and out of a lip closure and a silence.
CLOSURE_RAMP = 0.07
SILENCE_RAMP = 0.12
# How long a resting smile takes to close as speech starts and to come back after it.
SPEAKING_RAMP = 0.3
# Pauses shorter than this between sounds do not force the mouth shut (a comma, a breath in a word).
MIN_CLOSED_PAUSE = 0.1
# Where a diphthong or other glide moves from its first shape to its second.
GLIDE_SPLIT = 0.55

# --- eSpeak NG mnemonics --------------------------------------------------------------------------------

# Full mnemonics (stress marks removed) that need more than their first letter: English first, then the
# vowels and consonants common in German, French, Spanish and other European languages.
_ESPEAK: dict[str, tuple[str, ...]] = {
    # Diphthongs and r-coloured vowels: from one shape to another.
    "aI": ("aa", "ih"),
    "aI@": ("aa", "ih"),
    "aI3": ("aa", "ih"),
    "aU": ("aa", "ou"),
    "aU@": ("aa", "ou"),
    "eI": ("E", "ih"),
    "oU": ("oh", "ou"),
    "OI": ("oh", "ih"),
    "OY": ("oh", "ih"),
    "Oy": ("oh", "ih"),
    "i@": ("ih", "E"),
    "i@3": ("ih", "E"),
    "e@": ("E",),
    "U@": ("ou", "E"),
    "A@": ("aa", "RR"),
    "O@": ("oh", "RR"),
    "o@": ("oh", "RR"),
    "aI@3": ("aa", "RR"),
    "ai": ("aa", "ih"),
    "au": ("aa", "ou"),
    "ei": ("E", "ih"),
    "oi": ("oh", "ih"),
    "eu": ("E", "ou"),
    "ou": ("oh", "ou"),
    "ui": ("ou", "ih"),
    "ie": ("ih", "E"),
    "uo": ("ou", "oh"),
    # Vowels whose first letter misleads.
    "V": ("aa",),  # strut
    "&": ("aa",),  # trap
    "0": ("oh",),  # lot
    "3": ("RR",),  # nurse / letter in American English
    "3:": ("RR",),
    "@": ("E",),
    "@L": ("E", "nn"),
    "@r": ("E", "RR"),
    "6": ("E",),  # German -er
    "2": ("oh",),  # German ö, French eu: rounded mid front
    "9": ("oh",),
    "9~": ("E",),
    "y": ("ou",),  # French u, German ü: rounded high front
    "Y": ("oh",),  # French eu, German ö: rounded mid front
    "W": ("oh",),  # French oeu (soeur), open rounded front
    "8": ("oh",),  # Russian ё after soft consonants
    "A~": ("aa",),
    "E~": ("E",),
    "e~": ("E",),
    "O~": ("oh",),
    "o~": ("oh",),
    "a~": ("aa",),
    "I": ("ih",),
    "i": ("ih",),
    "u": ("ou",),
    "U": ("ou",),
    # Consonants.
    "tS": ("CH",),
    "dZ": ("CH",),
    "ts": ("SS",),
    "dz": ("SS",),
    "pf": ("PP", "FF"),
    "pF": ("PP", "FF"),
    "T": ("TH",),
    "D": ("TH",),
    "S": ("CH",),
    "Z": ("CH",),
    "N": ("kk",),  # ng
    "n^": ("nn",),
    "J": ("nn",),  # palatal nasal (Spanish ñ, French gn)
    "l^": ("nn",),
    "L": ("nn",),
    "j": ("ih",),  # y glide: spread lips
    "w": ("ou",),
    "H": ("ou",),  # French ɥ (huit)
    ";": ("ih",),  # palatal off-glide (Russian soft consonants)
    "B": ("FF",),  # Spanish b between vowels: lips approach, do not close
    "F": ("FF",),
    "C": ("SS",),  # German ich
    "x": ("kk",),
    "X": ("kk",),
    "G": ("kk",),
    "Q": ("kk",),
    "?": ("kk",),  # glottal stop: the mouth keeps its neighbours' shape
    "h": ("kk",),
    "R": ("RR",),
    "*": ("RR",),  # tap
}

# First letters of everything else, for any language's variants ("t#", "d[", "r-", "n-", "E2", "a#" ...).
_ESPEAK_FIRST: dict[str, str] = {
    **dict.fromkeys("aA&V", "aa"),
    **dict.fromkeys("eE@3", "E"),
    **dict.fromkeys("iI", "ih"),
    **dict.fromkeys("oO02689WY", "oh"),
    **dict.fromkeys("uUywH", "ou"),
    **dict.fromkeys("pbm", "PP"),
    **dict.fromkeys("fvFB", "FF"),
    **dict.fromkeys("TD", "TH"),
    **dict.fromkeys("td", "DD"),
    **dict.fromkeys("kgcqxXGQh?N", "kk"),
    **dict.fromkeys("SZ", "CH"),
    **dict.fromkeys("szC", "SS"),
    **dict.fromkeys("nlJL", "nn"),
    **dict.fromkeys("rR*", "RR"),
    "j": "ih",
}

_VOWEL_LETTERS = frozenset("aA&VeE@3iIoO02689WYuUy")
_STRESS = "'\",%=!"
# Diacritic-like suffixes in eSpeak mnemonics: length, variant, palatalised, syllabic, dental, nasal ...
_SUFFIXES = ":#;-[^~0123456789!`<>/"


def visemes_for_espeak(phoneme_mnemonic: str) -> tuple[str, ...]:
    """Viseme(s) of an eSpeak NG phoneme mnemonic: one, or two for a glide (diphthong) from one
    shape to another. Unknown symbols fall back by their first letter, else to a generic consonant."""
    name = phoneme_mnemonic.strip().lstrip(_STRESS)
    if not name or name.startswith(("_", "|", "(")):
        return ("sil",)  # pauses, word or clause boundaries, language switches such as "(en)"
    bare = name.rstrip(_SUFFIXES) or name
    for candidate in (name, bare):
        if candidate in _ESPEAK:
            return _ESPEAK[candidate]
    if len(bare) == 2 and bare[0] in _VOWEL_LETTERS and bare[1] in _VOWEL_LETTERS:
        return (_ESPEAK_FIRST[bare[0]], _ESPEAK_FIRST[bare[1]])  # any other diphthong, e.g. "&U~"
    first = _ESPEAK_FIRST.get(name[0])
    if first is None:
        first = _ESPEAK_FIRST.get(name[0].lower(), "DD")
    return (first,)


def viseme_for_espeak(phoneme_mnemonic: str) -> str:
    """The main viseme of an eSpeak NG phoneme mnemonic (the first shape of a diphthong)."""
    return visemes_for_espeak(phoneme_mnemonic)[0]


# --- CMU ARPAbet (pocketsphinx) --------------------------------------------------------------------------

_ARPABET: dict[str, tuple[str, ...]] = {
    "AA": ("aa",),
    "AE": ("aa",),
    "AH": ("E",),  # schwa or strut; pocketsphinx gives no stress to tell them apart
    "AO": ("oh",),
    "AW": ("aa", "ou"),
    "AX": ("E",),
    "AXR": ("E", "RR"),
    "AY": ("aa", "ih"),
    "EH": ("E",),
    "ER": ("RR",),
    "EY": ("E", "ih"),
    "IH": ("ih",),
    "IX": ("ih",),
    "IY": ("ih",),
    "OW": ("oh", "ou"),
    "OY": ("oh", "ih"),
    "UH": ("ou",),
    "UW": ("ou",),
    "UX": ("ou",),
    "B": ("PP",),
    "P": ("PP",),
    "M": ("PP",),
    "EM": ("E", "PP"),
    "F": ("FF",),
    "V": ("FF",),
    "TH": ("TH",),
    "DH": ("TH",),
    "T": ("DD",),
    "D": ("DD",),
    "DX": ("DD",),
    "K": ("kk",),
    "G": ("kk",),
    "NG": ("kk",),
    "HH": ("kk",),
    "Q": ("kk",),
    "CH": ("CH",),
    "JH": ("CH",),
    "SH": ("CH",),
    "ZH": ("CH",),
    "S": ("SS",),
    "Z": ("SS",),
    "N": ("nn",),
    "L": ("nn",),
    "EN": ("E", "nn"),
    "EL": ("E", "nn"),
    "NX": ("nn",),
    "R": ("RR",),
    "W": ("ou",),
    "Y": ("ih",),
    "SIL": ("sil",),
    "SP": ("sil",),
}
_ARPABET_FIRST = {"A": "aa", "E": "E", "I": "ih", "O": "oh", "U": "ou"}


def visemes_for_arpabet(phone: str) -> tuple[str, ...]:
    """Viseme(s) of a CMU ARPAbet phone as pocketsphinx emits it (stress digits allowed); silence and
    fillers ("SIL", "+NSN+", "+SPN+", "<sil>", ...) are "sil"."""
    name = phone.strip().upper().rstrip("0123456789")
    if not name or name.startswith(("+", "<", "_")) or name in ("SIL", "SP", "SPN", "NSN", "(NULL)"):
        return ("sil",)
    if name in _ARPABET:
        return _ARPABET[name]
    return (_ARPABET_FIRST.get(name[0], "DD"),)


def viseme_for_arpabet(phone: str) -> str:
    """The main viseme of a CMU ARPAbet phone (the first shape of a diphthong)."""
    return visemes_for_arpabet(phone)[0]


def split_glides(start: float, end: float, phone: str, visemes: tuple[str, ...]) -> list[TimedPhone]:
    """TimedPhones for one phone: itself, or for a glide two parts that share the phone's symbol, so the
    mouth moves from the first shape to the second within the phone."""
    if len(visemes) == 1 or visemes[0] == visemes[1]:
        return [TimedPhone(start, end, phone, visemes[0])]
    middle = start + GLIDE_SPLIT * (end - start)
    return [TimedPhone(start, middle, phone, visemes[0]), TimedPhone(middle, end, phone, visemes[1])]


# --- the mouth track --------------------------------------------------------------------------------------

_TARGET = {name: np.array(shape, np.float64) for name, shape in VISEMES.items()}
_ALPHA = {name: np.array(alpha, np.float64) for name, alpha in _DOMINANCE.items()}


def _segments(phones: list[TimedPhone], until: float) -> list[tuple[float, float, str]]:
    """Phones in time order with the gaps and the ends filled with silence, touching silences merged."""
    pad = 10.0 * COARTICULATION_TAU + SILENCE_RAMP
    segments: list[tuple[float, float, str]] = []
    cursor = -pad
    for phone in sorted(phones, key=lambda p: (p.start, p.end)):
        start, end = float(phone.start), float(phone.end)
        if not (np.isfinite(start) and np.isfinite(end)) or end <= start:
            continue
        viseme = phone.viseme if phone.viseme in VISEMES else "sil"
        start = max(start, cursor)  # overlapping phones: the later one starts where the earlier ended
        if end <= start:
            continue
        if start > cursor:
            segments.append((cursor, start, "sil"))
        segments.append((start, end, viseme))
        cursor = end
    segments.append((cursor, max(cursor, until) + pad, "sil"))
    merged: list[tuple[float, float, str]] = []
    for segment in segments:
        if merged and merged[-1][2] == "sil" and segment[2] == "sil":
            merged[-1] = (merged[-1][0], segment[1], "sil")
        else:
            merged.append(segment)
    return merged


def _closure(times: np.ndarray, start: float, end: float, ramp: float, fps: float) -> np.ndarray:
    """1 away from [start, end], 0 in its core, raised-cosine ramps between. The ramps straddle the
    interval's ends; the core always holds the frame nearest the interval's centre, so however short
    the closure, some frame shows it."""
    centre = 0.5 * (start + end)
    low, high = start + 0.5 * ramp, end - 0.5 * ramp
    if low > high:
        low = high = centre
    if len(times) and times[0] <= centre <= times[-1]:
        nearest = float(times[np.argmin(np.abs(times - centre))])  # frame times may be offset by the lead
        low, high = min(low, nearest), max(high, nearest)
    distance = np.maximum(low - times, 0.0) + np.maximum(times - high, 0.0)
    phase = np.clip(distance / ramp, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * phase)


def mouth_track(phones: list[TimedPhone], fps: float, n_frames: int, lead_s: float = SPEECH_LEAD_S) -> np.ndarray:
    """Mouth values per frame, shape (n_frames, 4) float32 in MOUTH_CHANNELS order, each 0..1.

    Frame k shows time k / fps of the audio, with the mouth `lead_s` ahead of the sound. Before the
    first phone, between phones and after the last one the mouth rests closed.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    n_frames = max(int(n_frames), 0)
    times = np.arange(n_frames, dtype=np.float64) / fps + lead_s
    if n_frames == 0:
        return np.zeros((0, len(MOUTH_CHANNELS)), np.float32)
    segments = _segments(phones, float(times[-1]))

    # Dominance blend: sum(D_i * T_i) / sum(D_i), each D_i full inside its phone and decaying outside.
    numerator = np.zeros((n_frames, 4))
    denominator = np.zeros((n_frames, 4))
    reach = 8.0 * COARTICULATION_TAU  # beyond this a phone's pull is below 0.04 %: skipped
    for start, end, viseme in segments:
        first = max(int(np.ceil((start - reach) * fps)), 0)
        last = min(int(np.floor((end + reach) * fps)) + 1, n_frames)
        if last <= first:
            continue
        t = times[first:last]
        decay = np.maximum(start - t, 0.0) / ANTICIPATION_TAU + np.maximum(t - end, 0.0) / CARRYOVER_TAU
        weight = np.exp(-decay)[:, None] * _ALPHA[viseme]
        numerator[first:last] += weight * _TARGET[viseme]
        denominator[first:last] += weight
    # Every frame lies inside some segment (silence fills the gaps), so the denominator is positive.
    track = numerator / np.maximum(denominator, 1e-12)

    # Hard closures: lips together at m/b/p, mouth shut in real pauses and before and after speech.
    for index, (start, end, viseme) in enumerate(segments):
        if viseme == "PP":
            envelope = _closure(times, start, end, CLOSURE_RAMP, fps)
            track[:, 0] *= envelope
            track[:, 3] = np.maximum(track[:, 3], 1.0 - envelope)
        elif viseme == "sil":
            at_edge = index == 0 or index == len(segments) - 1
            if at_edge or end - start >= MIN_CLOSED_PAUSE:
                # The ramps straddle the pause's ends: the mouth starts opening just before speech.
                track *= _closure(times, start, end, SILENCE_RAMP, fps)[:, None]
    return np.clip(track, 0.0, 1.0).astype(np.float32)


def speaking_envelope(phones: list[TimedPhone], fps: float, n_frames: int, lead_s: float = SPEECH_LEAD_S) -> np.ndarray:
    """Per frame 0..1: 1 from just before the first sound to just after the last, 0 outside.

    It drives `mouth_close`: while speaking, a photo that rests with parted lips (a smile with teeth)
    closes them in pauses and on m/b/p like any mouth, and gets its own mouth back when it is done."""
    times = np.arange(max(int(n_frames), 0), dtype=np.float64) / fps + lead_s
    spoken = [(float(p.start), float(p.end)) for p in phones
              if p.viseme != "sil" and np.isfinite(p.start) and np.isfinite(p.end) and p.end > p.start]  # fmt: skip
    if not spoken or not len(times):
        return np.zeros(len(times), np.float32)
    start, end = min(s for s, _ in spoken), max(e for _, e in spoken)
    return (1.0 - _closure(times, start, end, SPEAKING_RAMP, fps)).astype(np.float32)


def speech_track(phones: list[TimedPhone], fps: float, n_frames: int, lead_s: float = SPEECH_LEAD_S) -> np.ndarray:
    """(n_frames, 5) in SPEECH_CHANNELS order: the mouth track and the speaking envelope."""
    mouth = mouth_track(phones, fps, n_frames, lead_s)
    return np.column_stack([mouth, speaking_envelope(phones, fps, n_frames, lead_s)]).astype(np.float32)


def openness(track: np.ndarray) -> np.ndarray:
    """How open the mouth is per frame (0 shut .. 1 wide), from a mouth track (n, 4) in MOUTH_CHANNELS
    order: the jaw opening, less what pressed lips hide. This is the signal that a lip-sync check
    correlates with the mouth opening measured on rendered frames."""
    track = np.asarray(track, dtype=np.float32)
    if track.ndim != 2 or track.shape[1] != len(MOUTH_CHANNELS):
        raise ValueError(f"expected a mouth track of shape (n, {len(MOUTH_CHANNELS)}), got {track.shape}")
    return np.clip(track[:, 0] * (1.0 - track[:, 3]), 0.0, 1.0)
