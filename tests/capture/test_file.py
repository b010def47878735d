"""The file source: a photo, a sorted folder, a video; looping, the end of a stream, pacing, errors."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from device.capture import CameraError, CameraNotFound, FileCamera, FileCameraConfig, open_camera
from tests.capture.conftest import solid, write_photo

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def test_photo_gives_the_photo_in_rgb_every_read(astronaut_png: Path, astronaut: np.ndarray) -> None:
    with FileCamera(astronaut_png) as camera:
        first, second = camera.read(), camera.read()
    assert first is not None and second is not None
    np.testing.assert_array_equal(first, astronaut)  # PNG is lossless and the channels are RGB
    first[:] = 0  # a caller drawing on its frame does not change the next one
    np.testing.assert_array_equal(second, astronaut)


def test_photo_without_loop_is_one_frame(astronaut_png: Path) -> None:
    with FileCamera(astronaut_png, loop=False) as camera:
        assert camera.read() is not None
        assert camera.read() is None
        assert camera.read() is None


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    photos = tmp_path / "photos"
    photos.mkdir()
    # Written out of order, with a file that is not a photo among them.
    write_photo(photos / "b.png", solid(GREEN))
    write_photo(photos / "c.png", solid(BLUE))
    write_photo(photos / "a.png", solid(RED))
    (photos / "notes.txt").write_text("not a photo")
    return photos


def _colour(frame: np.ndarray | None) -> tuple[int, ...] | None:
    return None if frame is None else tuple(int(v) for v in frame[0, 0])


def test_folder_is_read_in_name_order_and_loops(folder: Path) -> None:
    with FileCamera(folder) as camera:
        colours = [_colour(camera.read()) for _ in range(5)]
    assert colours == [RED, GREEN, BLUE, RED, GREEN]


def test_folder_without_loop_ends(folder: Path) -> None:
    with FileCamera(folder, loop=False) as camera:
        colours = [_colour(camera.read()) for _ in range(4)]
    assert colours == [RED, GREEN, BLUE, None]


def test_photos_added_to_the_folder_join_the_next_pass(folder: Path) -> None:
    with FileCamera(folder) as camera:
        assert [_colour(camera.read()) for _ in range(3)] == [RED, GREEN, BLUE]
        write_photo(folder / "d.png", solid((7, 8, 9)))
        assert [_colour(camera.read()) for _ in range(4)] == [RED, GREEN, BLUE, (7, 8, 9)]


def test_video_frames_in_order_then_loop(gray_video: Path) -> None:
    with FileCamera(gray_video) as camera:
        levels = [int(camera.read().mean()) for _ in range(7)]  # type: ignore[union-attr]
    assert levels == [0, 40, 80, 120, 160, 0, 40]


def test_video_without_loop_ends(gray_video: Path) -> None:
    with FileCamera(gray_video, loop=False) as camera:
        frames = [camera.read() for _ in range(6)]
    assert all(f is not None and f.shape == (48, 64, 3) for f in frames[:5])
    assert frames[5] is None


def test_video_colours_come_out_rgb(tmp_path: Path) -> None:
    from tests.capture.conftest import write_video

    frame = np.concatenate([solid(RED, (8, 8)), solid(BLUE, (8, 8))], axis=1)
    with FileCamera(write_video(tmp_path / "rb.avi", [frame])) as camera:
        got = camera.read()
    assert got is not None
    assert _colour(got) == RED and tuple(int(v) for v in got[0, -1]) == BLUE


def test_fps_paces_reads_like_a_camera(astronaut_png: Path) -> None:
    with FileCamera(astronaut_png, fps=50) as camera:
        start = time.monotonic()
        for _ in range(11):
            camera.read()
        elapsed = time.monotonic() - start
    # 11 frames at 50 fps: the first at once, then 10 periods of 20 ms.
    assert 0.19 <= elapsed < 0.6


def test_a_late_reader_gets_no_burst_of_catch_up_frames(astronaut_png: Path) -> None:
    with FileCamera(astronaut_png, fps=20) as camera:
        camera.read()
        time.sleep(0.2)  # four periods late
        start = time.monotonic()
        camera.read()  # due long ago: at once
        camera.read()  # then a full period later
        elapsed = time.monotonic() - start
    assert 0.045 <= elapsed < 0.3


def test_config_reaches_the_file_source(folder: Path) -> None:
    camera = open_camera(FileCameraConfig(path=folder, loop=False, fps=1000))
    assert isinstance(camera, FileCamera) and camera.loop is False and camera.fps == 1000
    assert not camera.live


def test_missing_path_is_a_bad_input_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.jpg"
    with pytest.raises(CameraNotFound, match=r"nowhere\.jpg") as info:
        FileCamera(missing).open()
    assert info.value.exit_code == 2


def test_empty_folder_and_unreadable_file_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CameraNotFound, match="no photos"):
        FileCamera(tmp_path / "empty").open()
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01 not media")
    with pytest.raises(CameraError, match="neither a photo nor a video"):
        FileCamera(junk).open()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(CameraError, match="not a photo"):
        FileCamera(broken).open()


def test_read_before_open_and_reopen_after_close(astronaut_png: Path) -> None:
    camera = FileCamera(astronaut_png, loop=False)
    with pytest.raises(CameraError, match="not open"):
        camera.read()
    with camera:
        assert camera.read() is not None
        assert camera.read() is None
    camera.close()  # twice is fine
    with camera:  # a reopened camera starts from the beginning
        assert camera.read() is not None
