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
