"""Expression and head-motion transfer from a performer: each frame's face measured against the
performer's own first frame, so only the change moves the portrait (the offline form of the live
mirror; the daemon's mirror mode uses `ExpressionTracker` on camera frames)."""

from __future__ import annotations

from dataclasses import dataclass
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
    origin, unit, axes = face_frame(landmarks)

    def local(p: np.ndarray) -> np.ndarray:
        return axes @ (p - origin) / unit

    mouth_centre = local(points[list(topo.INNER_CORNERS)].mean(0))
    corners = np.array([local(points[i]) for i in topo.MOUTH_CORNERS])
    brows = np.array([local(points[i]) for i in topo.RIGHT_BROW + topo.LEFT_BROW])
    values = {
        "mouth_open": topo.mouth_opening(landmarks),
        "mouth_width": float(np.linalg.norm(corners[1] - corners[0])),
        "eye_right": topo.eye_openness(landmarks, topo.RIGHT_EYE_UPPER, topo.RIGHT_EYE_LOWER),
        "eye_left": topo.eye_openness(landmarks, topo.LEFT_EYE_UPPER, topo.LEFT_EYE_LOWER),
        "brow": float(-brows[:, 1].mean()),
        "smile": float(mouth_centre[1] - corners[:, 1].mean()),
        "gaze_x": 0.0,
        "gaze_y": 0.0,
    }
    if iris is not None:
        gaze = []
        for eye, corners_idx in ((0, topo.EYE_CENTRE_RIGHT), (1, topo.EYE_CENTRE_LEFT)):
            a, b = points[corners_idx[0]], points[corners_idx[1]]
            centre, half = (a + b) / 2, max(float(np.linalg.norm(b - a)) / 2, 1e-3)
            offset = iris[eye, 0] - centre
            gaze.append(axes @ offset / half)
        values["gaze_x"], values["gaze_y"] = (float(v) for v in np.mean(gaze, axis=0))
    return values


def face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """(origin, unit, 2x2 axes) of a face: between the eyes, eye distance, x along the eye line."""
    points = landmarks[:, :2]
    right = points[list(topo.EYE_CENTRE_RIGHT)].mean(0)
    left = points[list(topo.EYE_CENTRE_LEFT)].mean(0)
    axis = left - right
    unit = float(np.linalg.norm(axis)) or 1.0
    x_axis = axis / unit
    return (right + left) / 2, unit, np.stack([x_axis, [-x_axis[1], x_axis[0]]])


def _skull_fit(current: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Both meshes in the reference face's 3D frame (eye distances) and the similarity (scale,
    rotation, shift) that best maps the reference skull, about the rig's pivot, onto the current one."""
    from device.render.head import similarity
    from device.render.rig import HEAD_PIVOT

    origin, unit, axes = face_frame(reference)

    def local(mesh: np.ndarray) -> np.ndarray:
        xy = (mesh[:, :2] - origin) @ axes.T / unit
        return np.column_stack([xy, mesh[:, 2] / unit])

    now, rest = local(current), local(reference)
    scale, rotation, shift = similarity(rest[topo.SKULL] - HEAD_PIVOT, now[topo.SKULL])
    return now, scale, rotation, shift


def head_pose(current: np.ndarray, reference: np.ndarray) -> tuple[float, float, float, float, float, float]:
    """The head's rigid motion from the reference mesh to the current one, in the rig's terms:
    (yaw, pitch, roll in degrees, shift x, shift y in the reference's eye distances, relative change of
    size).

    Both meshes (468x3) are put in the reference face's frame; a 3D similarity (Umeyama) on
    the skull's landmarks about the rig's pivot gives the rotation, which is read as the rig composes
    it (roll after yaw after pitch), its scale (a head leaning in, a camera zooming), and what is left
    over is the shift."""
    from device.render.rig import HEAD_PIVOT

    _, scale, rotation, shift = _skull_fit(current, reference)
    shift = shift - HEAD_PIVOT
    yaw = float(np.degrees(np.arcsin(np.clip(rotation[2, 0], -1.0, 1.0))))
    pitch = float(np.degrees(np.arctan2(rotation[2, 1], rotation[2, 2])))
    roll = float(np.degrees(np.arctan2(rotation[1, 0], rotation[0, 0])))
    return yaw, pitch, roll, float(shift[0]), float(shift[1]), scale - 1.0


def head_frame(current: np.ndarray, reference: np.ndarray, params: np.ndarray) -> np.ndarray:
    """The current mesh (468x3) with the head motion that `params` give the rig taken out: every point
    where it would be had the head not moved, in the reference face's frame (eye distances, origin
    between the eyes), as the rig's local frame is laid out. What is left is the expression; the rig
    posing it with `params` puts every point back where the mesh saw it (the rig's head motion is the
    fitted one less the jaw's bias, so the jaw's drop stays in the shape)."""
    from device.render.rig import HEAD_PIVOT, head_rotation

    # The scale comes out whole, the part the rig does not apply too (SCALE_NOISE): the face keeps the
    # size its outline is given, as one rigid head.
    now, scale, _, fitted_shift = _skull_fit(current, reference)
    angles = np.radians([params[COLUMN[name]] for name in ("head_yaw", "head_pitch", "head_roll")])
    rotation = head_rotation(*angles)
    shift = np.array(
        [HEAD_PIVOT[0] + params[COLUMN["head_x"]], HEAD_PIVOT[1] + params[COLUMN["head_y"]], fitted_shift[2]]
    )
    return (now - shift) @ rotation / max(scale, 1e-6) + HEAD_PIVOT


# The face mesh reads an opening jaw as a little pitch and a drop of the head, though the head does not
# move (its crop follows the chin). Measured on renders of the sample portrait that only open the jaw:
# per unit of jaw_open, -3.7 degrees of pitch and +0.073 eye distances of head_y. Taken back out here.
JAW_PITCH_BIAS = -3.66
JAW_SHIFT_BIAS = 0.073
# The mesh reads a turn or a change of expression (a smile, raised brows) as up to 3-4 % of change in the
# head's size (on still heads of ../shared/talking, correlated with the expression): applied, that pulses
# the whole head. Below SCALE_NOISE the head keeps its size; past twice that (real leaning and zooming:
# down to -25 %) it takes the measured size; between, it eases in.
SCALE_NOISE = 0.02


def with_head_pose(params: np.ndarray, mesh: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`params` with the head pose of `mesh` relative to `reference` (the mesh's jaw bias removed)."""
    from device.render.warp import smoothstep

    yaw, pitch, roll, shift_x, shift_y, scale = head_pose(mesh, reference)
    jaw = float(params[COLUMN["jaw_open"]])
    params[COLUMN["head_scale"]] = scale * float(smoothstep(SCALE_NOISE, 2 * SCALE_NOISE, abs(scale)))
    params[COLUMN["head_yaw"]], params[COLUMN["head_roll"]], params[COLUMN["head_x"]] = yaw, roll, shift_x
    params[COLUMN["head_pitch"]] = pitch - JAW_PITCH_BIAS * jaw
    params[COLUMN["head_y"]] = shift_y - JAW_SHIFT_BIAS * jaw
    return params


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
    out[COLUMN["gaze_x"]] = np.clip((current["gaze_x"] - reference["gaze_x"]) / 0.4, -1, 1)
    out[COLUMN["gaze_y"]] = np.clip((current["gaze_y"] - reference["gaze_y"]) / 0.4, -1, 1)
    return out


# Below this the portrait's lips are together: there is nothing to close.
PARTED_LIPS = 0.03


def open_from_rest(params: np.ndarray, opening: float, rest_opening: float, closed: float = 0.0) -> None:
    """Set the jaw and `mouth_close` of `params` in place so that the portrait's mouth shows the
    performer's `opening` from its own `rest_opening` (both relative to the mouth width): closing lips
    that rest parted, opening the jaw only past them. Both are taken above `closed`, the performer's
    closed-lip reading: the mesh reads closed lips as a small gap."""
    opening, rest_opening = float(opening) - closed, max(float(rest_opening) - closed, 0.0)
    if rest_opening < PARTED_LIPS:
        return
    excess = opening - rest_opening
    params[COLUMN["jaw_open"]] = np.clip(excess / 0.42, 0.0, 1.0)
    params[COLUMN["mouth_close"]] = np.clip(-excess / rest_opening, 0.0, 1.0)


class ExpressionTracker:
    """Feeds on frames of a performer (file or live camera); gives FaceParams relative to the first
    frame in which a face was found. Frames without a face hold the last parameters."""

    def __init__(self, analyzer: FaceAnalyzer, smoothing: float = 0.35, rest_opening: float | None = None) -> None:
        """`rest_opening`: the portrait's own mouth opening, as for drive_track."""
        self.analyzer = analyzer
        self.rest_opening = rest_opening
        self.reference: dict[str, float] | None = None
        self.reference_mesh: np.ndarray | None = None
        self.previous: np.ndarray | None = None
        self.last = np.zeros(len(NAMES), np.float32)
        self.smoothing = smoothing  # exponential smoothing against landmark jitter
        self.found = 0
        # The face shape (Performance.shapes) of the last frame, for FaceRig.pose; None before a face.
        self.shape: np.ndarray | None = None
        self._first_face: np.ndarray | None = None
        self._first_opening = 0.0
        self._mouth_weight = np.zeros((0, 1))
        self._best_mouth: tuple[float, np.ndarray] | None = None

    def update(self, frame: np.ndarray) -> np.ndarray:
        landmarks = self.analyzer.track(frame, self.previous)
        self.previous = landmarks
        if landmarks is None:
            return self.last
        iris = self.analyzer.mesh.irises(frame, landmarks)
        values = measure(landmarks, iris)
        if self.reference is None or self.reference_mesh is None:
            self.reference, self.reference_mesh = dict(values), landmarks
        # The mouth opens from the most closed mouth seen so far (live, the offline 5th percentile): a
        # visitor caught mid-word in the first frame would otherwise close the portrait's mouth for good.
        closed = self.reference["mouth_open"] = min(self.reference["mouth_open"], values["mouth_open"])
        # The head pose as offline: the mesh's 3D rigid motion from the first face.
        params = with_head_pose(params_from_measures(values, self.reference), landmarks, self.reference_mesh)
        if self.rest_opening is not None:
            open_from_rest(params, values["mouth_open"], self.rest_opening, closed)
        shape = self._shape(head_frame(landmarks, self.reference_mesh, params), values["mouth_open"])
        if self.found:
            params = self.smoothing * self.last + (1.0 - self.smoothing) * params
            if self.shape is not None:
                shape = self.smoothing * self.shape + (1.0 - self.smoothing) * shape
        self.found += 1
        self.last = params.astype(np.float32)
        self.shape = shape.astype(np.float32)
        return self.last

    def _shape(self, unposed: np.ndarray, opening: float) -> np.ndarray:
        """As offline (_shape_neutral), from what has been seen so far: the first face, with the mouth of
        the frame whose mouth is the nearest yet to the portrait's when the first one's is not."""
        from device.render.rig import EYE_POINTS, mouth_weight

        if self._first_face is None:
            self._first_face, self._first_opening = unposed, opening
            self._mouth_weight = mouth_weight(unposed)[:, None]
        neutral = self._first_face
        if self.rest_opening is not None and abs(self._first_opening - self.rest_opening) >= SAME_OPENING:
            gap = abs(opening - self.rest_opening)
            if self._best_mouth is None or gap < self._best_mouth[0]:
                self._best_mouth = (gap, unposed)
            neutral = neutral + self._mouth_weight * (self._best_mouth[1] - neutral)
        shape = unposed - neutral
        shape[EYE_POINTS] = 0.0
        return shape


# A performer who looks away keeps the last pose this long, then eases back to rest over as long again.
HOLD_S = 0.5
EASE_S = 0.5


@dataclass
class Performance:
    """A driving video read: per output frame the rig parameters, and the face's shape.

    `shapes` (frames x 468 x 3, eye distances): each landmark's move away from the performer's neutral
    face in their head's own frame (the head's rigid motion taken out, eye points zero: the rig's own
    lids close the eyes). The rig lays it onto the portrait's face instead of its parametric mouth,
    smile and brows: the performer's own mouth shapes, asymmetry and jaw, which no handful of
    parameters spans."""

    params: np.ndarray
    shapes: np.ndarray

    def __len__(self) -> int:
        return len(self.params)


def drive_track(
    path: Path, analyzer: FaceAnalyzer, fps: float, n_frames: int | None = None, rest_opening: float | None = None
) -> np.ndarray:
    """Per output frame parameters from a driving video (read_performance's params)."""
    return read_performance(path, analyzer, fps, n_frames, rest_opening).params


def read_performance(
    path: Path, analyzer: FaceAnalyzer, fps: float, n_frames: int | None = None, rest_opening: float | None = None
) -> Performance:
    """Per output frame parameters and face shapes from a driving video, resampled to `fps`; the clip
    length is the video's unless `n_frames` says otherwise (then the last pose holds).

    `rest_opening`: the portrait's own mouth opening (topology.mouth_opening of its landmarks). With it
    the portrait's mouth opens as far as the performer's does above their closed lips: a portrait that
    rests with parted lips closes them when the performer's close (`mouth_close`) and opens further only
    past its own opening. Without it the performer's opening is added to whatever the photo shows.

    Offline, the whole performance is known: the mouth's neutral is the performer's own most closed
    mouth (not whatever the first frame shows), the head pose is the mesh's 3D rigid motion from the
    first frame, and smoothing runs forward and backward, so it adds no lag."""
    from device.media.video import probe_video, read_frames

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such driving video")
    try:
        info = probe_video(path)
    except BadInput:
        raise
    except Exception as error:
        raise BadInput(f"{path}: not a readable video ({error})") from error
    if info.frames < 2:
        raise BadInput(
            f"{path}: a driving video needs at least 2 frames, this has {info.frames} "
            "(a still photo does not move; give it as the portrait instead)"
        )
    meshes: list[np.ndarray | None] = []
    measures: list[dict[str, float] | None] = []
    previous = None
    for frame in read_frames(path):
        previous = analyzer.track(frame, previous)
        meshes.append(previous)
        measures.append(None if previous is None else measure(previous, analyzer.mesh.irises(frame, previous)))
    found = [i for i, m in enumerate(measures) if m is not None]
    if not found:
        raise BadInput(f"{path}: no face found in the driving video")
    source_fps = info.fps or fps
    params, shapes = _performance(meshes, measures, found[0], source_fps, rest_opening)
    count = n_frames if n_frames is not None else max(1, round(len(params) / source_fps * fps))
    index = np.minimum(np.round(np.arange(count) / fps * source_fps).astype(int), len(params) - 1)
    return Performance(params[index], shapes[index])


def _performance(
    meshes: list, measures: list, first: int, fps: float, rest_opening: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(frames x params, frames x 468 x 3 shapes) for a whole performance, relative to its first face."""
    from device.render.rig import EYE_POINTS

    reference = performance_reference(measures, first)
    out = np.zeros((len(measures), len(NAMES)), np.float32)
    unposed = np.zeros((len(measures), len(meshes[first]), 3), np.float32)
    seen = np.zeros(len(measures), bool)
    for i, (mesh, values) in enumerate(zip(meshes, measures, strict=True)):
        if values is None:
            continue
        seen[i] = True
        out[i] = with_head_pose(params_from_measures(values, reference), mesh, meshes[first])
        unposed[i] = head_frame(mesh, meshes[first], out[i])
        if rest_opening is not None:
            open_from_rest(out[i], values["mouth_open"], rest_opening, reference["mouth_open"])
    shapes = unposed - _shape_neutral(unposed, measures, seen, first, rest_opening)
    shapes[:, EYE_POINTS] = 0.0
    shapes[~seen] = 0.0
    flat = shapes.reshape(len(shapes), -1)
    _fill_lost(out, seen, fps)
    _fill_lost(flat, seen, fps)
    return _smooth(out, fps), _gaussian(flat, fps).reshape(shapes.shape)


# Mouth openings (relative to the mouth's width) closer than this are the same mouth to the eye.
SAME_OPENING = 0.015


def _shape_neutral(
    unposed: np.ndarray, measures: list, seen: np.ndarray, first: int, rest_opening: float | None
) -> np.ndarray:
    """The performer's face that stands for the portrait's photo: their first face, unless its mouth is
    more or less open than the portrait's; then with the mouth (and what moves with it) of the frames
    whose mouth is as open as the portrait's. A portrait smiling with parted lips then closes them when
    the performer's close, and a closed one opens from closed, whatever the performer's first frame
    shows; played on its own first frame, a clip reproduces itself."""
    from device.render.rig import mouth_weight

    neutral = unposed[first].astype(np.float64)
    if rest_opening is None or abs(measures[first]["mouth_open"] - rest_opening) < SAME_OPENING:
        return neutral
    frames = np.flatnonzero(seen)
    gaps = np.abs(np.array([measures[i]["mouth_open"] for i in frames]) - rest_opening)
    # A few frames at least, against the mesh's jitter on any one of them.
    nearest = frames[np.argsort(gaps)[: max(3, len(frames) // 10)]]
    mouth = np.median(unposed[nearest], axis=0)
    weight = mouth_weight(neutral)[:, None]
    return neutral + weight * (mouth - neutral)


def performance_reference(measures: list[dict[str, float] | None], first: int) -> dict[str, float]:
    """The performer's neutral face, what each frame's expression is measured from (the face at `first`
    for the gaze). Also what training pairs use, so the generator sees the rig as `--drive` drives it."""
    reference = dict(measures[first])

    # The mouth opens from the performer's own closed mouth: a first frame caught mid-word would
    # otherwise make every later closing an opening of the wrong sign.
    def over_performance(key: str, percentile: float) -> float:
        return float(np.percentile([m[key] for m in measures if m is not None], percentile))

    reference["mouth_open"] = over_performance("mouth_open", 5)
    # Likewise the eyes open from the performer's own open eyes (a first frame may wink), and the brows
    # are measured from the performer's usual face, not from one moment of it.
    for key in ("eye_right", "eye_left"):
        reference[key] = over_performance(key, 90)
    reference["brow"] = over_performance("brow", 50)
    # The mouth's width and smile from the performer's closed mouth (the quarter of frames most closed):
    # someone who talks most of the clip has a usual mouth wider than at rest, and measured from that,
    # their rest would read as pursed lips and a frown.
    present = [m for m in measures if m is not None]
    closed_below = float(np.percentile([m["mouth_open"] for m in present], 25))
    closed = [m for m in present if m["mouth_open"] <= closed_below] or present
    for key in ("smile", "mouth_width"):
        reference[key] = float(np.median([m[key] for m in closed]))
    return reference


def _fill_lost(track: np.ndarray, seen: np.ndarray, fps: float) -> None:
    """Frames without a face: before the first one, the first pose; after a loss, the last pose held
    for HOLD_S, then eased to rest (zero) over EASE_S until the face is back."""
    first = int(np.argmax(seen))
    track[:first] = track[first]
    last = track[first].copy()
    lost_for = 0
    for i in range(first, len(track)):
        if seen[i]:
            last, lost_for = track[i].copy(), 0
            continue
        lost_for += 1
        held = lost_for / fps
        ease = float(np.clip((held - HOLD_S) / EASE_S, 0.0, 1.0))
        track[i] = last * (1.0 - (3 * ease**2 - 2 * ease**3))


def _gaussian(track: np.ndarray, fps: float) -> np.ndarray:
    """A small centred Gaussian over time (30 ms), per column: against landmark jitter, without lag."""
    sigma = 0.03 * fps
    if sigma < 0.5 or len(track) < 3:
        return track
    radius = max(1, int(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(track, ((radius, radius), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, len(taps), axis=0)
    return (windows @ taps).astype(np.float32)


def _smooth(track: np.ndarray, fps: float) -> np.ndarray:
    """Against landmark jitter (a shaking head), without lag; the mouth and the lids are fast and must
    reach their extremes: they keep their raw values."""
    smoothed = _gaussian(track, fps)
    if smoothed is track:
        return track
    for name in ("blink_left", "blink_right", "jaw_open", "lip_round", "lip_wide", "lip_press", "mouth_close"):
        smoothed[:, COLUMN[name]] = track[:, COLUMN[name]]
    return smoothed
