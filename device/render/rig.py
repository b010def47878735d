"""The parametric face rig: FaceParams -> where every landmark (and the irises) should be.

All moves are made in a face frame (origin between the eyes, x along the eye line, unit = the
distance between the eye centres), so the same numbers fit any photo, face size and tilt.
"""

from __future__ import annotations

import numpy as np

from device.face import topology as topo
from device.motion.params import FaceParams

LID_CREASE_RIGHT = [247, 30, 29, 27, 28, 56, 190]
LID_CREASE_LEFT = [467, 260, 259, 257, 258, 286, 414]
FOREHEAD = [10, 338, 297, 332, 109, 67, 103, 151, 108, 69, 337, 299]

# Ranges the rig clamps to: small, realistic head motion.
MAX_YAW, MAX_PITCH, MAX_ROLL = 12.0, 10.0, 8.0
MAX_SHIFT = 0.6  # head shift, in eye distances
MAX_SCALE = 0.25  # change of the head's size in the picture, relative
HEAD_PIVOT = np.array([0.0, 0.9, 1.1])  # behind and below the eyes, near the top of the neck

# How far a fully closed eye's lids stay apart, relative to the open gap: a line of lashes.
CLOSED_EYE_GAP = 0.03


def _unique(*groups: list[int]) -> list[int]:
    seen: dict[int, None] = {}
    for group in groups:
        for index in group:
            seen.setdefault(index, None)
    return list(seen)


UPPER_LIP = _unique(topo.LIPS_INNER_UPPER[1:-1], topo.LIPS_OUTER_UPPER[1:-1])
LOWER_LIP = _unique(topo.LIPS_INNER_LOWER[1:-1], topo.LIPS_OUTER_LOWER[1:-1])
LIP_CORNERS = [78, 308, 61, 291]
ALL_LIPS = _unique(UPPER_LIP, LOWER_LIP, LIP_CORNERS)
RIGHT_EYE = _unique(topo.RIGHT_EYE_UPPER, topo.RIGHT_EYE_LOWER)
LEFT_EYE = _unique(topo.LEFT_EYE_UPPER, topo.LEFT_EYE_LOWER)
# The lids and their creases: the rig's own (a blink closes them fully), never a performer's shape.
EYE_POINTS = _unique(RIGHT_EYE, LEFT_EYE, LID_CREASE_RIGHT, LID_CREASE_LEFT)

# The landmarks that steer the warp: enough to pin every feature, few enough to fit fast.
CONTROL = _unique(
    ALL_LIPS, RIGHT_EYE, LEFT_EYE, LID_CREASE_RIGHT, LID_CREASE_LEFT, topo.RIGHT_BROW, topo.LEFT_BROW,
    topo.FACE_OVAL, topo.NOSE, topo.CHEEKS, topo.CHIN, FOREHEAD,
)  # fmt: skip


def head_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The rig's head rotation (radians) as a 3x3 matrix on column vectors in (x right, y down, z away
    from the camera): roll after yaw after pitch."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    yaw_m = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    pitch_m = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    roll_m = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return roll_m @ yaw_m @ pitch_m


def jaw_weight(local: np.ndarray) -> np.ndarray:
    """How much each landmark of a face (468x2+, the rig's local frame) follows the lower jaw: 1 on the
    lower lip, 0 on the upper, below the mouth fading toward the ears."""
    x, y = local[:, 0], local[:, 1]
    corners = local[list(topo.INNER_CORNERS), :2]
    centre_x, mouth_y = corners.mean(0)
    below = np.clip((y - (mouth_y - 0.05)) / 0.35, 0.0, 1.0)
    across = np.exp(-((x - centre_x) ** 2) / (2 * 0.75**2))
    weight = below * across
    weight[LOWER_LIP] = 1.0
    weight[UPPER_LIP] = 0.0
    weight[LIP_CORNERS] = 0.35
    return weight


def mouth_weight(local: np.ndarray) -> np.ndarray:
    """The mouth and what moves with it (lips, chin, the cheeks below the mouth corners): 1 on the lips."""
    weight = jaw_weight(local)
    weight[ALL_LIPS] = 1.0
    return weight


class FaceRig:
    def __init__(self, landmarks: np.ndarray, iris: np.ndarray | None, close_mouth_at_rest: bool) -> None:
        points = landmarks.astype(np.float64)
        right_eye = points[list(topo.EYE_CENTRE_RIGHT), :2].mean(0)
        left_eye = points[list(topo.EYE_CENTRE_LEFT), :2].mean(0)
        self.origin = (right_eye + left_eye) / 2.0
        axis = left_eye - right_eye
        self.unit = float(np.linalg.norm(axis))
        self.axis_x = axis / self.unit
        self.axis_y = np.array([-self.axis_x[1], self.axis_x[0]])
        self.local = np.column_stack([self.to_local(points[:, :2]), points[:, 2] / self.unit])
        self.iris_local = None if iris is None else self.to_local(iris.reshape(-1, 2)).reshape(2, 5, 2)
        self.close_mouth_at_rest = close_mouth_at_rest
        self._prepare_mouth()
        self._prepare_weights()

    # --- frames -------------------------------------------------------------------------------
    def to_local(self, xy: np.ndarray) -> np.ndarray:
        centred = xy - self.origin
        return np.column_stack([centred @ self.axis_x, centred @ self.axis_y]) / self.unit

    def to_image(self, local_xy: np.ndarray) -> np.ndarray:
        return self.origin + self.unit * (local_xy[..., :1] * self.axis_x + local_xy[..., 1:2] * self.axis_y)

    # --- set-up ---------------------------------------------------------------------------------
    def _prepare_mouth(self) -> None:
        local = self.local
        self.inner_upper = np.array(topo.LIPS_INNER_UPPER)
        self.inner_lower = np.array(topo.LIPS_INNER_LOWER)
        self.outer_upper = np.array(topo.LIPS_OUTER_UPPER)
        self.outer_lower = np.array(topo.LIPS_OUTER_LOWER)
        corners = local[list(topo.INNER_CORNERS), :2]
        self.mouth_centre = corners.mean(0)
        self.mouth_width = float(np.linalg.norm(corners[1] - corners[0]))
        offset = (local[self.inner_upper, 0] - self.mouth_centre[0]) / (self.mouth_width / 2.0)
        # An opening mouth is widest in the middle and pinched at the corners.
        self.profile = np.sqrt(np.clip(1.0 - offset**2, 0.0, 1.0))
        self.rest_gap = local[self.inner_lower, 1] - local[self.inner_upper, 1]  # per column, >= 0 mostly
        self.rest_gap = np.clip(self.rest_gap, 0.0, None)

    def _prepare_weights(self) -> None:
        self.jaw_weight = jaw_weight(self.local)

    # --- posing ---------------------------------------------------------------------------------
    def pose(self, params: FaceParams, shape: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Target positions (468x2 image pixels) and irises (2x5x2) for one frame.

        `shape` (468x3, eye distances: drive.Performance.shapes): a performer's face shape, laid onto
        the portrait's face in place of the parametric mouth, smile and brows."""
        local = self.local.copy()
        if shape is None:
            self._mouth(local, params)
            self._smile(local, float(np.clip(params.smile, -1.0, 1.0)))
            self._brows(local, float(np.clip(params.brow_raise, -1.0, 1.0)))
        else:
            local += shape
        iris = None if self.iris_local is None else self.iris_local.copy()
        self._eyes(local, iris, params)
        rotated, iris = self._head(local, iris, params)
        targets = self.to_image(rotated[:, :2])
        iris_image = None if iris is None else self.to_image(iris.reshape(-1, 2)).reshape(2, 5, 2)
        return targets, iris_image

    def head_only(self, params: FaceParams) -> np.ndarray:
        """Where the landmarks go under this frame's head motion alone (no expression): 468x2 pixels."""
        rotated, _ = self._head(self.local.copy(), None, params)
        return self.to_image(rotated[:, :2])

    def _mouth(self, local: np.ndarray, params: FaceParams) -> None:
        jaw = float(np.clip(params.jaw_open, 0.0, 1.0))
        rounding = float(np.clip(params.lip_round, 0.0, 1.0))
        wide = float(np.clip(params.lip_wide, 0.0, 1.0))
        press = float(np.clip(params.lip_press, 0.0, 1.0))
        centre_x = self.mouth_centre[0]
        width = self.mouth_width

        close = 1.0 if self.close_mouth_at_rest else float(np.clip(params.mouth_close, 0.0, 1.0))
        self._close_mouth(local, close)

        # Jaw: the lower lip and chin drop, the upper lip lifts a little. Pressed lips (m, b, p)
        # keep the jaw nearly shut.
        opening = jaw * (1.0 - 0.75 * press) * 0.42 * width
        if opening > 0:
            others = np.ones(len(local), bool)
            others[ALL_LIPS] = False
            local[others, 1] += 0.9 * opening * self.jaw_weight[others]
            local[self.inner_lower, 1] += opening * (0.2 + 0.8 * self.profile)
            local[self.outer_lower, 1] += opening * (0.45 + 0.5 * self.profile)
            local[self.inner_upper, 1] -= 0.18 * opening * self.profile
            local[self.outer_upper, 1] -= 0.08 * opening * self.profile
            for corner in LIP_CORNERS:
                local[corner, 1] += 0.3 * opening
                local[corner, 0] -= np.sign(local[corner, 0] - centre_x) * 0.06 * opening

        lips = np.array(ALL_LIPS)
        if rounding > 0:
            # Pucker: the mouth narrows toward its centre and the lips thicken.
            spread = local[lips, 0] - centre_x
            local[lips, 0] = centre_x + spread * (1.0 - 0.3 * rounding)
            local[self.outer_upper, 1] -= 0.03 * rounding
            local[self.outer_lower, 1] += 0.03 * rounding
        if wide > 0:
            spread = local[lips, 0] - centre_x
            local[lips, 0] = centre_x + spread * (1.0 + 0.12 * wide)
            for corner in LIP_CORNERS:
                local[corner, 1] -= 0.02 * wide

        if press > 0:
            # m, b, p: the lips meet along the middle of the mouth, whatever the jaw did.
            middle = 0.5 * (local[self.inner_upper, 1] + local[self.inner_lower, 1])
            upper_shift = press * (middle - local[self.inner_upper, 1])
            lower_shift = press * (middle - local[self.inner_lower, 1])
            local[self.inner_upper, 1] += upper_shift
            local[self.inner_lower, 1] += lower_shift
            local[self.outer_upper, 1] += 0.8 * upper_shift + 0.02 * press
            local[self.outer_lower, 1] += 0.8 * lower_shift - 0.02 * press

    def _close_mouth(self, local: np.ndarray, close: float) -> None:
        """Bring an open mouth (a smile with teeth) to a closed rest: the lower lip and jaw rise more than
        the upper lip falls, as when a mouth closes. The corners stay: the smile does."""
        if close <= 0:
            return
        upper_move = 0.4 * close * self.rest_gap
        lower_move = 0.6 * close * self.rest_gap
        local[self.inner_upper, 1] += upper_move
        local[self.outer_upper, 1] += 0.7 * upper_move
        local[self.inner_lower, 1] -= lower_move
        local[self.outer_lower, 1] -= 0.8 * lower_move
        jaw_rise = 0.8 * float(lower_move.max())
        others = np.ones(len(local), bool)
        others[ALL_LIPS] = False
        local[others, 1] -= jaw_rise * self.jaw_weight[others]

    def _smile(self, local: np.ndarray, smile: float) -> None:
        if smile == 0:
            return
        for corner, side in ((61, -1.0), (291, 1.0)):
            centre = self.local[corner, :2]
            distance2 = ((self.local[:, :2] - centre) ** 2).sum(1)
            weight = np.exp(-distance2 / (2 * 0.28**2))
            local[:, 1] -= 0.09 * smile * weight
            local[:, 0] += side * 0.05 * smile * weight

    def _brows(self, local: np.ndarray, raise_: float) -> None:
        if raise_ == 0:
            return
        brows = topo.RIGHT_BROW + topo.LEFT_BROW
        local[brows, 1] -= 0.13 * raise_
        local[LID_CREASE_RIGHT + LID_CREASE_LEFT, 1] -= 0.05 * raise_
        local[FOREHEAD, 1] -= 0.04 * raise_

    def _eyes(self, local: np.ndarray, iris: np.ndarray | None, params: FaceParams) -> None:
        sides = (
            (float(np.clip(params.blink_right, 0, 1)), topo.RIGHT_EYE_UPPER, topo.RIGHT_EYE_LOWER, LID_CREASE_RIGHT, 0),
            (float(np.clip(params.blink_left, 0, 1)), topo.LEFT_EYE_UPPER, topo.LEFT_EYE_LOWER, LID_CREASE_LEFT, 1),
        )
        gaze_x = float(np.clip(params.gaze_x, -1, 1))
        gaze_y = float(np.clip(params.gaze_y, -1, 1))
        for blink, upper, lower, crease, side in sides:
            upper_idx, lower_idx = np.array(upper[1:-1]), np.array(lower[1:-1])
            top, bottom = self.local[upper_idx, :2], self.local[lower_idx, :2]
            if blink > 0:
                closed_upper = bottom + (0.12 + CLOSED_EYE_GAP) * (top - bottom)
                closed_lower = bottom + 0.12 * (top - bottom)
                upper_delta = blink * (closed_upper - top)
                local[upper_idx, :2] += upper_delta
                local[lower_idx, :2] += blink * (closed_lower - bottom)
                local[crease, 1] += 0.35 * float(upper_delta[:, 1].mean())
                if iris is not None:
                    iris[side, :, 1] += 0.5 * float(upper_delta[:, 1].mean())
            if iris is not None and (gaze_x or gaze_y):
                eye_width = float(np.linalg.norm(self.local[upper[0], :2] - self.local[upper[-1], :2]))
                eye_height = float((bottom[:, 1] - top[:, 1]).max())
                iris[side, :, 0] += gaze_x * 0.2 * eye_width
                iris[side, :, 1] += gaze_y * 0.25 * eye_height

    def _head(
        self, local: np.ndarray, iris: np.ndarray | None, params: FaceParams
    ) -> tuple[np.ndarray, np.ndarray | None]:
        yaw = np.radians(np.clip(params.head_yaw, -MAX_YAW, MAX_YAW))
        pitch = np.radians(np.clip(params.head_pitch, -MAX_PITCH, MAX_PITCH))
        roll = np.radians(np.clip(params.head_roll, -MAX_ROLL, MAX_ROLL))
        shift = np.clip([params.head_x, params.head_y], -MAX_SHIFT, MAX_SHIFT)
        scale = 1.0 + float(np.clip(params.head_scale, -MAX_SCALE, MAX_SCALE))
        if not (yaw or pitch or roll) and scale == 1.0:
            if shift.any():
                local = local.copy()
                local[:, :2] += shift
                iris = None if iris is None else iris + shift
            return local, iris
        # Turned and scaled about the pivot: a head that leans in grows about the top of its neck.
        rotation = scale * head_rotation(yaw, pitch, roll)
        rotated = (local - HEAD_PIVOT) @ rotation.T + HEAD_PIVOT
        if iris is not None:
            # Irises sit on the eyeball surface: give them the depth of the eye corners.
            depth = np.array([
                self.local[list(topo.EYE_CENTRE_RIGHT), 2].mean(), self.local[list(topo.EYE_CENTRE_LEFT), 2].mean()
            ])  # fmt: skip
            iris3 = np.concatenate([iris, np.broadcast_to(depth[:, None, None], (2, 5, 1))], axis=2)
            iris = ((iris3 - HEAD_PIVOT) @ rotation.T + HEAD_PIVOT)[..., :2]
        rotated[:, :2] += shift
        if iris is not None:
            iris = iris + shift
        return rotated, iris
