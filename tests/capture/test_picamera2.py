"""The Picamera2 adapter against a stand-in that behaves like picamera2.Picamera2."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import device.capture.picamera2 as picamera2_module
from device.capture import (
    CameraError,
    CameraUnsupported,
    Picamera2Camera,
    Picamera2CameraConfig,
    open_camera,
)
from tests.capture.conftest import StandInPicamera2


def test_configures_rgb888_at_the_size_and_returns_rgb(
    picamera2_class: type[StandInPicamera2], astronaut: np.ndarray
) -> None:
    with Picamera2Camera(1, size=(320, 240), picamera2_class=picamera2_class) as camera:
        frame = camera.read()
        (cam,) = picamera2_class.instances
        assert cam.camera_num == 1
        assert cam.config is not None and cam.config["use_case"] == "video"
        assert cam.config["main"]["size"] == (320, 240) and cam.config["main"]["format"] == "RGB888"
        assert cam.calls[:3] == ["create_video_configuration", "configure", "start"]
    assert frame is not None and frame.shape == (240, 320, 3) and frame.dtype == np.uint8
    # The bytes in memory were B, G, R: the adapter must hand back the scene in RGB.
    expected = cv2.resize(astronaut, (320, 240), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(frame, expected)
    assert frame[..., 0].mean() > frame[..., 2].mean()  # the astronaut's suit and flag: more red than blue


def test_close_stops_then_closes(picamera2_class: type[StandInPicamera2]) -> None:
    camera = Picamera2Camera(picamera2_class=picamera2_class)
    camera.open()
    camera.read()
    camera.close()
    camera.close()  # twice is harmless
    (cam,) = picamera2_class.instances
    assert cam.calls[-2:] == ["stop", "close"] and cam.closed
    assert cam.calls.count("close") == 1


def test_still_configuration_and_frame_rate(picamera2_class: type[StandInPicamera2]) -> None:
    with Picamera2Camera(configuration="still", fps=15, picamera2_class=picamera2_class) as camera:
        frame = camera.read()
    (cam,) = picamera2_class.instances
    assert cam.config is not None and cam.config["use_case"] == "still"
    assert cam.config["controls"] == {"FrameRate": 15}
    # No size asked for: the camera's own default stands.
    assert frame is not None and frame.shape == (1088, 1456, 3)


def test_config_asks_the_sensor_for_the_unrotated_size(picamera2_class: type[StandInPicamera2]) -> None:
    config = Picamera2CameraConfig(rotation=90, width=240, height=320)
    with open_camera(config, picamera2_class=picamera2_class) as camera:
        frame = camera.read()
    (cam,) = picamera2_class.instances
    assert cam.config is not None and cam.config["main"]["size"] == (320, 240)  # landscape sensor
    assert frame is not None and frame.shape == (320, 240, 3)  # portrait output


def test_explicit_capture_size_wins(picamera2_class: type[StandInPicamera2]) -> None:
    config = Picamera2CameraConfig(capture_width=1280, capture_height=960, width=256, height=256)
    with open_camera(config, picamera2_class=picamera2_class) as camera:
        frame = camera.read()
    assert picamera2_class.instances[0].config["main"]["size"] == (1280, 960)  # type: ignore[index]
    assert frame is not None and frame.shape == (256, 256, 3)


def test_module_attribute_injection(picamera2_class: type[StandInPicamera2], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(picamera2_module, "Picamera2Class", picamera2_class)
    with Picamera2Camera() as camera:
        assert camera.read() is not None
    assert len(picamera2_class.instances) == 1


def test_absent_camera_and_failed_capture_are_camera_errors(picamera2_class: type[StandInPicamera2]) -> None:
    picamera2_class.fail_open = 1
    camera = Picamera2Camera(picamera2_class=picamera2_class)
    with pytest.raises(CameraError, match="cannot open"):
        camera.open()
    camera.open()
    picamera2_class.fail_capture = True
    with pytest.raises(CameraError, match="capture failed"):
        camera.read()
    camera.close()
    assert picamera2_class.instances[0].closed


def test_a_camera_that_fails_to_start_is_released(picamera2_class: type[StandInPicamera2]) -> None:
    class NoStart(picamera2_class):  # type: ignore[misc, valid-type]
        def start(self) -> None:
            raise RuntimeError("Failed to start camera: Device or resource busy")

    with pytest.raises(CameraError, match="cannot start"):
        Picamera2Camera(picamera2_class=NoStart).open()
    (cam,) = picamera2_class.instances
    assert cam.closed  # left claimed, the next open would fail with "busy"


def test_without_picamera2_installed_the_error_says_how_to_get_it() -> None:
    try:
        import picamera2  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("picamera2 is installed here")
    with pytest.raises(CameraUnsupported, match="apt install python3-picamera2"):
        Picamera2Camera().open()
