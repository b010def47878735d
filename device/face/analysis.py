"""Face analysis of a still photo: detect, choose the face, landmarks (+ iris), sanity checks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device.errors import BadInput
from device.face.detector import Detection, FaceDetector
from device.face.mesh import FaceMesh, rect_from_landmarks

MIN_FACE_PX = 64  # below this there is too little face to animate convincingly
EDGE_TOLERANCE = 0.04  # of the face size: how far landmarks may fall outside the frame
# What to try when no face is found: the detector looks for upright faces of a fair size.
NO_FACE_HINT = (
    "use a photo with one face looking at the camera, upright (turn a sideways or upside-down photo the "
    f"right way up), well lit and at least {MIN_FACE_PX} px wide (crop closer, or use a larger photo)"
)
# np.rot90(image, k) turns it k x 90 degrees counterclockwise: what the user should do to the photo.
# Half a turn first: the detector finds most sideways faces itself, but no upside-down ones.
_TURNS = {2: "by 180 degrees (it is upside down)", 1: "90 degrees counterclockwise", 3: "90 degrees clockwise"}


@dataclass
class Face:
    landmarks: np.ndarray  # 468x3, image pixels (z in the same scale, camera-facing negative)
    iris: np.ndarray | None  # 2x5x2: right eye, left eye; centre then contour
    box: np.ndarray  # detection box x0, y0, x1, y1
    score: float
    index: int  # 0 = largest face in the photo

    @property
    def size(self) -> float:
        _, size, _ = rect_from_landmarks(self.landmarks)
        return size


class FaceAnalyzer:
    """Holds the face models; one per process is enough (small, and each model serialises its own calls)."""

    def __init__(self, threads: int = 2, iris: bool = True) -> None:
        self.detector = FaceDetector(threads)
        self.mesh = FaceMesh(threads, iris=iris)

    def detect(self, image: np.ndarray) -> list[Detection]:
        return self.detector.detect(image)

    def landmarks_for(self, image: np.ndarray, detection: Detection) -> tuple[np.ndarray, float]:
        keypoints = detection.keypoints
        angle = float(np.arctan2(keypoints[1, 1] - keypoints[0, 1], keypoints[1, 0] - keypoints[0, 0]))
        centre = (detection.box[:2] + detection.box[2:]) / 2.0
        size = float(max(detection.box[2:] - detection.box[:2]))
        landmarks, presence = self.mesh.run(image, centre, size, angle)
        if presence >= 0.5:
            landmarks, presence = self.mesh.refine(image, landmarks)
        return landmarks, presence

    def analyse(self, image: np.ndarray, face: int = 0, name: str = "photo") -> Face:
        """The chosen face (0 = largest) with all checks a user's photo needs; BadInput otherwise."""
        detections = self.detect(image)
        if not detections:
            raise BadInput(f"{name}: no face found; {self._turned_hint(image) or NO_FACE_HINT}")
        if face < 0 or face >= len(detections):
            raise BadInput(f"{name}: face {face + 1} requested but the photo has {len(detections)} face(s)")
        detection = detections[face]
        if detection.width < MIN_FACE_PX:
            raise BadInput(
                f"{name}: the face is too small ({detection.width:.0f} px wide, at least {MIN_FACE_PX} px needed); "
                "crop the photo closer around the face, or use a higher-resolution photo"
            )
        landmarks, presence = self.landmarks_for(image, detection)
        if presence < 0.5:
            raise BadInput(
                f"{name}: no face found (a face-like region was not confirmed by the face mesh); {NO_FACE_HINT}"
            )
        height, width = image.shape[:2]
        margin = EDGE_TOLERANCE * detection.width
        xy = landmarks[:, :2]
        if (
            (xy[:, 0] < -margin).any()
            or (xy[:, 1] < -margin).any()
            or (xy[:, 0] > width - 1 + margin).any()
            or (xy[:, 1] > height - 1 + margin).any()
        ):
            raise BadInput(f"{name}: the face is cut by the edge of the photo; use a photo with the whole face")
        iris = self.mesh.irises(image, landmarks)
        return Face(landmarks=landmarks, iris=iris, box=detection.box, score=detection.score, index=face)

    def _turned_hint(self, image: np.ndarray) -> str | None:
        """Whether the photo holds a face once turned (a sideways or upside-down photo, or one whose
        EXIF orientation is missing): then say which way to turn it. Runs only when nothing was found."""
        for k, how in _TURNS.items():
            turned = np.ascontiguousarray(np.rot90(image, k))
            if any(d.width >= MIN_FACE_PX for d in self.detect(turned)):
                return f"there is a face when the photo is turned {how}: turn the photo and try again"
        return None

    def track(self, image: np.ndarray, previous: np.ndarray | None) -> np.ndarray | None:
        """Landmarks in a video frame, reusing the last frame's face region (no detector run)
        while the face stays found. None when there is no face."""
        if previous is not None:
            landmarks, presence = self.mesh.refine(image, previous)
            if presence >= 0.5:
                return landmarks
        detections = self.detect(image)
        if not detections:
            return None
        landmarks, presence = self.landmarks_for(image, detections[0])
        return landmarks if presence >= 0.5 else None
