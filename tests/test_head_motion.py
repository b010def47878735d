"""The whole head moves: pose from the mesh, the head with its hair over a still background, the neck
bending into still shoulders; and the clip-level rules around driving video and output size."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from device.errors import PortraitError
from device.face.segment import PersonSegmenter
from device.media.video import probe_video
from device.motion.drive import head_pose
from device.motion.params import FaceParams
from device.outputs.video import VideoWriter
from device.render.head import HeadMotion, fit_similarity
from device.render.renderer import Renderer
from device.render.rig import FaceRig
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def person(astronaut) -> np.ndarray:
    return PersonSegmenter().mask(astronaut)


@pytest.mark.parametrize(
    "params",
    [
        FaceParams(head_yaw=8.0),
        FaceParams(head_pitch=-6.0),
        FaceParams(head_roll=5.0),
        FaceParams(head_yaw=-5.0, head_pitch=4.0, head_roll=-3.0, head_x=0.1, head_y=-0.05),
        FaceParams(head_scale=0.12),
        FaceParams(head_yaw=6.0, head_pitch=-3.0, head_x=-0.2, head_scale=-0.08),
    ],
)
def test_pose_is_recovered_from_a_rotated_mesh(astronaut_face, params: FaceParams) -> None:
    rig = FaceRig(astronaut_face.landmarks, astronaut_face.iris, False)
    moved, _ = rig._head(rig.local.copy(), None, params)
    mesh = np.column_stack([rig.to_image(moved[:, :2]), moved[:, 2] * rig.unit])
    yaw, pitch, roll, shift_x, shift_y, scale = head_pose(mesh, astronaut_face.landmarks)
    expected = (params.head_yaw, params.head_pitch, params.head_roll, params.head_x, params.head_y, params.head_scale)
    np.testing.assert_allclose((yaw, pitch, roll, shift_x, shift_y, scale), expected, atol=1e-3)


def test_a_similarity_is_fitted_exactly() -> None:
    points = np.random.default_rng(0).uniform(0, 100, (30, 2))
    angle, scale, shift = np.radians(7.0), 1.05, np.array([3.0, -2.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = scale * points @ rotation.T + shift
    np.testing.assert_allclose(fit_similarity(points, moved), np.column_stack([scale * rotation, shift]), atol=1e-9)


def test_the_segmenter_finds_the_person(astronaut, astronaut_face, person) -> None:
    assert person.shape == astronaut.shape[:2] and person.dtype == np.float32
    nose = np.round(astronaut_face.landmarks[4, :2]).astype(int)
    assert person[nose[1], nose[0]] > 0.9  # the face is the person
    assert person[20, 480] < 0.1  # the flag and the sky behind are not


def test_the_segmentation_model_is_hash_checked(tmp_path, monkeypatch) -> None:
    from device import assets

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(assets.model_path("selfie_segmentation.tflite"), models / "selfie_segmentation.tflite")
    monkeypatch.setenv("PORTRAIT_ASSETS", str(tmp_path))
    assert assets.model_path("selfie_segmentation.tflite").parent == models
    with (models / "selfie_segmentation.tflite").open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\0\0\0\0")
    with pytest.raises(PortraitError, match="corrupt"):
        assets.model_path("selfie_segmentation.tflite")


def test_the_whole_head_moves_and_nothing_outside_it(astronaut, astronaut_face, person) -> None:
    renderer = Renderer(astronaut, astronaut_face, person_mask=person)
    assert np.array_equal(renderer.render(FaceParams()), Renderer(astronaut, astronaut_face).render(FaceParams()))
    frame = renderer.render(FaceParams(head_roll=6.0, head_x=0.15))
    head = HeadMotion(astronaut, astronaut_face.landmarks, person)
    x0, y0, x1, y1 = head.box
    outside = np.ones(astronaut.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(frame[outside], astronaut[outside])  # nothing outside the head's box changes
    # The hair moved: the top of the head is not where it was.
    top = astronaut_face.landmarks[10, :2].astype(int)  # the forehead's top, under the hair
    hair = (slice(max(top[1] - 40, 0), top[1] - 5), slice(top[0] - 40, top[0] + 40))
    assert np.abs(frame[hair].astype(int) - astronaut[hair].astype(int)).mean() > 5.0


def test_a_head_leaning_in_grows_as_a_whole(astronaut, astronaut_face, person) -> None:
    """head_scale scales the head about the top of the neck: the face's own landmarks and the hair above
    them grow by as much, the picture outside the head's box does not change."""
    renderer = Renderer(astronaut, astronaut_face, person_mask=person)
    rig = renderer.rig
    rest, _ = rig.pose(FaceParams())
    grown, _ = rig.pose(FaceParams(head_scale=0.12))
    eyes = [33, 263]
    width = np.linalg.norm(rest[eyes[0]] - rest[eyes[1]])
    assert np.linalg.norm(grown[eyes[0]] - grown[eyes[1]]) == pytest.approx(1.12 * width, rel=1e-6)
    motion = renderer.head.rigid_motion(rig.head_only(FaceParams(head_scale=0.12)))
    assert np.sqrt(abs(np.linalg.det(motion[:, :2]))) == pytest.approx(1.12, rel=1e-6)
    frame = renderer.render(FaceParams(head_scale=0.12))
    x0, y0, x1, y1 = renderer.head.box
    outside = np.ones(astronaut.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(frame[outside], astronaut[outside])
    top = astronaut_face.landmarks[10, :2].astype(int)
    hair = (slice(max(top[1] - 40, 0), top[1] - 5), slice(top[0] - 40, top[0] + 40))
    assert np.abs(frame[hair].astype(int) - astronaut[hair].astype(int)).mean() > 5.0


def test_the_meshs_small_changes_of_size_are_not_the_head_leaning_in(astronaut_face) -> None:
    """A turn or an expression reads as a few per cent of size on the mesh: within that noise the head
    keeps its size, well past it the head takes the measured size; either way the face shape carries no
    size of its own, so the face keeps the size its outline gets."""
    from device.motion.drive import COLUMN, NAMES, SCALE_NOISE, head_frame, with_head_pose

    rig = FaceRig(astronaut_face.landmarks, astronaut_face.iris, False)
    reference = astronaut_face.landmarks
    neutral = head_frame(reference, reference, np.zeros(len(NAMES)))
    for size, expected in ((0.8 * SCALE_NOISE, 0.0), (0.15, 0.15)):
        moved, _ = rig._head(rig.local.copy(), None, FaceParams(head_scale=size, head_yaw=4.0))
        mesh = np.column_stack([rig.to_image(moved[:, :2]), moved[:, 2] * rig.unit])
        params = with_head_pose(np.zeros(len(NAMES), np.float32), mesh, reference)
        assert params[COLUMN["head_scale"]] == pytest.approx(expected, abs=1e-4)
        np.testing.assert_allclose(head_frame(mesh, reference, params), neutral, atol=1e-4)


def test_the_shoulders_stay_while_the_head_moves(astronaut, astronaut_face, person) -> None:
    renderer = Renderer(astronaut, astronaut_face, person_mask=person)
    frame = renderer.render(FaceParams(head_roll=6.0, head_x=0.15))
    oval = astronaut_face.landmarks[:, :2]
    face_w = oval[:, 0].max() - oval[:, 0].min()
    chin = astronaut_face.landmarks[152, :2]
    # A shoulder: well below the chin and well to the side of the neck.
    y = int(chin[1] + 0.9 * (oval[:, 1].max() - oval[:, 1].min()))
    x = int(chin[0] - 1.2 * face_w)
    patch = (slice(y - 10, y + 10), slice(x - 10, x + 10))
    assert np.abs(frame[patch].astype(int) - astronaut[patch].astype(int)).max() <= 2


@pytest.fixture(scope="module")
def talking_video(tmp_path_factory, astronaut, astronaut_face) -> Path:
    """A 1 s driving clip of the astronaut turning, with a sound track."""
    renderer = Renderer(astronaut, astronaut_face)
    path = tmp_path_factory.mktemp("drive") / "performer.mp4"
    tone = (0.2 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)
    with VideoWriter(path, 25, 512, 512, audio=tone, sample_rate=16000) as writer:
        for i in range(25):
            writer.write(renderer.render(FaceParams(head_yaw=5.0 * np.sin(i / 4), jaw_open=0.4 * (i % 2))))
    return path


@pytest.mark.slow
def test_drive_carries_the_drivers_sound_unless_told_not_to(tmp_path, talking_video) -> None:
    with_sound, without = tmp_path / "with.mp4", tmp_path / "without.mp4"
    common = ("--size", "256", "--backend", "none")
    done = run_cli("animate", "--drive", str(talking_video), *common, "--out", str(with_sound))
    assert done.returncode == 0, done.stderr
    assert probe_video(with_sound).has_audio
    done = run_cli("animate", "--drive", str(talking_video), "--no-drive-audio", *common, "--out", str(without))
    assert done.returncode == 0, done.stderr
    assert not probe_video(without).has_audio


def test_a_still_photo_is_not_a_driving_video(tmp_path, astronaut) -> None:
    still = tmp_path / "still.jpg"
    Image.fromarray(astronaut).save(still)
    done = run_cli("animate", "--drive", str(still), "--size", "128", "--out", str(tmp_path / "x.mp4"))
    assert done.returncode == 2 and "still.jpg" in done.stderr and "at least 2 frames" in done.stderr


@pytest.mark.slow
def test_a_large_photo_is_capped_at_a_long_side_of_1920_and_says_so(tmp_path, astronaut) -> None:
    big = tmp_path / "big.png"
    Image.fromarray(astronaut).resize((2400, 2400)).save(big)
    done = run_cli(
        "animate", str(big), "--seconds", "0.2", "--backend", "none", "--out", str(tmp_path / "b.mp4"), "--json"
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert probe_video(tmp_path / "b.mp4").width == 1920
    assert any("1920" in w and "--size" in w for w in summary["warnings"])
