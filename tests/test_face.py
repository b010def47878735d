"""Face analysis on real photos and the photos users actually send: rotated by EXIF, grey, with
alpha, 16-bit, tiny, huge, two faces, no face, cut faces, and files that are not images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from device.errors import BadInput
from device.face import topology as topo
from device.face.photo import load_photo
from tests.conftest import run_cli, save_rgb

# Where the astronaut's features are (pixels, 512x512 image): checked by eye once, generous bounds.
EYES_Y = (95, 115)
MOUTH_Y = (135, 160)
FACE_X = (170, 285)


def assert_on_astronaut_face(landmarks: np.ndarray, scale: float = 1.0, shift=(0.0, 0.0)) -> None:
    points = (landmarks[:, :2] - np.array(shift)) / scale
    eyes = points[[*topo.EYE_CENTRE_RIGHT, *topo.EYE_CENTRE_LEFT], 1]
    mouth = points[[topo.UPPER_INNER_MID, topo.LOWER_INNER_MID], 1]
    assert EYES_Y[0] < eyes.mean() < EYES_Y[1]
    assert MOUTH_Y[0] < mouth.mean() < MOUTH_Y[1]
    assert FACE_X[0] < points[:, 0].min() and points[:, 0].max() < FACE_X[1]
    # Right eye (subject's) on the image's left.
    assert points[topo.EYE_CENTRE_RIGHT[0], 0] < points[topo.EYE_CENTRE_LEFT[0], 0]


def test_astronaut_landmarks_land_on_the_face(astronaut_face) -> None:
    assert astronaut_face.landmarks.shape == (468, 3)
    assert_on_astronaut_face(astronaut_face.landmarks)


def test_iris_centres_sit_inside_the_eyes(astronaut_face) -> None:
    landmarks = astronaut_face.landmarks
    for side, corners in ((0, topo.EYE_CENTRE_RIGHT), (1, topo.EYE_CENTRE_LEFT)):
        a, b = landmarks[corners[0], :2], landmarks[corners[1], :2]
        centre = astronaut_face.iris[side, 0]
        low, high = np.minimum(a, b), np.maximum(a, b)
        assert low[0] < centre[0] < high[0]
        assert abs(centre[1] - (a[1] + b[1]) / 2) < 0.3 * np.linalg.norm(b - a)


def test_exif_rotation_is_honoured(tmp_path, astronaut, analyzer, astronaut_face) -> None:
    # Stored turned a quarter, with EXIF orientation 6 telling viewers to turn it back clockwise.
    stored = np.ascontiguousarray(np.rot90(astronaut, 1))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save_rgb(tmp_path / "rotated.jpg", stored, exif=exif, quality=95)
    photo = load_photo(path)
    assert photo.shape == astronaut.shape
    assert np.abs(photo.astype(int) - astronaut.astype(int)).mean() < 6
    face = analyzer.analyse(photo, name=str(path))
    assert np.abs(face.landmarks[:, :2] - astronaut_face.landmarks[:, :2]).mean() < 3


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16"])
def test_other_pixel_formats_become_rgb(tmp_path, astronaut, analyzer, mode) -> None:
    image = Image.fromarray(astronaut)
    if mode == "I;16":
        grey = np.asarray(image.convert("L"), dtype=np.uint16) * 257
        image = Image.fromarray(grey)
    else:
        image = image.convert(mode)
    path = tmp_path / f"photo-{mode.replace(';', '')}.png"
    image.save(path)
    photo = load_photo(path)
    assert photo.dtype == np.uint8 and photo.shape == (512, 512, 3)
    assert_on_astronaut_face(analyzer.analyse(photo, name=str(path)).landmarks)


def test_transparent_background_goes_on_white(tmp_path, astronaut) -> None:
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    rgba[:40, :40, 3] = 0
    path = save_rgb(tmp_path / "alpha.png", rgba)
    photo = load_photo(path)
    assert (photo[:40, :40] == 255).all()
    assert np.array_equal(photo[100:200, 100:200], astronaut[100:200, 100:200])


def test_webp_is_read(tmp_path, astronaut, analyzer) -> None:
    path = save_rgb(tmp_path / "photo.webp", astronaut, quality=90)
    assert_on_astronaut_face(analyzer.analyse(load_photo(path)).landmarks)


def test_small_photo_with_a_big_enough_face(astronaut, analyzer) -> None:
    small = cv2.resize(astronaut, (360, 360), interpolation=cv2.INTER_AREA)
    face = analyzer.analyse(small)
    assert_on_astronaut_face(face.landmarks, scale=360 / 512)


def test_huge_photo_is_detected_downscaled_and_measured_at_full_resolution(astronaut, analyzer) -> None:
    huge = cv2.resize(astronaut, (5120, 5120), interpolation=cv2.INTER_CUBIC)
    face = analyzer.analyse(huge)
    assert_on_astronaut_face(face.landmarks, scale=10.0)


def test_two_faces_largest_first_and_choosable(astronaut, analyzer) -> None:
    smaller = cv2.resize(astronaut, (384, 384), interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 512 + 384, 3), 200, np.uint8)
    canvas[:, :512] = astronaut
    canvas[64 : 64 + 384, 512:] = smaller
    assert len(analyzer.detect(canvas)) == 2
    first = analyzer.analyse(canvas, face=0)
    second = analyzer.analyse(canvas, face=1)
    assert first.landmarks[:, 0].max() < 512
    assert second.landmarks[:, 0].min() > 512
    assert_on_astronaut_face(second.landmarks, scale=384 / 512, shift=(512, 64))
    with pytest.raises(BadInput, match="face 3 requested but the photo has 2"):
        analyzer.analyse(canvas, face=2)


def test_no_face(analyzer) -> None:
    from skimage import data

    with pytest.raises(BadInput, match=r"coffee\.png: no face found"):
        analyzer.analyse(data.coffee(), name="coffee.png")


def test_face_too_small(astronaut, analyzer) -> None:
    tiny = cv2.resize(astronaut, (200, 200), interpolation=cv2.INTER_AREA)
    with pytest.raises(BadInput, match="too small"):
        analyzer.analyse(tiny, name="tiny.png")


def test_face_cut_by_the_edge(astronaut, analyzer) -> None:
    cut = np.ascontiguousarray(astronaut[:, 215:])
    with pytest.raises(BadInput, match="cut by the edge"):
        analyzer.analyse(cut, name="cut.png")


def test_files_that_are_not_photos(tmp_path, astronaut) -> None:
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    with pytest.raises(BadInput, match=r"notes\.png: not a readable image"):
        load_photo(text)
    good = save_rgb(tmp_path / "good.jpg", astronaut)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(BadInput, match=r"truncated\.jpg"):
        load_photo(truncated)
    with pytest.raises(BadInput, match=r"missing\.jpg: no such file"):
        load_photo(tmp_path / "missing.jpg")
    with pytest.raises(BadInput, match="is a folder"):
        load_photo(tmp_path)


def test_cli_bad_photo_exits_2_naming_the_file(tmp_path) -> None:
    from skimage import data

    path = save_rgb(tmp_path / "coffee.jpg", data.coffee())
    result = run_cli("animate", str(path), "--seconds", "1", "--out", str(tmp_path / "out.mp4"))
    assert result.returncode == 2
    assert "coffee.jpg: no face found" in result.stderr
    assert not (tmp_path / "out.mp4").exists()
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\x00\x01 not a jpeg")
    result = run_cli("animate", str(garbage), "--out", str(tmp_path / "out.mp4"))
    assert result.returncode == 2 and "garbage.jpg" in result.stderr


def test_one_analyzer_shared_by_two_threads_gives_each_its_own_faces(analyzer, astronaut) -> None:
    """The daemon's live preview detects faces while a job analyses its photo, on one analyzer."""
    from concurrent.futures import ThreadPoolExecutor

    images = [astronaut, np.ascontiguousarray(astronaut[:, ::-1])]
    alone = [analyzer.detect(image)[0].box for image in images]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda i: (i % 2, analyzer.detect(images[i % 2])[0].box), range(40)))
    for which, box in together:
        assert np.array_equal(box, alone[which]), which
