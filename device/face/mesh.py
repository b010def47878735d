"""The 468-point face mesh and the iris model of mediapipe 0.10.21, run on rotated face crops."""

from __future__ import annotations

import cv2
import numpy as np

from device.assets import model_path
from device.face.tflite import TFLiteModel

MESH_INPUT = 192
IRIS_INPUT = 64
MESH_RECT_SCALE = 1.5
IRIS_RECT_SCALE = 2.3
PRESENCE_THRESHOLD = 0.5

# Eye corners in the mesh: (outer, inner) for the subject's right eye (image left), then left eye.
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (362, 263)


def rotated_square(centre: np.ndarray, size: float, angle: float, out: int) -> np.ndarray:
    """2x3 affine mapping a square of `size` px centred at `centre`, rotated by `angle` (radians,
    image coordinates), onto an out x out crop."""
    cos, sin = np.cos(angle), np.sin(angle)
    scale = out / size
    # crop = scale * R(-angle) (p - centre) + out/2
    rotation = np.array([[cos, sin], [-sin, cos]], np.float64) * scale
    translation = out / 2.0 - rotation @ centre
    return np.hstack([rotation, translation[:, None]])


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(matrix)


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


class FaceMesh:
    def __init__(self, threads: int = 2, iris: bool = True) -> None:
        self.mesh = TFLiteModel(model_path("face_landmark.tflite"), threads)
        self.iris = TFLiteModel(model_path("iris_landmark.tflite"), threads) if iris else None

    def run(self, image: np.ndarray, centre: np.ndarray, size: float, angle: float) -> tuple[np.ndarray, float]:
        """Landmarks (468x3, image pixels; z in the same pixel scale) and presence score for a face
        expected in the given rotated square."""
        matrix = rotated_square(centre, size * MESH_RECT_SCALE, angle, MESH_INPUT)
        crop = cv2.warpAffine(
            image, matrix, (MESH_INPUT, MESH_INPUT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        landmarks, flag = self.mesh((crop.astype(np.float32) / 255.0)[None])
        points = landmarks.reshape(468, 3).astype(np.float64)
        back = invert_affine(matrix)
        xy = apply_affine(back, points[:, :2])
        z = points[:, 2] * (size * MESH_RECT_SCALE / MESH_INPUT)
        presence = float(1.0 / (1.0 + np.exp(-flag.ravel()[0])))
        return np.column_stack([xy, z]), presence

    def refine(self, image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, float]:
        """Run the mesh again on the crop the first landmarks define (as MediaPipe's tracker does)."""
        centre, size, angle = rect_from_landmarks(landmarks)
        return self.run(image, centre, size, angle)

    def irises(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
        """Iris centre and 4 contour points per eye: 2x5x2 (right eye, left eye) in image pixels."""
        if self.iris is None:
            return None
        result = []
        for corners, flip in ((RIGHT_EYE_CORNERS, False), (LEFT_EYE_CORNERS, True)):
            a, b = landmarks[corners[0], :2], landmarks[corners[1], :2]
            centre = (a + b) / 2.0
            delta = b - a if not flip else a - b
            angle = float(np.arctan2(delta[1], delta[0]))
            size = float(np.linalg.norm(b - a)) * IRIS_RECT_SCALE
            matrix = rotated_square(centre, size, angle, IRIS_INPUT)
            crop = cv2.warpAffine(image, matrix, (IRIS_INPUT, IRIS_INPUT), flags=cv2.INTER_LINEAR)
            if flip:
                # The model knows one eye; the other is mirrored in and its points mirrored back.
                crop = crop[:, ::-1]
            _, iris = self.iris((crop.astype(np.float32) / 255.0)[None])
            points = iris.reshape(5, 3)[:, :2].astype(np.float64)
            if flip:
                points[:, 0] = IRIS_INPUT - points[:, 0]
            result.append(apply_affine(invert_affine(matrix), points))
        return np.stack(result)


def rect_from_landmarks(landmarks: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Centre, side and rotation of the square that holds the face, from its own eye line."""
    right, left = landmarks[RIGHT_EYE_CORNERS[0], :2], landmarks[LEFT_EYE_CORNERS[1], :2]
    angle = float(np.arctan2(left[1] - right[1], left[0] - right[0]))
    cos, sin = np.cos(angle), np.sin(angle)
    # Bounding box in the face's own rotated frame.
    rotation = np.array([[cos, sin], [-sin, cos]])
    local = landmarks[:, :2] @ rotation.T
    low, high = local.min(0), local.max(0)
    centre = ((low + high) / 2.0) @ rotation
    size = float(max(high - low))
    return centre, size, angle
