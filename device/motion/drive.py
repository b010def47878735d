"""Expression and head-motion transfer from a performer: each frame's face measured against the
performer's own first frame, so only the change moves the portrait (the offline form of the live
mirror; the daemon's mirror mode uses `ExpressionTracker` on camera frames)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from device.errors import BadInput
from device.face import topology as topo
from device.face.analysis import FaceAnalyzer
from device.motion.params import FaceParams

NAMES = FaceParams.names()
COLUMN = {name: index for index, name in enumerate(NAMES)}


def measure(landmarks: np.ndarray, iris: np.ndarray | None) -> dict[str, float]:
    """Expression measures in the face's own frame (unit: distance between the eye centres)."""
    points = landmarks[:, :2]
    right = points[list(topo.EYE_CENTRE_RIGHT)].mean(0)
    left = points[list(topo.EYE_CENTRE_LEFT)].mean(0)
    axis = left - right
    unit = float(np.linalg.norm(axis))
    x_axis = axis / unit
    y_axis = np.array([-x_axis[1], x_axis[0]])
    origin = (right + left) / 2

    def local(p: np.ndarray) -> np.ndarray:
        return np.array([(p - origin) @ x_axis, (p - origin) @ y_axis]) / unit

    mouth_centre = local(points[list(topo.INNER_CORNERS)].mean(0))
    corners = np.array([local(points[i]) for i in topo.MOUTH_CORNERS])
    brows = np.array([local(points[i]) for i in topo.RIGHT_BROW + topo.LEFT_BROW])
    nose = local(points[topo.NOSE_TIP])
    values = {
        "mouth_open": topo.mouth_opening(landmarks),
        "mouth_width": float(np.linalg.norm(corners[1] - corners[0])),
        "eye_right": topo.eye_openness(landmarks, topo.RIGHT_EYE_UPPER, topo.RIGHT_EYE_LOWER),
        "eye_left": topo.eye_openness(landmarks, topo.LEFT_EYE_UPPER, topo.LEFT_EYE_LOWER),
        "brow": float(-brows[:, 1].mean()),
        "smile": float(mouth_centre[1] - corners[:, 1].mean()),
        "roll": float(np.degrees(np.arctan2(axis[1], axis[0]))),
        "nose_x": float(nose[0]),
        "nose_y": float(nose[1] / max(mouth_centre[1], 1e-3)),
        "gaze_x": 0.0,
        "gaze_y": 0.0,
    }
    if iris is not None:
        gaze = []
        for eye, corners_idx in ((0, topo.EYE_CENTRE_RIGHT), (1, topo.EYE_CENTRE_LEFT)):
            a, b = points[corners_idx[0]], points[corners_idx[1]]
            centre, half = (a + b) / 2, max(float(np.linalg.norm(b - a)) / 2, 1e-3)
            offset = iris[eye, 0] - centre
            gaze.append([offset @ x_axis / half, offset @ y_axis / half])
        values["gaze_x"], values["gaze_y"] = (float(v) for v in np.mean(gaze, axis=0))
    return values


def params_from_measures(current: dict[str, float], reference: dict[str, float]) -> np.ndarray:
    """FaceParams (as an array) for the change from the reference face to the current one."""
    out = np.zeros(len(NAMES), np.float32)
    out[COLUMN["jaw_open"]] = np.clip((current["mouth_open"] - reference["mouth_open"]) / 0.42, 0, 1)
    width_change = current["mouth_width"] / max(reference["mouth_width"], 1e-3) - 1.0
    out[COLUMN["lip_wide"]] = np.clip(width_change / 0.12, 0, 1)
    out[COLUMN["lip_round"]] = np.clip(-width_change / 0.25, 0, 1)
    for side, key in (("blink_right", "eye_right"), ("blink_left", "eye_left")):
        ratio = current[key] / max(reference[key], 1e-3)
        out[COLUMN[side]] = np.clip((1.0 - ratio) / 0.75, 0, 1)
    out[COLUMN["brow_raise"]] = np.clip((current["brow"] - reference["brow"]) / 0.13, -1, 1)
    out[COLUMN["smile"]] = np.clip((current["smile"] - reference["smile"]) / 0.09, -1, 1)
    out[COLUMN["head_roll"]] = current["roll"] - reference["roll"]
    out[COLUMN["head_yaw"]] = np.degrees(np.arcsin(np.clip(current["nose_x"] - reference["nose_x"], -0.5, 0.5)))
    out[COLUMN["head_pitch"]] = 60.0 * (current["nose_y"] - reference["nose_y"])
    out[COLUMN["gaze_x"]] = np.clip((current["gaze_x"] - reference["gaze_x"]) / 0.4, -1, 1)
    out[COLUMN["gaze_y"]] = np.clip((current["gaze_y"] - reference["gaze_y"]) / 0.4, -1, 1)
    return out


class ExpressionTracker:
    """Feeds on frames of a performer (file or live camera); gives FaceParams relative to the first
    frame in which a face was found. Frames without a face hold the last parameters."""

    def __init__(self, analyzer: FaceAnalyzer, smoothing: float = 0.35) -> None:
        self.analyzer = analyzer
        self.reference: dict[str, float] | None = None
        self.previous: np.ndarray | None = None
        self.last = np.zeros(len(NAMES), np.float32)
        self.smoothing = smoothing  # exponential smoothing against landmark jitter
        self.found = 0

    def update(self, frame: np.ndarray) -> np.ndarray:
        landmarks = self.analyzer.track(frame, self.previous)
        self.previous = landmarks
        if landmarks is None:
            return self.last
        iris = self.analyzer.mesh.irises(frame, landmarks)
        values = measure(landmarks, iris)
        if self.reference is None:
            self.reference = values
        params = params_from_measures(values, self.reference)
        if self.found:
            params = self.smoothing * self.last + (1.0 - self.smoothing) * params
        self.found += 1
        self.last = params.astype(np.float32)
        return self.last


def drive_track(path: Path, analyzer: FaceAnalyzer, fps: float, n_frames: int | None = None) -> np.ndarray:
    """Per output frame parameters from a driving video, resampled to `fps`; the clip length is
    the video's unless `n_frames` says otherwise (then the last pose holds)."""
    from device.outputs.video import probe_video, read_frames

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such driving video")
    try:
        info = probe_video(path)
    except BadInput:
        raise
    except Exception as error:
        raise BadInput(f"{path}: not a readable video ({error})") from error
    if info.frames == 0:
        raise BadInput(f"{path}: the driving video has no frames")
    tracker = ExpressionTracker(analyzer)
    per_source = [tracker.update(frame) for frame in read_frames(path)]
    if tracker.found == 0:
        raise BadInput(f"{path}: no face found in the driving video")
    source_fps = info.fps or fps
    count = n_frames if n_frames is not None else max(1, round(len(per_source) / source_fps * fps))
    index = np.minimum(np.round(np.arange(count) / fps * source_fps).astype(int), len(per_source) - 1)
    return np.stack([per_source[i] for i in index])
