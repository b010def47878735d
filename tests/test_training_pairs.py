"""The generator's self-supervised pairs: the real photo is the ground truth except inside its own mouth
opening, where the device paints the interior (the generator must not learn to invent teeth)."""

from __future__ import annotations

import numpy as np

from device.motion.params import FaceParams
from device.render.renderer import mouth_interior
from device.runtime import crop as cropping
from models import data


def test_mouth_interior_target_is_the_paint_and_the_rest_is_the_photo(astronaut, astronaut_face) -> None:
    sample = data.round_trip(astronaut, astronaut_face, FaceParams(jaw_open=0.6, blink_left=0.5), 256)
    home = astronaut_face.landmarks[:, :2]
    matrix = cropping.align_matrix(home, 256)
    inside = cropping.extract(mouth_interior(home, astronaut.shape) * 255, matrix, 256) > 127
    assert inside.sum() > 100  # the astronaut smiles with her teeth showing
    assert np.array_equal(sample.target[inside], sample.warped[inside])
    photo = cropping.extract(astronaut, matrix, 256)
    assert np.array_equal(sample.target[~inside], photo[~inside])
    assert not np.array_equal(photo[inside], sample.warped[inside])  # her teeth were not the ground truth
