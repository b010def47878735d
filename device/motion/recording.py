"""Recorded speech to timed phones: which path each language takes.

- English (`en`, `en-us`, `en-gb`, ...): pocketsphinx (US English model), forced alignment with a
  transcript, phone recognition without one.
- Any other eSpeak NG language, with a transcript: eSpeak NG speaks the transcript in that language,
  and dynamic time warping aligns its phones to the recording.
- Any other language, without a transcript: the acoustic driver (loudness, voicing, formants).

A transcript that does not fit the recording (the alignment's cost says so) is reported and the
language-independent acoustic driver takes over, so a clip always gets a mouth track. A recording
with no speech in it is reported too: the mouth stays closed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from device.errors import BadInput
from device.motion.speech import Speech, TimedPhone

log = logging.getLogger(__name__)

# Mean DTW cost along the path: matching speech scores about 0.25-0.35, unrelated speech above 0.5.
MISMATCH_COST = 0.45


@dataclass(frozen=True)
class Timing:
    phones: list[TimedPhone]
    path: str  # "pocketsphinx-align", "pocketsphinx-recognize", "espeak-dtw", "acoustic", "silence"
    warning: str | None = None


def is_english(lang: str) -> bool:
    return lang.lower().split("-")[0] == "en"


def time_phones(audio: np.ndarray, rate: int, transcript: str | None, lang: str, name: str = "audio") -> Timing:
    """Timed phones of a recording in `lang`, by the best path this device has for that language."""
    from device.motion import acoustic
    from device.motion.tts import list_languages

    if lang not in list_languages():
        raise BadInput(f"--lang {lang!r}: not an eSpeak NG language; list the valid ones with `portrait languages`")
    audio16k = acoustic.to_16k(audio, rate)
    frames = acoustic.analyse(audio16k)
    if not acoustic.has_speech(frames):
        warning = f"{name}: no speech found (silent, or too quiet): the mouth stays closed"
        log.warning(warning)
        return Timing([], "silence", warning)
    if is_english(lang):
        from device.motion.align import align_audio

        phones = align_audio(audio, rate, transcript)
        return Timing(phones, "pocketsphinx-align" if transcript else "pocketsphinx-recognize")
    if transcript is not None:
        phones, cost = acoustic.align_to_transcript(audio16k, transcript, lang, frames)
        if cost <= MISMATCH_COST:
            return Timing(phones, "espeak-dtw")
        warning = (
            f"{name}: the transcript does not fit the recording (alignment cost {cost:.2f}, "
            f"over {MISMATCH_COST}); the mouth follows the sound instead"
        )
        log.warning(warning)
        return Timing(acoustic.acoustic_phones(audio16k, frames), "acoustic", warning)
    return Timing(acoustic.acoustic_phones(audio16k, frames), "acoustic")


def speech_from_recording(
    audio: np.ndarray, rate: int, transcript: str | None, lang: str, name: str = "audio"
) -> Speech:
    timing = time_phones(audio, rate, transcript, lang, name)
    return Speech(
        audio=audio, sample_rate=rate, phones=timing.phones, text=transcript, timing=timing.path, warning=timing.warning
    )
