"""Camera config: the `type` picks the source model; unknown keys and bad values are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from device.capture import (
    CameraConfig,
    FileCameraConfig,
    OpenCVCameraConfig,
    Picamera2CameraConfig,
)

adapter: TypeAdapter[CameraConfig] = TypeAdapter(CameraConfig)


def test_type_picks_the_model() -> None:
    assert isinstance(adapter.validate_python({"type": "file", "path": "a.jpg"}), FileCameraConfig)
    opencv = adapter.validate_python({"type": "opencv", "device": "/dev/video0", "fourcc": "MJPG"})
    assert isinstance(opencv, OpenCVCameraConfig) and opencv.device == "/dev/video0"
    assert adapter.validate_python({"type": "opencv", "device": 2}).device == 2  # type: ignore[union-attr]
    pi = adapter.validate_python({"type": "picamera2", "rotation": 180, "mirror": True})
    assert isinstance(pi, Picamera2CameraConfig) and pi.rotation == 180 and pi.mirror


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"type": "webcam"}, "type"),
        ({"type": "file", "path": "a.jpg", "camera_num": 0}, "camera_num"),  # another source's field
        ({"type": "file", "path": "a.jpg", "rotation": 45}, "rotation"),
        ({"type": "file", "path": "a.jpg", "width": 0}, "width"),
        ({"type": "file", "path": "a.jpg", "fps": -1}, "fps"),
        ({"type": "opencv", "fourcc": "MJPEG"}, "fourcc"),
        ({"type": "picamera2", "capture_width": 640}, "capture_width"),
        ({"type": "file"}, "path"),
    ],
)
def test_bad_values_are_refused_naming_the_field(data: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        adapter.validate_python(data)
    assert field in str(info.value)


@pytest.mark.parametrize("model", [FileCameraConfig, OpenCVCameraConfig, Picamera2CameraConfig])
def test_every_field_is_described(model: type[BaseModel]) -> None:
    missing = [name for name, field in model.model_fields.items() if not field.description]
    assert missing == []


def test_round_trips_through_json() -> None:
    config = FileCameraConfig(path=Path("/srv/photos"), fps=25, rotation=90, width=720, height=1280)
    assert adapter.validate_json(config.model_dump_json()) == config
