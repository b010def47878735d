"""All motion drivers into one FaceParams per frame: idle life always, the mouth from speech,
expression and head motion from a driving video (which then replaces idle sway and blinks)."""

from __future__ import annotations

import numpy as np

from device.motion.idle import COLUMN, IdleMotion
from device.motion.params import SPEECH_CHANNELS, FaceParams
from device.motion.speech import Speech

# While speaking people move their head more, with the rhythm of the speech.
SPEECH_NOD_DEGREES = 1.5


def motion_track(
    n_frames: int,
    fps: float,
    speech: Speech | None = None,
    drive: np.ndarray | None = None,
    seed: int = 0,
    gaze: np.ndarray | None = None,
) -> np.ndarray:
    """(n_frames, len(FaceParams)) parameters for a whole clip."""
    track = IdleMotion(seed=seed).track(n_frames, fps, gaze=gaze)
    if drive is not None:
        track = drive[:n_frames].astype(np.float32).copy()
    if speech is not None:
        from device.motion.visemes import speech_track

        mouth = speech_track(speech.phones, fps, n_frames)
        for channel, name in enumerate(SPEECH_CHANNELS):
            track[:, COLUMN[name]] = mouth[:, channel]
        if drive is None:
            energy = _energy(speech, fps, n_frames)
            # Nod with stressed syllables: the speech envelope, slowed, lifts and drops the head a little.
            track[:, COLUMN["head_pitch"]] += SPEECH_NOD_DEGREES * (energy - energy.mean())
            track[:, COLUMN["brow_raise"]] += 0.25 * np.clip(energy - 0.6, 0, None)
    return track


def _energy(speech: Speech, fps: float, n_frames: int) -> np.ndarray:
    """Loudness per frame, smoothed over about 0.3 s, scaled to 0..1."""
    hop = speech.sample_rate / fps
    energy = np.zeros(n_frames, np.float32)
    for index in range(n_frames):
        start, end = int(index * hop), int((index + 1) * hop)
        chunk = speech.audio[start:end]
        if len(chunk):
            energy[index] = float(np.sqrt(np.mean(chunk.astype(np.float64) ** 2)))
    width = max(1, round(0.3 * fps))
    kernel = np.hanning(width * 2 + 1)
    padded = np.pad(energy, width, mode="edge")
    energy = np.convolve(padded, kernel / kernel.sum(), mode="same")[width:-width]
    top = float(energy.max())
    return energy / top if top > 0 else energy


__all__ = ["FaceParams", "motion_track"]
