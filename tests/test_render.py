"""The rig and the warp, checked by the face mesh on the rendered frames: what the parameters ask
for is what a face tracker sees, and the rest of the photo stays the photo."""

from __future__ import annotations

import numpy as np
import pytest

from device.face import topology as topo
from device.motion.params import FaceParams
from device.render.renderer import Renderer


@pytest.fixture(scope="module")
def renderer(astronaut, astronaut_face):
    return Renderer(astronaut, astronaut_face, close_mouth_at_rest=True)


def measured(analyzer, frame):
    landmarks = analyzer.track(frame, None)
    assert landmarks is not None, "the face mesh lost the face in a rendered frame"
    return landmarks


def test_rest_pose_closes_the_smiling_mouth(analyzer, renderer, astronaut_face) -> None:
    assert topo.mouth_opening(astronaut_face.landmarks) > 0.12  # the astronaut smiles with teeth
    rest = measured(analyzer, renderer.render(FaceParams()))
    assert topo.mouth_opening(rest) < 0.1


def test_jaw_open_opens_the_mouth_in_proportion(analyzer, renderer) -> None:
    openings = [topo.mouth_opening(measured(analyzer, renderer.render(FaceParams(jaw_open=j)))) for j in (0, 0.5, 1)]
    assert openings[0] < openings[1] < openings[2]
    assert openings[2] > 0.3


def test_lip_press_closes_even_an_open_jaw(analyzer, renderer) -> None:
    pressed = measured(analyzer, renderer.render(FaceParams(jaw_open=0.6, lip_press=1.0)))
    opened = measured(analyzer, renderer.render(FaceParams(jaw_open=0.6)))
    assert topo.mouth_opening(pressed) < 0.12
    assert topo.mouth_opening(pressed) < 0.4 * topo.mouth_opening(opened)


def test_blink_closes_both_eyes(analyzer, renderer) -> None:
    open_eyes = measured(analyzer, renderer.render(FaceParams()))
    closed = measured(analyzer, renderer.render(FaceParams(blink_left=1.0, blink_right=1.0)))
    for upper, lower in ((topo.RIGHT_EYE_UPPER, topo.RIGHT_EYE_LOWER), (topo.LEFT_EYE_UPPER, topo.LEFT_EYE_LOWER)):
        # The mesh model under-reads closed lids (it was trained on open eyes), hence the generous bound.
        assert topo.eye_openness(closed, upper, lower) < 0.85 * topo.eye_openness(open_eyes, upper, lower)


def test_head_yaw_turns_the_nose(analyzer, renderer) -> None:
    straight = measured(analyzer, renderer.render(FaceParams()))
    turned = measured(analyzer, renderer.render(FaceParams(head_yaw=8.0)))
    assert turned[topo.NOSE_TIP, 0] - straight[topo.NOSE_TIP, 0] > 2.0


def test_rest_of_the_photo_is_untouched(astronaut, renderer) -> None:
    frame = renderer.render(FaceParams(jaw_open=1.0, head_yaw=6.0, blink_left=1.0, gaze_x=1.0))
    assert frame.shape == astronaut.shape and frame.dtype == np.uint8
    warp = renderer.warp
    outside = np.ones(astronaut.shape[:2], bool)
    outside[warp.y0 : warp.y0 + warp.height, warp.x0 : warp.x0 + warp.width] = False
    assert np.array_equal(frame[outside], astronaut[outside])
    # Inside the region, the border ring (where the falloff is zero) is untouched too: no seam.
    ring = renderer.falloff == 0
    region = frame[warp.y0 : warp.y0 + warp.height, warp.x0 : warp.x0 + warp.width]
    source = astronaut[warp.y0 : warp.y0 + warp.height, warp.x0 : warp.x0 + warp.width]
    assert ring.any() and np.abs(region[ring].astype(int) - source[ring].astype(int)).max() <= 1


def test_identity_kept_outside_the_animated_parts(analyzer, renderer, astronaut_face) -> None:
    # Speaking and blinking move the mouth and the eyes, not the nose, the brows or the face outline.
    frame = renderer.render(FaceParams(jaw_open=0.7, blink_left=1.0, blink_right=1.0))
    landmarks = measured(analyzer, frame)
    still = topo.NOSE[:6] + topo.FACE_OVAL[:8] + topo.FACE_OVAL[-8:]
    drift = np.linalg.norm(landmarks[still, :2] - astronaut_face.landmarks[still, :2], axis=1)
    assert drift.mean() < 0.04 * astronaut_face.size


def test_gaze_moves_the_iris(analyzer, renderer) -> None:
    left = renderer.render(FaceParams(gaze_x=-1.0))
    right = renderer.render(FaceParams(gaze_x=1.0))
    iris_left = analyzer.mesh.irises(left, measured(analyzer, left))
    iris_right = analyzer.mesh.irises(right, measured(analyzer, right))
    assert (iris_right[:, 0, 0] - iris_left[:, 0, 0]).mean() > 1.0


def test_repair_mask_covers_lips_and_eyes_not_the_painted_mouth(renderer) -> None:
    """The generator is asked to fix the lips' edge and the eyes; the open mouth's painted interior
    is left to the painter (a generator from few smiling faces would fill it with pale teeth)."""
    targets, _ = renderer.rig.pose(FaceParams(jaw_open=1.0))
    mask = renderer._repair_mask(targets)
    inner = topo.inner_mouth_polygon(targets)[:, :2]
    centre = inner.mean(0)
    top_lip, bottom_lip = inner[:, 1].min(), inner[:, 1].max()
    assert mask[int(centre[1]), int(centre[0])] < 0.1  # the middle of the open mouth (only the blur reaches it)
    assert mask[int(top_lip), int(centre[0])] > 0.4  # the lips' inner edge
    assert mask[int(bottom_lip), int(centre[0])] > 0.4
    for eye in (topo.RIGHT_EYE_UPPER + topo.RIGHT_EYE_LOWER, topo.LEFT_EYE_UPPER + topo.LEFT_EYE_LOWER):
        x, y = targets[eye, :2].mean(0)
        assert mask[int(y), int(x)] > 0.9
    assert mask[5, 5] == 0.0  # far from the face


def test_below_the_jaw_line_nothing_moves_when_the_jaw_opens(astronaut, astronaut_face) -> None:
    """The chin drops over the neck and collar; they stay as they were (no clothes moving with the jaw)."""
    renderer = Renderer(astronaut, astronaut_face)
    frame = renderer.render(FaceParams(jaw_open=1.0))
    chin = astronaut_face.landmarks[topo.CHIN_TIP, :2]
    targets, _ = renderer.rig.pose(FaceParams(jaw_open=1.0))
    dropped = targets[topo.CHIN_TIP, 1] - chin[1]
    assert dropped > 0.05 * renderer.rig.unit  # the chin really moved down
    unit = renderer.rig.unit
    below = (slice(int(targets[topo.CHIN_TIP, 1] + 0.2 * unit), astronaut.shape[0]),
             slice(int(chin[0] - unit), int(chin[0] + unit)))  # fmt: skip
    assert np.abs(frame[below].astype(int) - astronaut[below].astype(int)).max() <= 1
    # Between the old and the new chin the chin itself now shows: those pixels did change.
    between = (slice(int(chin[1] + 2), int(targets[topo.CHIN_TIP, 1] - 2)), slice(int(chin[0] - 5), int(chin[0] + 5)))
    assert np.abs(frame[between].astype(int) - astronaut[between].astype(int)).mean() > 2


def test_a_smiling_photo_keeps_its_smile_at_rest_and_closes_while_speaking(analyzer, astronaut, astronaut_face):
    """Without speech the photo's own toothy smile stays; `mouth_close` (the speech envelope) closes the
    lips, and the corners of the smile stay where they are."""
    renderer = Renderer(astronaut, astronaut_face)
    rest = measured(analyzer, renderer.render(FaceParams()))
    assert abs(topo.mouth_opening(rest) - topo.mouth_opening(astronaut_face.landmarks)) < 0.03
    speaking = renderer.render(FaceParams(mouth_close=1.0))
    closed = measured(analyzer, speaking)
    assert topo.mouth_opening(closed) < 0.1
    corners = list(topo.MOUTH_CORNERS)
    moved = np.linalg.norm(closed[corners, :2] - astronaut_face.landmarks[corners, :2], axis=1)
    assert moved.max() < 0.08 * renderer.rig.unit


def test_a_speech_track_closes_the_rest_mouth_only_while_speaking() -> None:
    from device.motion.speech import TimedPhone
    from device.motion.visemes import speech_track

    phones = [TimedPhone(0.5, 0.7, "a", "aa"), TimedPhone(0.7, 0.8, "p", "PP"), TimedPhone(1.5, 1.7, "e", "E")]
    track = speech_track(phones, 25, 75)
    close = track[:, 4]
    assert close[0] == 0 and close[-1] == 0  # before and after: the photo's own mouth
    assert (close[int(0.75 * 25) : int(1.45 * 25)] > 0.99).all()  # through the pause between words too
    assert np.all(np.diff(close[: int(0.6 * 25)]) >= 0)  # it closes smoothly, no jump


def _band_below(frame: np.ndarray, points: np.ndarray, start: float, end: float) -> np.ndarray:
    """The pixels from `start` to `end` (fractions of the mouth width) below the inner upper lip, across
    the middle half of the mouth."""
    upper = points[topo.LIPS_INNER_UPPER]
    left, right = upper[:, 0].min(), upper[:, 0].max()
    width = right - left
    xs = np.arange(int(left + 0.25 * width), int(right - 0.25 * width))
    order = np.argsort(upper[:, 0])
    top = np.interp(xs, upper[order, 0], upper[order, 1])
    columns = [frame[int(t + start * width) : int(t + end * width) + 1, x] for x, t in zip(xs, top, strict=True)]
    return np.concatenate(columns).reshape(-1, 3)


def test_a_photo_showing_its_teeth_keeps_them_when_the_mouth_opens(astronaut, astronaut_face) -> None:
    """The astronaut smiles with her teeth: opened, her own upper teeth hang from the upper lip (not a
    painted grey band), with the dark of the mouth below them."""
    renderer = Renderer(astronaut, astronaut_face)
    own_gap = topo.mouth_opening(astronaut_face.landmarks)
    own_teeth = _band_below(astronaut, astronaut_face.landmarks[:, :2], 0.02, 0.5 * own_gap).astype(float).mean(0)
    params = FaceParams(jaw_open=0.8)
    frame = renderer.render(params)
    targets, _ = renderer.rig.pose(params)
    teeth = _band_below(frame, targets, 0.02, 0.5 * own_gap).astype(float).mean(0)
    assert np.abs(teeth - own_teeth).max() < 20  # her teeth, in their colour
    opening = topo.mouth_opening(np.column_stack([targets, np.zeros(len(targets))]))
    middle = _band_below(frame, targets, 0.5 * opening - 0.02, 0.5 * opening + 0.02).astype(float).mean()
    assert opening > 2 * own_gap and middle < 0.5 * own_teeth.mean()  # the dark opens below them


def test_only_a_photo_with_parted_lips_has_teeth_of_its_own_to_keep(analyzer, astronaut, astronaut_face) -> None:
    from device.render.mouth import MouthPainter

    assert MouthPainter(astronaut, astronaut_face.landmarks).band is not None
    closed_photo = Renderer(astronaut, astronaut_face, close_mouth_at_rest=True).render(FaceParams())
    closed_face = analyzer.analyse(closed_photo, name="closed lips")
    assert MouthPainter(closed_photo, closed_face.landmarks).band is None  # the painter draws the teeth
