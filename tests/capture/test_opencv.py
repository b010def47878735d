"""The OpenCV source, on what this machine has: a video file, and devices that are not there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device.capture import (
    CameraError,
    CameraNotFound,
    CameraUnsupported,
    FileCamera,
    OpenCVCamera,
    OpenCVCameraConfig,
    TransformedCamera,
    open_camera,
)
from device.capture.opencv import gstreamer_available, jetson_csi_pipeline


def test_reads_a_video_file_in_rgb_like_the_file_source(gray_video: Path, tmp_path: Path) -> None:
    from tests.capture.conftest import solid, write_video

    with OpenCVCamera(str(gray_video)) as camera:
        assert not camera.live  # a file ending is not a lost device
        levels = [None if (f := camera.read()) is None else int(f.mean()) for _ in range(6)]
    assert levels == [0, 40, 80, 120, 160, None]

    video = write_video(tmp_path / "rgb.avi", [np.concatenate([solid((255, 0, 0)), solid((0, 0, 255))], 1)])
    with OpenCVCamera(str(video)) as a, FileCamera(video) as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_config_applies_output_transform(gray_video: Path) -> None:
    camera = open_camera(OpenCVCameraConfig(device=str(gray_video), rotation=90, width=24))
    assert isinstance(camera, TransformedCamera)
    with camera:
        frame = camera.read()
    # 64x48 turned a quarter is 48x64; 24 wide keeps that shape: 32 high.
    assert frame is not None and frame.shape == (32, 24, 3)


def test_missing_device_path_is_a_clear_error() -> None:
    with pytest.raises(CameraNotFound, match=r"/dev/video99: no such device"):
        OpenCVCamera("/dev/video99").open()


def test_missing_index_is_a_clear_error() -> None:
    camera = OpenCVCamera("99")  # a digit string is an index, as on a command line
    assert camera.device == 99
    with pytest.raises(CameraError, match="no camera at this index"):
        camera.open()


def test_gstreamer_pipeline_is_recognised() -> None:
    pipeline = jetson_csi_pipeline(sensor_id=1, width=1920, height=1080, fps=30)
    camera = OpenCVCamera(pipeline)
    assert camera.gstreamer and camera.live and camera.name == "opencv:gstreamer"
    assert "sensor-id=1" in pipeline and pipeline.rstrip().endswith("max-buffers=1")


@pytest.mark.skipif(gstreamer_available(), reason="this OpenCV can open pipelines")
def test_gstreamer_without_support_says_what_to_do() -> None:
    with pytest.raises(CameraUnsupported, match="no GStreamer support"):
        OpenCVCamera(jetson_csi_pipeline()).open()
