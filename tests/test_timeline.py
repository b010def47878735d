"""The whole clip's motion: speech adds head motion of the size real talkers show, only while speaking."""

from __future__ import annotations

import numpy as np

from device.motion.idle import COLUMN
from device.motion.speech import Speech, TimedPhone
from device.motion.timeline import motion_track

FPS = 25


def speech(seconds: float, start: float) -> Speech:
    rng = np.random.default_rng(3)
    phones, t = [], start
    while t < seconds - 0.5:
        length = float(rng.uniform(0.06, 0.2))
        phones.append(TimedPhone(t, t + length, "a", "aa" if rng.random() < 0.5 else "E"))
        t += length
    samples = int(seconds * 16000)
    audio = (rng.normal(0, 0.1, samples) * np.abs(np.sin(np.arange(samples) / 16000 * 3))).astype(np.float32)
    return Speech(audio, 16000, phones)


def head_std(track: np.ndarray) -> np.ndarray:
    return np.array([track[:, COLUMN[k]].std() for k in ("head_yaw", "head_pitch", "head_roll")])


def test_speaking_moves_the_head_about_as_much_as_real_talkers() -> None:
    n = 30 * FPS
    idle = np.mean([head_std(motion_track(n, FPS, seed=s)) for s in range(4)], axis=0)
    talking = np.mean([head_std(motion_track(n, FPS, speech=speech(30, 0.3), seed=s)) for s in range(4)], axis=0)
    # Real talkers in ../shared/talking: std yaw 2.4, pitch 2.1, roll 1.0 degrees (see device/motion/timeline.py).
    assert np.all(talking > 1.3 * idle)
    assert np.all(np.abs(talking - [2.4, 2.1, 1.0]) < [0.8, 0.8, 0.5])


def test_the_added_head_motion_waits_for_the_speech() -> None:
    n = 8 * FPS
    idle = motion_track(n, FPS, seed=1)
    talking = motion_track(n, FPS, speech=speech(8, 4.0), seed=1)
    before = slice(0, int(3.5 * FPS))
    yaw = COLUMN["head_yaw"]
    assert np.allclose(idle[before, yaw], talking[before, yaw], atol=1e-4)
    assert np.abs(idle[int(5 * FPS) :, yaw] - talking[int(5 * FPS) :, yaw]).max() > 0.3


def test_the_same_seed_gives_the_same_motion() -> None:
    a = motion_track(100, FPS, speech=speech(4, 0.5), seed=9)
    b = motion_track(100, FPS, speech=speech(4, 0.5), seed=9)
    assert np.array_equal(a, b)
