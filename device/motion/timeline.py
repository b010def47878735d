"""All motion drivers into one FaceParams per frame: idle life always, the mouth from speech,
expression and head motion from a driving video (which then replaces idle sway and blinks)."""

from __future__ import annotations

import numpy as np

from device.motion.idle import COLUMN, IdleMotion, smooth_noise
from device.motion.params import SPEECH_CHANNELS, FaceParams
from device.motion.speech import Speech

# While speaking people move their head more, with the rhythm of the speech.
SPEECH_NOD_DEGREES = 1.5
# And they turn and tilt it more, and faster. Measured on the 7 clips with speech in ../shared/talking
# (the face mesh's head pose, smoothed over 0.2 s; median over the clips): std yaw 2.4, pitch 2.1,
# roll 1.0 degrees, mean speed 2.8, 3.6 and 2.7 degrees/s, where idle sway alone gives 1.0, 0.8, 0.6
# degrees at under 0.7 degrees/s. Speech adds the difference (sqrt(real^2 - idle^2); pitch less the
# nods), on periods that give about the measured speeds.
SPEECH_HEAD_DEGREES = {"head_yaw": 2.1, "head_pitch": 1.8, "head_roll": 0.8}  # std of the added motion
SPEECH_HEAD_PERIODS = (2.0, 3.2, 5.0)  # seconds
_NOISE_STD = np.sqrt(0.5 / len(SPEECH_HEAD_PERIODS))  # std of smooth_noise: its sinusoids averaged


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
            speaking = mouth[:, SPEECH_CHANNELS.index("mouth_close")]
            rng = np.random.default_rng(seed + 7)
            for name, degrees in SPEECH_HEAD_DEGREES.items():
                turn = smooth_noise(n_frames, fps, rng, SPEECH_HEAD_PERIODS) * (degrees / _NOISE_STD)
                track[:, COLUMN[name]] += speaking * turn
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
