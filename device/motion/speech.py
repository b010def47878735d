"""What the speech drivers (text-to-speech, recorded audio) hand to the animation: audio plus
timed phones, each already classified into a viseme."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TimedPhone:
    start: float  # seconds from the start of the audio
    end: float
    phone: str  # the source's own symbol (eSpeak mnemonic or CMU ARPAbet), for logs and debugging
    viseme: str  # one of device.motion.visemes.VISEMES


@dataclass
class Speech:
    audio: np.ndarray  # float32 mono in [-1, 1]
    sample_rate: int
    phones: list[TimedPhone] = field(default_factory=list)
    text: str | None = None
    timing: str = "espeak"  # where the phone times come from: eSpeak itself, or a path of motion.recording
    warning: str | None = None  # what a user should know about it (no speech found, transcript ignored)

    @property
    def duration(self) -> float:
        return len(self.audio) / float(self.sample_rate)
