"""Camera configuration: one pydantic model per source, told apart by `type`.

A daemon config holds a `camera:` table; `type` picks the source and the rest is validated against
that source's model, so a typo or a field of another source is an error, not silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Rotation = Literal[0, 90, 180, 270]


class _CommonCameraConfig(BaseModel):
    """What every source shares: how its frames are turned into the frames the appliance sees."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rotation: Rotation = Field(
        0, description="Rotate every frame clockwise by this many degrees (a camera mounted sideways)."
    )
    mirror: bool = Field(
        False, description="Flip every frame left to right, after rotation (a selfie view for a kiosk)."
    )
    width: int | None = Field(
        None,
        gt=0,
        description="Width of the output frames in pixels, after rotation. Unset: as the source gives "
        "them (or in proportion to `height` when only that is set).",
    )
    height: int | None = Field(
        None,
        gt=0,
        description="Height of the output frames in pixels, after rotation. Unset: as the source gives "
        "them (or in proportion to `width` when only that is set).",
    )
    fit: Literal["crop", "pad", "stretch"] = Field(
        "crop",
        description="When both width and height are set and the source's aspect ratio differs: 'crop' "
        "the centre (faces keep their shape), 'pad' with black bars, or 'stretch'.",
    )


class FileCameraConfig(_CommonCameraConfig):
    """Frames from a photo, a folder of photos or a video file: tests and devices without a camera."""

    type: Literal["file"] = Field("file", description="Source kind: frames read from files.")
    path: Path = Field(description="A photo, a folder of photos (read in name order), or a video file.")
    loop: bool = Field(True, description="Start again from the first frame at the end; otherwise read() returns None.")
    fps: float | None = Field(
        None,
        gt=0,
        description="Pace reads to this many frames per second, like a real camera. Unset: as fast "
        "as the caller reads.",
    )


class OpenCVCameraConfig(_CommonCameraConfig):
    """A camera OpenCV opens: a V4L2 device (USB webcam) or a GStreamer pipeline (Jetson CSI camera)."""

    type: Literal["opencv"] = Field("opencv", description="Source kind: cv2.VideoCapture.")
    device: int | str = Field(
        0,
        description="A camera index (0), a device path ('/dev/video0'), or a GStreamer pipeline "
        "ending in appsink (any string containing '!'; needs an OpenCV built with GStreamer).",
    )
    capture_width: int | None = Field(
        None, gt=0, description="Width to ask the camera for. Unset: the output size, else its default."
    )
    capture_height: int | None = Field(
        None, gt=0, description="Height to ask the camera for. Unset: the output size, else its default."
    )
    fps: float | None = Field(None, gt=0, description="Frame rate to ask the camera for. Unset: its default.")
    fourcc: str | None = Field(
        None,
        min_length=4,
        max_length=4,
        description="Pixel format to ask a V4L2 camera for, e.g. 'MJPG' (USB webcams give high "
        "resolutions at full rate only in MJPG).",
    )


class Picamera2CameraConfig(_CommonCameraConfig):
    """A Raspberry Pi camera through libcamera's picamera2 (a Pi OS package)."""

    type: Literal["picamera2"] = Field("picamera2", description="Source kind: Raspberry Pi camera.")
    camera_num: int = Field(0, ge=0, description="Which camera, for boards with more than one (Pi 5).")
    capture_width: int | None = Field(
        None,
        gt=0,
        description="Width to configure the camera with. Unset: the output size, else its default.",
    )
    capture_height: int | None = Field(
        None,
        gt=0,
        description="Height to configure the camera with. Unset: the output size, else its default.",
    )
    configuration: Literal["video", "still"] = Field(
        "video",
        description="'video': a steady frame stream (mirror mode, visitor detection); 'still': "
        "slower, higher-quality frames (capture and animate).",
    )
    fps: float | None = Field(None, gt=0, description="Frame rate to ask the camera for. Unset: its default.")

    @model_validator(mode="after")
    def _both_or_neither(self) -> Picamera2CameraConfig:
        # Picamera2 takes a (w, h) pair; half of one is a mistake worth naming.
        if (self.capture_width is None) != (self.capture_height is None):
            raise ValueError("capture_width and capture_height must be set together")
        return self


CameraConfig = Annotated[FileCameraConfig | OpenCVCameraConfig | Picamera2CameraConfig, Field(discriminator="type")]
