"""Driving video: a performer's expression and head motion, relative to their first frame, move the
portrait. The performer here is the astronaut rendered with known motion, so the truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from device.face import topology as topo
from device.motion.drive import COLUMN, ExpressionTracker, drive_track, open_from_rest, read_performance
from device.motion.params import FaceParams
from device.outputs.video import VideoWriter
from device.render.renderer import Renderer

FPS = 25
FRAMES = 50


@pytest.fixture(scope="module")
def performer(tmp_path_factory, astronaut, astronaut_face):
    """A 2 s clip: the mouth opens and closes twice, the head turns, one blink at frame 30."""
    renderer = Renderer(astronaut, astronaut_face, close_mouth_at_rest=True)
    t = np.arange(FRAMES) / FPS
    jaw = np.clip(np.sin(2 * np.pi * t), 0, None)
    yaw = 6.0 * np.sin(np.pi * t)
    blink = np.exp(-(((np.arange(FRAMES) - 30) / 1.5) ** 2))
    path = tmp_path_factory.mktemp("drive") / "performer.mp4"
    with VideoWriter(path, FPS, 512, 512, crf=16) as writer:
        for i in range(FRAMES):
            writer.write(
                renderer.render(FaceParams(jaw_open=jaw[i], head_yaw=yaw[i], blink_left=blink[i], blink_right=blink[i]))
            )
    return path, jaw, yaw, blink


def test_mouth_and_head_motion_transfer(performer, analyzer) -> None:
    path, jaw, yaw, _ = performer
    track = drive_track(path, analyzer, FPS)
    assert track.shape == (FRAMES, len(FaceParams.names()))
    assert np.corrcoef(track[:, COLUMN["jaw_open"]], jaw)[0, 1] > 0.8
    assert np.corrcoef(track[:, COLUMN["head_yaw"]], yaw)[0, 1] > 0.8
    # Relative to the first frame: the first frame is the rest pose.
    assert abs(track[0, COLUMN["jaw_open"]]) < 0.05 and abs(track[0, COLUMN["head_yaw"]]) < 1.0


def test_a_portrait_with_parted_lips_follows_the_performers_opening(performer, analyzer) -> None:
    """A portrait resting with parted lips (opening 0.15), driven by a performer whose lips close between
    the openings, closes its own there (mouth_close) and opens the jaw only past its own opening."""
    path, jaw, _, _ = performer
    rest = 0.15
    track = drive_track(path, analyzer, FPS, rest_opening=rest)
    shut, wide = jaw < 0.02, jaw > 0.9
    assert track[shut, COLUMN["mouth_close"]].mean() > 0.7 and track[shut, COLUMN["jaw_open"]].max() < 0.05
    assert track[wide, COLUMN["mouth_close"]].max() < 0.05 and track[wide, COLUMN["jaw_open"]].mean() > 0.2
    plain = drive_track(path, analyzer, FPS)
    assert not plain[:, COLUMN["mouth_close"]].any()  # without the portrait's opening: added to the photo's


def test_the_live_tracker_maps_the_opening_onto_a_portrait_with_parted_lips(performer, analyzer) -> None:
    """The mirror's tracker, frame by frame: the same mapping as offline, from the most closed mouth so far."""
    from device.media.video import read_frames

    path, jaw, _, _ = performer
    tracker = ExpressionTracker(analyzer, smoothing=0.0, rest_opening=0.15)
    track = np.array([tracker.update(frame) for frame in read_frames(path)])
    shut, wide = jaw < 0.02, jaw > 0.9
    assert track[shut, COLUMN["mouth_close"]].mean() > 0.6
    assert track[wide, COLUMN["mouth_close"]].max() < 0.05 and track[wide, COLUMN["jaw_open"]].mean() > 0.2


def test_the_live_tracker_gives_the_face_shape_too(performer, analyzer) -> None:
    """Frame by frame, the lower lip's shape follows the performer's jaw, as offline."""
    from device.media.video import read_frames

    path, jaw, _, _ = performer
    tracker = ExpressionTracker(analyzer, smoothing=0.0)
    assert tracker.shape is None
    lower_lip = []
    for frame in read_frames(path):
        tracker.update(frame)
        lower_lip.append(tracker.shape[topo.LIPS_INNER_LOWER[1:-1], 1].mean())
    assert np.corrcoef(lower_lip, jaw)[0, 1] > 0.9
    assert abs(lower_lip[0]) < 1e-6  # the first face is the neutral


def test_the_performers_face_shape_is_their_expression_without_the_head(performer, analyzer) -> None:
    """Shapes: each landmark's move in the performer's head frame. The lower lip drops with the jaw; the
    skull stays put while the head turns 6 degrees; the lids are left to the rig."""
    from device.render.rig import EYE_POINTS

    path, jaw, yaw, _ = performer
    performance = read_performance(path, analyzer, FPS)
    assert performance.shapes.shape == (FRAMES, 468, 3) and len(performance) == FRAMES
    lower_lip = performance.shapes[:, topo.LIPS_INNER_LOWER[1:-1], 1].mean(1)
    assert np.corrcoef(lower_lip, jaw)[0, 1] > 0.9
    assert lower_lip[jaw > 0.9].mean() > 0.1  # eye distances: a wide open mouth
    turning = np.abs(yaw) > 4.0
    assert np.abs(performance.shapes[turning][:, topo.SKULL, :2]).mean() < 0.01
    assert not performance.shapes[:, EYE_POINTS].any()
    np.testing.assert_array_equal(performance.params, drive_track(path, analyzer, FPS))


def test_the_rig_lays_a_shape_onto_the_portraits_face(astronaut, astronaut_face) -> None:
    """A zero shape is the photo's own face (its parted lips too); a shape's lower-lip drop opens the mouth
    by as much (in the portrait's eye distances), and the eyes still follow the rig's own blink."""
    rig = Renderer(astronaut, astronaut_face).rig
    rest, _ = rig.pose(FaceParams())
    at_rest, _ = rig.pose(FaceParams(), np.zeros((468, 3)))
    np.testing.assert_allclose(at_rest, rest, atol=1e-6)
    shape = np.zeros((468, 3))
    shape[topo.LIPS_INNER_LOWER[1:-1], 1] = 0.2
    opened, _ = rig.pose(FaceParams(blink_left=1.0, jaw_open=1.0, smile=1.0), shape)
    drop = (opened - rest)[topo.LIPS_INNER_LOWER[1:-1]] @ rig.axis_y / rig.unit
    np.testing.assert_allclose(drop, 0.2, atol=1e-6)  # the parametric jaw and smile are not added
    blinked, _ = rig.pose(FaceParams(blink_left=1.0))
    np.testing.assert_allclose(opened[topo.LEFT_EYE_UPPER], blinked[topo.LEFT_EYE_UPPER], atol=1e-6)


def test_open_from_rest_maps_the_opening_onto_the_portraits() -> None:
    params = np.zeros(len(FaceParams.names()), np.float32)
    open_from_rest(params, 0.0, 0.1)
    assert params[COLUMN["mouth_close"]] == 1.0 and params[COLUMN["jaw_open"]] == 0.0
    open_from_rest(params, 0.05, 0.1)
    assert params[COLUMN["mouth_close"]] == pytest.approx(0.5) and params[COLUMN["jaw_open"]] == 0.0
    open_from_rest(params, 0.1 + 0.21, 0.1)
    assert params[COLUMN["mouth_close"]] == 0.0 and params[COLUMN["jaw_open"]] == pytest.approx(0.5)
    before = params.copy()
    open_from_rest(params, 0.0, 0.01)  # lips already together: nothing to close
    np.testing.assert_array_equal(params, before)


def test_a_closed_mouth_reads_as_rest_though_the_performer_talks_half_the_clip(performer, analyzer) -> None:
    """Width and smile are measured from the performer's closed mouth, not their usual (talking) one."""
    path, jaw, _, _ = performer
    track = drive_track(path, analyzer, FPS)
    shut = jaw < 0.02
    for name in ("lip_round", "lip_wide", "smile"):
        assert np.abs(track[shut, COLUMN[name]]).mean() < 0.1, name


def test_blink_transfers(performer, analyzer) -> None:
    path, _, _, blink = performer
    track = drive_track(path, analyzer, FPS)
    blinks = track[:, COLUMN["blink_left"]] + track[:, COLUMN["blink_right"]]
    assert abs(int(np.argmax(blinks)) - int(np.argmax(blink))) <= 2


def test_drive_resamples_to_the_output_rate(performer, analyzer) -> None:
    path, *_ = performer
    assert len(drive_track(path, analyzer, fps=10)) == 20


def test_drive_errors_name_the_file(tmp_path, analyzer) -> None:
    from device.errors import BadInput

    with pytest.raises(BadInput, match=r"nothing\.mp4"):
        drive_track(tmp_path / "nothing.mp4", analyzer, FPS)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(BadInput, match=r"junk\.mp4"):
        drive_track(junk, analyzer, FPS)
    # A video without any face.
    from skimage import data

    coffee = data.coffee()[:400, :600]
    with VideoWriter(tmp_path / "coffee.mp4", FPS, 600, 400) as writer:
        for _ in range(5):
            writer.write(coffee)
    with pytest.raises(BadInput, match="no face found in the driving video"):
        drive_track(tmp_path / "coffee.mp4", analyzer, FPS)


def test_a_clip_driving_its_own_first_frame_plays_its_mouth_back(tmp_path, performer, analyzer, animator) -> None:
    """Self-reenactment: posed with the performer's shapes, the portrait's lips go where the performer's
    went (the rig's targets, against the mesh on the real frames), and `animate --drive` renders them
    opening and closing with the performer's (measured back from the MP4)."""
    from device.media.video import read_frames
    from device.pipeline import AnimateRequest

    path, *_ = performer
    frames = list(read_frames(path))
    real = []
    previous = None
    for frame in frames:
        previous = analyzer.track(frame, previous)
        real.append(topo.mouth_opening(previous))
    portrait = analyzer.analyse(frames[0], name="first frame")
    performance = read_performance(path, analyzer, FPS, rest_opening=topo.mouth_opening(portrait.landmarks))
    rig = Renderer(frames[0], portrait).rig
    posed = []
    for params, shape in zip(performance.params, performance.shapes, strict=True):
        targets, _ = rig.pose(FaceParams.from_array(params), shape)
        posed.append(topo.mouth_opening(np.column_stack([targets, np.zeros(len(targets))])))
    np.testing.assert_allclose(posed, real, atol=0.03)

    out = tmp_path / "self.mp4"
    animator.animate(AnimateRequest(photo=frames[0], out=out, drive=path, backend="none"))
    rendered = []
    previous = None
    for frame in read_frames(out):
        previous = analyzer.track(frame, previous)
        rendered.append(topo.mouth_opening(previous))
    assert np.corrcoef(real, rendered)[0, 1] > 0.95
