"""One set of rig parameters per rendered frame: what every motion driver produces."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np


@dataclass
class FaceParams:
    """Rig parameters for one frame. Zero everywhere is the source photo unchanged.

    Mouth values come from the speech drivers (visemes), the rest from idle motion, gaze and
    driving video. Ranges are clamped by the rig, so drivers may add contributions freely.
    """

    jaw_open: float = 0.0  # 0 closed .. 1 wide open ("aa")
    lip_round: float = 0.0  # 0 .. 1 pucker ("oo", "w")
    lip_wide: float = 0.0  # 0 .. 1 spread ("ee")
    lip_press: float = 0.0  # 0 .. 1 lips pressed together (m, b, p)
    smile: float = 0.0  # -1 (frown) .. 1 (smile)
    blink_left: float = 0.0  # 0 open .. 1 closed; the subject's left eye (image right)
    blink_right: float = 0.0
    brow_raise: float = 0.0  # -1 (frown) .. 1 (raised)
    head_yaw: float = 0.0  # degrees, positive turns toward image right
    head_pitch: float = 0.0  # degrees, positive looks down
    head_roll: float = 0.0  # degrees, positive tilts clockwise in the image
    gaze_x: float = 0.0  # -1 .. 1, positive looks toward image right
    gaze_y: float = 0.0  # -1 .. 1, positive looks down
    head_x: float = 0.0  # head shift, in eye distances; positive toward image right
    head_y: float = 0.0  # positive down
    # 0 .. 1: the lips brought together from the photo's own rest (a smile with teeth) while speaking;
    # the smile itself stays, and at 0 the photo's own mouth comes back.
    mouth_close: float = 0.0
    # The head's change of size in the picture: 0.1 is 10 % larger (leaning in, a camera zooming in).
    head_scale: float = 0.0

    def as_array(self) -> np.ndarray:
        return np.array([getattr(self, f.name) for f in fields(self)], dtype=np.float32)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_array(cls, values: np.ndarray) -> FaceParams:
        return cls(**{name: float(v) for name, v in zip(cls.names(), values, strict=True)})


MOUTH_CHANNELS = ("jaw_open", "lip_round", "lip_wide", "lip_press")
# Speech tracks carry these too: the mouth shapes, then how closed the photo's rest mouth is held.
SPEECH_CHANNELS = (*MOUTH_CHANNELS, "mouth_close")
