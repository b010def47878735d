"""BlazeFace face detection (the full-range model of mediapipe 0.10.21), decoded by hand."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from device.assets import model_path
from device.face.tflite import TFLiteModel

INPUT = 192
STRIDE = 4  # full-range model: one 48x48 anchor grid, one anchor per cell
SCORE_THRESHOLD = 0.6
NMS_IOU = 0.3


@dataclass
class Detection:
    box: np.ndarray  # x0, y0, x1, y1 in image pixels
    keypoints: np.ndarray  # 6x2: right eye, left eye, nose tip, mouth, right ear, left ear (subject's sides)
    score: float

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])


def _anchors() -> np.ndarray:
    cells = INPUT // STRIDE
    grid = (np.arange(cells, dtype=np.float32) + 0.5) / cells
    xs, ys = np.meshgrid(grid, grid)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


class FaceDetector:
    def __init__(self, threads: int = 2) -> None:
        self.model = TFLiteModel(model_path("face_detection_full_range_sparse.tflite"), threads)
        self.anchors = _anchors()

    def detect(self, image: np.ndarray) -> list[Detection]:
        """All faces in an RGB image, largest first. The image is letterboxed to a square and
        scaled to the model's input, so any size works (a huge photo is detected downscaled)."""
        height, width = image.shape[:2]
        side = max(height, width)
        scale = INPUT / side
        resized = cv2.resize(
            image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
        )
        canvas = np.zeros((INPUT, INPUT, 3), np.float32)
        top = (INPUT - resized.shape[0]) // 2
        left = (INPUT - resized.shape[1]) // 2
        canvas[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
        batch = (canvas / 127.5 - 1.0)[None]
        regressors, scores = self.model(batch)
        regressors, logits = regressors[0], scores[0, :, 0]
        probability = 1.0 / (1.0 + np.exp(-np.clip(logits, -80, 80)))
        keep = np.nonzero(probability >= SCORE_THRESHOLD)[0]
        if keep.size == 0:
            return []
        raw = regressors[keep] / INPUT
        anchors = self.anchors[keep]
        centre = raw[:, 0:2] + anchors
        size = raw[:, 2:4]
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        keypoints = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        # From the letterboxed unit square back to image pixels.
        offset = np.array([left, top], np.float32) / INPUT
        boxes = (boxes - np.tile(offset, 2)) * INPUT / scale
        keypoints = (keypoints - offset) * INPUT / scale
        detections = _weighted_nms(boxes, keypoints, probability[keep])
        detections.sort(key=lambda d: -d.width)
        return detections


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def _weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray) -> list[Detection]:
    """BlazeFace's blending NMS: overlapping candidates are averaged by score, which steadies boxes."""
    order = np.argsort(-scores)
    remaining = order
    detections = []
    while remaining.size:
        best = remaining[0]
        overlap = _iou(boxes[best], boxes[remaining])
        group = remaining[overlap >= NMS_IOU]
        weights = scores[group][:, None]
        box = (boxes[group] * weights).sum(0) / weights.sum()
        points = (keypoints[group] * weights[:, :, None]).sum(0) / weights.sum()
        detections.append(Detection(box=box, keypoints=points, score=float(scores[best])))
        remaining = remaining[overlap < NMS_IOU]
    return detections
