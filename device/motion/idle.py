"""Idle life: blinks, breathing, head sway and saccades, so a still portrait never looks frozen.

Random but reproducible: the same seed gives the same motion. Always on, under speech too.
"""

from __future__ import annotations

import numpy as np

from device.motion.params import FaceParams

NAMES = FaceParams.names()
COLUMN = {name: index for index, name in enumerate(NAMES)}


def blink_curve(t: np.ndarray) -> np.ndarray:
    """Lid closure over a blink that starts at t = 0: fast close, short hold, slower open."""
    close, hold, reopen = 0.08, 0.05, 0.16
    curve = np.zeros_like(t)
    closing = (t >= 0) & (t < close)
    curve[closing] = np.sin(0.5 * np.pi * t[closing] / close) ** 2
    curve[(t >= close) & (t < close + hold)] = 1.0
    opening = (t >= close + hold) & (t < close + hold + reopen)
    curve[opening] = np.cos(0.5 * np.pi * (t[opening] - close - hold) / reopen) ** 2
    return curve


def blink_times(duration: float, rng: np.random.Generator, per_minute: float = 15.0) -> list[float]:
    """Blink onsets: gamma-distributed gaps (people blink irregularly, rarely twice within 1 s),
    now and then a double blink."""
    mean_gap = 60.0 / per_minute
    times: list[float] = []
    t = rng.uniform(0.4, 0.6 * mean_gap)
    while t < duration:
        times.append(t)
        if rng.random() < 0.1:
            times.append(t + 0.32)
        t += max(1.2, rng.gamma(4.0, mean_gap / 4.0))
    return [time for time in times if time < duration]


def smooth_noise(n: int, fps: float, rng: np.random.Generator, periods: tuple[float, ...]) -> np.ndarray:
    """A sum of slow sinusoids with random phases: smooth, never repeating within a clip, in [-1, 1]."""
    t = np.arange(n) / fps
    total = np.zeros(n)
    for period in periods:
        total += np.sin(2 * np.pi * t / (period * rng.uniform(0.8, 1.25)) + rng.uniform(0, 2 * np.pi))
    return total / len(periods)


class IdleMotion:
    def __init__(
        self,
        seed: int = 0,
        blinks_per_minute: float = 15.0,
        sway_degrees: float = 2.5,
        saccade_range: float = 0.35,
    ) -> None:
        self.seed = seed
        self.blinks_per_minute = blinks_per_minute
        self.sway = sway_degrees
        self.saccade_range = saccade_range

    def track(self, n_frames: int, fps: float, gaze: np.ndarray | None = None) -> np.ndarray:
        """(n_frames, len(FaceParams)) idle parameters. `gaze` (n_frames x 2, optional) is where a
        visitor stands; the eyes then look there, with saccades around it."""
        rng = np.random.default_rng(self.seed)
        out = np.zeros((n_frames, len(NAMES)), np.float32)
        if n_frames == 0:
            return out
        t = np.arange(n_frames) / fps
        duration = n_frames / fps

        blinks = np.zeros(n_frames)
        for onset in blink_times(duration, rng, self.blinks_per_minute):
            blinks = np.maximum(blinks, blink_curve(t - onset))
        out[:, COLUMN["blink_left"]] = blinks
        out[:, COLUMN["blink_right"]] = blinks

        breathing = np.sin(2 * np.pi * t / rng.uniform(3.6, 4.6) + rng.uniform(0, 2 * np.pi))
        out[:, COLUMN["head_pitch"]] = 0.5 * breathing + 0.6 * self.sway * smooth_noise(n_frames, fps, rng, (7.0, 11.0))
        out[:, COLUMN["head_yaw"]] = self.sway * smooth_noise(n_frames, fps, rng, (6.0, 9.5, 15.0))
        out[:, COLUMN["head_roll"]] = 0.5 * self.sway * smooth_noise(n_frames, fps, rng, (8.0, 13.0))
        out[:, COLUMN["brow_raise"]] = 0.08 * smooth_noise(n_frames, fps, rng, (5.0, 8.0))

        gaze_x, gaze_y = self._saccades(n_frames, fps, rng)
        if gaze is not None:
            gaze_x = 0.3 * gaze_x + gaze[:, 0]
            gaze_y = 0.3 * gaze_y + gaze[:, 1]
        out[:, COLUMN["gaze_x"]] = np.clip(gaze_x, -1, 1)
        out[:, COLUMN["gaze_y"]] = np.clip(gaze_y, -1, 1)
        return out

    def _saccades(self, n: int, fps: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Fixations of 0.6-3 s joined by quick (about 50 ms) eye jumps; mostly near the centre."""
        x, y = np.zeros(n), np.zeros(n)
        frame, current = 0, np.zeros(2)
        jump_frames = max(1, round(0.05 * fps))
        while frame < n:
            hold = max(1, round(rng.uniform(0.6, 3.0) * fps))
            target = rng.normal(0.0, self.saccade_range / 2.0, 2).clip(-self.saccade_range, self.saccade_range)
            target[1] *= 0.5  # people look around more sideways than up and down
            if rng.random() < 0.4:
                target[:] = 0.0  # back to the viewer
            end = min(n, frame + hold)
            ramp = np.clip((np.arange(frame, end) - frame + 1) / jump_frames, 0, 1)[:, None]
            values = current + (target - current) * ramp
            x[frame:end], y[frame:end] = values[:, 0], values[:, 1]
            current, frame = target, end
        return x, y
