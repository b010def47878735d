"""Timed phones from recorded speech, with pocketsphinx 5 and its bundled US English model.

With a transcript the words are force-aligned (a word pass, then a second pass for phone timings);
without one, phones are recognized directly (allphone search with the bundled phonetic language model).
Either way the phones come back as TimedPhone with their visemes.

Words the pronouncing dictionary lacks (names, numbers, foreign words) get a pronunciation from eSpeak
NG, mapped to ARPAbet. If that fails, or the transcript does not fit the audio, alignment falls back to
recognition (with a log warning), so a clip always gets a mouth track.
"""

from __future__ import annotations

import logging
import re
import threading

import numpy as np

from device.errors import BadInput
from device.media.audio import resample
from device.motion.speech import TimedPhone
from device.motion.visemes import split_glides, visemes_for_arpabet

log = logging.getLogger(__name__)

RATE = 16000  # the acoustic model's sample rate
FRAME_S = 0.01  # pocketsphinx frames: 100 per second
PAD_S = 0.2  # silence on both sides helps both searches start and end in SIL
MAX_TRANSCRIPT_CHARS = 20000

# eSpeak NG (en-us) mnemonics to the ARPAbet phones of the pocketsphinx model, for unknown words.
_ESPEAK_TO_ARPABET: dict[str, tuple[str, ...]] = {
    "a": ("AE",),
    "a#": ("AH",),
    "aa": ("AA",),
    "A:": ("AA",),
    "A": ("AA",),
    "A@": ("AA", "R"),
    "aI": ("AY",),
    "aI@": ("AY", "ER"),
    "aI3": ("AY", "ER"),
    "aU": ("AW",),
    "aU@": ("AW", "ER"),
    "0": ("AA",),
    "O": ("AO",),
    "O:": ("AO",),
    "O@": ("AO", "R"),
    "o@": ("AO", "R"),
    "oU": ("OW",),
    "o": ("OW",),
    "OI": ("OY",),
    "V": ("AH",),
    "@": ("AH",),
    "@2": ("AH",),
    "@5": ("AH",),
    "@L": ("AH", "L"),
    "3": ("ER",),
    "3:": ("ER",),
    "e": ("EH",),
    "E": ("EH",),
    "e@": ("EH", "R"),
    "eI": ("EY",),
    "i": ("IY",),
    "i:": ("IY",),
    "I": ("IH",),
    "I2": ("IH",),
    "I#": ("IH",),
    "i@": ("IH", "R"),
    "i@3": ("IH", "R"),
    "u": ("UW",),
    "u:": ("UW",),
    "U": ("UH",),
    "U@": ("UH", "R"),
    "p": ("P",),
    "b": ("B",),
    "t": ("T",),
    "t#": ("T",),
    "d": ("D",),
    "k": ("K",),
    "g": ("G",),
    "x": ("K",),
    "f": ("F",),
    "v": ("V",),
    "T": ("TH",),
    "D": ("DH",),
    "s": ("S",),
    "z": ("Z",),
    "S": ("SH",),
    "Z": ("ZH",),
    "h": ("HH",),
    "tS": ("CH",),
    "dZ": ("JH",),
    "m": ("M",),
    "m-": ("M",),
    "n": ("N",),
    "n-": ("N",),
    "N": ("NG",),
    "l": ("L",),
    "l-": ("L",),
    "r": ("R",),
    "r-": ("R",),
    "w": ("W",),
    "j": ("Y",),
    "?": (),  # glottal stop: no ARPAbet phone; the neighbours absorb it
}

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def _as_float(array: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] from samples of any common type."""
    if array.dtype == np.int16:
        return array.astype(np.float32) / 32768.0
    if array.dtype == np.int32:
        return (array.astype(np.float64) / 2147483648.0).astype(np.float32)
    if array.dtype == np.uint8:
        return (array.astype(np.float32) - 128.0) / 128.0
    if not np.issubdtype(array.dtype, np.floating):
        raise BadInput(f"audio: unsupported sample type {array.dtype}")
    return np.clip(array.astype(np.float32), -1.0, 1.0)


def _mono(audio: np.ndarray) -> np.ndarray:
    """float32 mono from mono (n,) or multichannel audio, (n, channels) or (channels, n)."""
    array = np.asarray(audio)
    if array.ndim == 2:
        # Channels first when the first axis is short and the second long (planar, as PyAV gives it).
        if array.shape[0] <= 8 and array.shape[1] > array.shape[0]:
            array = array.T
        return _as_float(array).mean(axis=1, dtype=np.float32)
    if array.ndim != 1:
        raise BadInput(f"audio: expected samples of shape (n,) or (n, channels), got shape {array.shape}")
    return _as_float(array)


def _pcm16k(audio: np.ndarray, sample_rate: int) -> tuple[bytes, float]:
    """16 kHz int16 bytes with PAD_S of silence on both sides, and the audio's duration in seconds."""
    try:
        rate = int(sample_rate)
    except (TypeError, ValueError, OverflowError):
        rate = 0
    if rate <= 0 or rate != sample_rate:
        raise BadInput(f"sample rate {sample_rate!r}: must be a positive whole number of Hz")
    mono = _mono(audio)
    if mono.size == 0:
        raise BadInput("audio: contains no samples")
    if not np.all(np.isfinite(mono)):
        raise BadInput("audio: contains NaN or infinite samples")
    duration = mono.size / float(rate)
    speech = resample(mono, rate, RATE) if rate != RATE else mono
    pad = np.zeros(round(PAD_S * RATE), np.float32)
    samples = np.concatenate([pad, speech, pad]) * 32767.0
    # A little fixed noise: digital silence (exact zeros) breaks the recognizer's log-energy features and
    # then the alignment search never reaches its final state. Seeded, so results are reproducible.
    samples += np.random.default_rng(0).uniform(-2.0, 2.0, samples.size)
    return np.clip(np.round(samples), -32768, 32767).astype(np.int16).tobytes(), duration


class _Sphinx:
    """The two pocketsphinx decoders, loaded once. Use only under _LOCK."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder, get_model_path

        # bestpath=False: the lattice best-path pass can lose the alignment's final state (a known
        # pocketsphinx 5 issue), and alignment does not need it. Wide beams: the search space of one
        # sentence is tiny, and the default beams prune the right path for unusual voices such as eSpeak's.
        # A low silence probability stops the aligner from slipping short pauses between words (which
        # pulled a word's phones 80 ms early); real pauses are long enough to win on the acoustics.
        self.aligner = Decoder(
            lm=None, bestpath=False, beam=1e-80, wbeam=1e-70, pbeam=1e-80, silprob=1e-4, loglevel="FATAL"
        )
        self.recognizer = Decoder(
            allphone=get_model_path("en-us/en-us-phone.lm.bin"), lw=2.0, bestpath=False, loglevel="ERROR"
        )

    def recognize(self, pcm: bytes) -> list[tuple[str, int, int]]:
        """(phone, first frame, frame count) from phone recognition."""
        decoder = self.recognizer
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        return [(seg.word, seg.start_frame, seg.end_frame - seg.start_frame + 1) for seg in decoder.seg() or []]

    def align(self, pcm: bytes, words: list[str]) -> list[tuple[str, int, int]] | None:
        """(phone, first frame, frame count) from forced alignment, or None when it fails."""
        decoder = self.aligner
        try:
            decoder.set_align_text(" ".join(words))
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            if decoder.hyp() is None:
                return None
            decoder.set_alignment()  # second pass: phone durations within the aligned words
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            alignment = decoder.get_alignment()
        except RuntimeError as exc:  # the search could not reach the end of the text
            log.debug("pocketsphinx alignment failed: %s", exc)
            return None
        if alignment is None:
            return None
        return [(phone.name, phone.start, phone.duration) for phone in alignment.phones()]

    def known(self, word: str) -> bool:
        return self.aligner.lookup_word(word) is not None

    def add(self, word: str, phones: list[str]) -> None:
        self.aligner.add_word(word, " ".join(phones), True)


_LOCK = threading.Lock()
_SPHINX: _Sphinx | None = None


def _sphinx() -> _Sphinx:
    global _SPHINX
    if _SPHINX is None:
        _SPHINX = _Sphinx()
    return _SPHINX


def transcript_words(transcript: str) -> list[str]:
    """The words of a transcript as the dictionary spells them: lower case, punctuation dropped,
    inner apostrophes kept ("don't")."""
    return [word.replace("’", "'") for word in _WORD.findall(transcript.lower())]


def _pronounce(word: str) -> list[str]:
    """ARPAbet for a word the dictionary lacks, from eSpeak NG's US English rules; [] if none."""
    from device.motion.tts import text_to_phonemes

    phones: list[str] = []
    for mnemonic in text_to_phonemes(word, "en-us"):
        name = mnemonic.lstrip("'\",%=")
        mapped = _ESPEAK_TO_ARPABET.get(name)
        if mapped is None:
            mapped = _ESPEAK_TO_ARPABET.get(name.rstrip(":#;-"), ())
        phones.extend(mapped)
    return phones


def _timed(entries: list[tuple[str, int, int]], duration: float) -> list[TimedPhone]:
    phones: list[TimedPhone] = []
    for name, first, count in entries:
        start = max(first * FRAME_S - PAD_S, 0.0)
        end = min((first + count) * FRAME_S - PAD_S, duration)
        if end <= start:
            continue  # wholly inside the padding
        phones.extend(split_glides(start, end, name, visemes_for_arpabet(name)))
    return phones


def align_audio(audio: np.ndarray, sample_rate: int, transcript: str | None = None) -> list[TimedPhone]:
    """Timed phones (CMU ARPAbet, with visemes) for recorded speech.

    ``audio``: samples, mono (n,) or multichannel (n, channels) / (channels, n), float in [-1, 1] or
    int16/int32/uint8, at any ``sample_rate`` (resampled to 16 kHz inside). With ``transcript`` (the words
    spoken) the phones are force-aligned to it; words the dictionary lacks are pronounced by eSpeak NG's
    rules. Without a transcript, or when the transcript cannot be aligned to the audio, phones are
    recognized instead (less exact, still good for a mouth track). Times are seconds from the start of
    ``audio``. Raises BadInput for empty or invalid audio, a bad sample rate or an empty transcript.
    """
    if transcript is not None:
        if len(transcript) > MAX_TRANSCRIPT_CHARS:
            raise BadInput(f"transcript: {len(transcript)} characters, more than {MAX_TRANSCRIPT_CHARS}")
        words = transcript_words(transcript)
        if not words:
            raise BadInput(f"transcript {transcript[:60]!r}: contains no words")
    pcm, duration = _pcm16k(audio, sample_rate)
    with _LOCK:
        sphinx = _sphinx()
        if transcript is not None:
            entries = _align_words(sphinx, pcm, words)
            if entries is not None:
                return _timed(entries, duration)
            log.warning("transcript does not align with the audio; recognizing phones instead")
        return _timed(sphinx.recognize(pcm), duration)


def _align_words(sphinx: _Sphinx, pcm: bytes, words: list[str]) -> list[tuple[str, int, int]] | None:
    for word in dict.fromkeys(words):
        if sphinx.known(word):
            continue
        phones = _pronounce(word)
        try:
            if not phones:
                raise ValueError("eSpeak gave no phones")
            sphinx.add(word, phones)  # stays in the dictionary for later calls: harmless, and faster
        except (ValueError, RuntimeError) as exc:
            log.warning("no pronunciation for %r (%s)", word, exc)
            return None
    return sphinx.align(pcm, words)
