"""Training pairs from talking video: the clip tool, the pair geometry and masks, and its CLI."""

from __future__ import annotations

import numpy as np
import pytest

from device.errors import BadInput
from device.face import topology as topo
from device.runtime import crop as cropping
from models import talking
from models.generator import INPUT_CHANNELS


@pytest.fixture(scope="module")
def clip(talking_clips, analyzer):
    return talking.load_clip(talking_clips / "speaker.mp4", analyzer, every=1)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(float) - b.astype(float)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-9))


def test_a_clip_is_read_with_a_face_in_every_frame(clip) -> None:
    assert clip.name == "speaker" and len(clip.frames) == len(clip.faces) == 12
    # The clip opens its mouth in the middle: the tracked landmarks see it.
    assert clip.openings[3] > clip.openings[0] + 0.02


def test_a_frame_paired_with_itself_is_its_own_truth(clip) -> None:
    sample = talking.make_pair(clip.frames[0], clip.faces[0], clip.frames[0], clip.faces[0], 128)
    assert psnr(sample.warped, sample.target) > 35
    assert psnr(sample.reference, sample.target) > 35


def test_an_open_target_mouth_is_marked_and_inside_the_repair_mask(clip) -> None:
    sample = talking.make_pair(clip.frames[0], clip.faces[0], clip.frames[3], clip.faces[3], 128, painted=True)
    assert sample.interior.shape == sample.mask.shape == (128, 128)
    assert sample.interior.sum() > 20  # the open mouth of frame 3
    inside = sample.interior > 0.5
    assert (sample.mask[inside] > 0.9).all()  # the generator may change all of the opening
    # The mouth sits where the crop template puts it.
    ys, xs = np.nonzero(inside)
    assert abs(xs.mean() / 128 - cropping.DEFAULT_TEMPLATE["mouth"][0]) < 0.08
    assert ys.mean() / 128 > 0.7
    # Truth and render differ in the mouth (the render stretches a closed mouth), and the painted path paints it.
    assert np.abs(sample.warped[inside].astype(int) - sample.target[inside]).mean() > 3
    assert sample.painted is not None and np.abs(sample.painted[inside].astype(int) - sample.warped[inside]).mean() > 3


def test_the_target_is_moved_into_the_source_head_frame(clip) -> None:
    """A target whose whole head moved (here: shifted by 9 px) is brought back onto the source's head."""
    from dataclasses import replace

    frame = clip.frames[0]
    moved = np.roll(frame, 9, axis=1)
    landmarks = clip.faces[0].landmarks.copy()
    landmarks[:, 0] += 9
    face = replace(clip.faces[0], landmarks=landmarks, iris=clip.faces[0].iris + np.array([9.0, 0.0]))
    sample = talking.make_pair(frame, clip.faces[0], moved, face, 128)
    assert psnr(sample.warped, sample.target) > 30


def test_inputs_follow_the_contract_order(clip) -> None:
    sample = talking.make_pair(clip.frames[0], clip.faces[0], clip.frames[4], clip.faces[4], 64)
    x = talking.to_input(sample, INPUT_CHANNELS)
    assert x.shape == (8, 64, 64) and x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    assert np.allclose(x[4], sample.interior) and np.allclose(x[5] * 255, sample.reference[..., 0])


def test_light_drift_within_a_clip_is_taken_out_of_the_truth() -> None:
    rng = np.random.default_rng(0)
    warped = rng.integers(60, 200, (64, 64, 3), dtype=np.uint8)
    darker = (warped * 0.8).astype(np.uint8)
    fixed = talking.match_light(darker, warped, np.zeros((64, 64), np.float32))
    assert np.abs(fixed.astype(int) - warped).mean() < 2 < np.abs(darker.astype(int) - warped).mean()


def test_pairs_are_deterministic_for_a_seed(clip) -> None:
    a = list(talking.generate([clip], 3, 64, seed=5))
    b = list(talking.generate([clip], 3, 64, seed=5))
    assert all(
        np.array_equal(x.target, y.target) and np.array_equal(x.warped, y.warped) for x, y in zip(a, b, strict=True)
    )


def test_the_cli_writes_pairs_and_held_out_pairs(talking_clips, tmp_path, capsys) -> None:
    out = tmp_path / "pairs.npz"
    args = [str(talking_clips), "--out", str(out), "--holdout", "mirrored", "--pairs", "4", "--eval-pairs", "2"]
    assert talking.main([*args, "--size", "64"]) == 0
    with np.load(out) as pairs:
        assert pairs["warped"].shape == (4, 64, 64, 3) and pairs["interior"].dtype == np.uint8
    with np.load(tmp_path / "pairs.holdout.npz") as held:
        assert held["target"].shape == (2, 64, 64, 3) and "painted" in held.files
    assert "from mirrored" in capsys.readouterr().out


def test_bad_folders_and_names_are_refused(tmp_path, talking_clips, capsys) -> None:
    assert talking.main([str(tmp_path / "none"), "--out", str(tmp_path / "p.npz")]) == 2
    assert "not a folder" in capsys.readouterr().err
    with pytest.raises(BadInput, match="no video named nobody"):
        talking.find_videos(talking_clips, ["nobody"])
    with pytest.raises(BadInput, match="no videos"):
        talking.find_videos(tmp_path)


def test_the_mouth_polygon_is_drawn_in_the_crop(clip) -> None:
    landmarks = clip.faces[3].landmarks
    matrix = cropping.align_matrix(landmarks, 128)
    drawn = cropping.mouth_interior(landmarks, matrix, 128)
    from device.render.renderer import mouth_interior

    cut = cropping.extract(mouth_interior(landmarks, clip.frames[3].shape).astype(np.float32), matrix, 128)
    assert drawn.sum() > 20 and abs(drawn.sum() - cut.sum()) / cut.sum() < 0.25
    assert topo.mouth_opening(landmarks) > 0


def test_a_rig_driven_pair_poses_the_source_as_drive_does(clip) -> None:
    """Frame 3 opens the jaw fully and frame 7 blinks: measured as --drive measures a performer, the rig
    poses frame 0 with them, and the opening it draws overlaps the real one."""
    from device.motion.params import FaceParams

    opened = FaceParams.from_array(clip.drive_params(0, 3))
    assert opened.jaw_open > 0.3 and opened.blink_left < 0.3 and abs(opened.head_yaw) < 3.0
    assert FaceParams.from_array(clip.drive_params(0, 7)).blink_left > opened.blink_left + 0.2
    rig = talking.make_pair(
        clip.frames[0], clip.faces[0], clip.frames[3], clip.faces[3], 128, params=clip.drive_params(0, 3)
    )
    exact = talking.make_pair(clip.frames[0], clip.faces[0], clip.frames[3], clip.faces[3], 128)
    a, b = rig.interior > 0.5, exact.interior > 0.5
    assert a.sum() > 20 and (a & b).sum() / (a | b).sum() > 0.4
    assert (rig.mask[a] > 0.9).all()
    # Truth and render line up outside the mouth and eyes, as closely as with the exact landmarks.
    outside = rig.mask < 0.02
    assert psnr(rig.warped[outside], rig.target[outside]) > psnr(exact.warped[outside], exact.target[outside]) - 3
