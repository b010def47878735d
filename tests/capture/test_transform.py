"""Rotation, mirroring and output size, checked pixel by pixel on small asymmetric images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device.capture import FileCameraConfig, TransformedCamera, open_camera, transform_frame
from device.errors import BadInput
from tests.capture.conftest import write_photo

# 2 rows x 3 columns, every pixel different: any wrong turn or flip shows.
GRID = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
@pytest.mark.parametrize("mirror", [False, True])
def test_rotation_is_clockwise_and_mirror_follows_it(rotation: int, mirror: bool) -> None:
    expected = np.rot90(GRID, k=-rotation // 90)  # np.rot90 turns counter-clockwise for positive k
    if mirror:
        expected = expected[:, ::-1]
    out = transform_frame(GRID, rotation, mirror)
    assert out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, expected)


def test_rotate_90_moves_top_left_to_top_right() -> None:
    out = transform_frame(GRID, 90)
    assert out.shape == (3, 2, 3)
    np.testing.assert_array_equal(out[0, -1], GRID[0, 0])
    np.testing.assert_array_equal(out[-1, -1], GRID[0, -1])


def _thirds() -> np.ndarray:
    """200 wide x 100 high: blue, green, red thirds (left to right)."""
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :66] = (0, 0, 255)
    image[:, 66:134] = (0, 255, 0)
    image[:, 134:] = (255, 0, 0)
    return image


def test_crop_keeps_the_centre_at_the_target_aspect() -> None:
    out = transform_frame(_thirds(), width=50, height=50, fit="crop")
    assert out.shape == (50, 50, 3)
    # The centred square window of a 2:1 image is the middle half: green, with a strip of each
    # neighbour at the edges (columns 50..150 of 200).
    assert (out[:, 10:40] == (0, 255, 0)).all()
    assert out[:, 0, 2].mean() > 200 and out[:, -1, 0].mean() > 200


def test_pad_keeps_everything_with_black_bars() -> None:
    out = transform_frame(_thirds(), width=100, height=100, fit="pad")
    assert out.shape == (100, 100, 3)
    assert (out[:25] == 0).all() and (out[75:] == 0).all()
    assert out[50, 5, 2] == 255 and out[50, 50, 1] == 255 and out[50, 95, 0] == 255


def test_stretch_and_single_side_sizes() -> None:
    assert transform_frame(_thirds(), width=40, height=80, fit="stretch").shape == (80, 40, 3)
    # One side given: the other follows the aspect ratio.
    assert transform_frame(_thirds(), width=100).shape == (50, 100, 3)
    assert transform_frame(_thirds(), height=30).shape == (30, 60, 3)
    # Rotation comes before sizing: the size is that of the output.
    assert transform_frame(_thirds(), 90, width=50).shape == (100, 50, 3)


def test_open_camera_applies_the_config_to_a_file_source(tmp_path: Path, astronaut: np.ndarray) -> None:
    photo = write_photo(tmp_path / "a.png", astronaut[:, :400])  # 512 high x 400 wide
    config = FileCameraConfig(path=photo, rotation=270, mirror=True, width=256, height=200)
    camera = open_camera(config)
    assert isinstance(camera, TransformedCamera)
    with camera:
        frame = camera.read()
    assert frame is not None and frame.dtype == np.uint8 and frame.shape == (200, 256, 3)
    # Same aspect after rotation (400x512 -> 512x400 ~ 256x200): no crop, only a shrink.
    # 270 degrees clockwise is a quarter turn counter-clockwise (np.rot90 k=1), then the mirror.
    expected = np.ascontiguousarray(np.rot90(astronaut[:, :400], k=1)[:, ::-1])
    small = transform_frame(expected, width=256, height=200)
    np.testing.assert_array_equal(frame, small)


def test_identity_config_returns_the_bare_source(astronaut_png: Path) -> None:
    camera = open_camera(FileCameraConfig(path=astronaut_png))
    assert not isinstance(camera, TransformedCamera)


def test_bad_rotation_is_refused() -> None:
    with pytest.raises(BadInput, match="45"):
        TransformedCamera(open_camera(FileCameraConfig(path=Path("x.png"))), rotation=45)
