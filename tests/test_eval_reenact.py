"""The self-reenactment evaluation's rules for clips whose real head or mouth hardly moves."""

from __future__ import annotations

import numpy as np

from tools.eval_reenact import HEAD_MOVES, MOUTH_MOVES, Reenactment, head_spread, mouth_spread


def _result(**changes: float) -> Reenactment:
    values = dict(
        clip="c", frames=50, psnr=22.0, psnr_still=20.0, ssim=0.70, ssim_still=0.65, head_r=0.95, mouth_r=0.8,
        identity=0.2, render_s=1.0, head_spread=0.1, head_spread_render=0.1, mouth_spread=0.15,
        mouth_spread_render=0.12,
    )  # fmt: skip
    values.update(changes)
    return Reenactment(**values)


def test_a_moving_mouth_is_judged_by_its_r() -> None:
    assert _result().passes
    assert not _result(mouth_r=0.5).passes


def test_a_still_mouth_passes_when_the_render_keeps_still_whatever_its_r() -> None:
    still = _result(mouth_spread=0.01, mouth_r=0.05, mouth_spread_render=0.02)
    assert not still.mouth_moves and still.mouth_ok and still.passes
    # A render that talks where the real person keeps the mouth shut fails.
    assert not _result(mouth_spread=0.01, mouth_r=0.05, mouth_spread_render=0.12).passes


def test_a_still_head_passes_when_the_render_keeps_still() -> None:
    assert _result(head_spread=0.01, head_r=0.3, head_spread_render=0.02).passes
    assert not _result(head_spread=0.01, head_r=0.3, head_spread_render=0.2).passes
    assert not _result(head_r=0.3).passes  # a moving head is judged by its r


def test_spreads_measure_motion_not_one_frame_slips() -> None:
    rng = np.random.default_rng(0)
    shut = 0.01 + 0.002 * rng.standard_normal(100)
    shut[40] = 0.08  # dlib slips for one frame
    assert mouth_spread(shut) < MOUTH_MOVES
    talking = 0.01 + 0.08 * (np.sin(np.arange(100) / 2.0) > 0)
    assert mouth_spread(talking) > MOUTH_MOVES
    landmarks = np.zeros((100, 68, 2))
    landmarks[:, 45, 0] = 100.0  # eye corners 100 px apart
    landmarks[:, 30] = rng.normal(50.0, 0.5, (100, 2))  # a nose that jitters half a pixel
    assert head_spread(landmarks) < HEAD_MOVES
    landmarks[:, 30, 0] += 20.0 * np.sin(np.arange(100) / 10.0)  # a head that turns
    assert head_spread(landmarks) > HEAD_MOVES
