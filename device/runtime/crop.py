"""The aligned face crop the generator works on: a similarity transform that puts the eyes and the
mouth at fixed places of a square crop (the template lives in the bundle's contract), and the way
back. Shared by the device stage, the training recipe and the export calibration, so all three
see the same crops."""

from __future__ import annotations

import cv2
import numpy as np

from device.face import topology as topo

# Fractions of the crop side: the subject's right eye (image left), left eye, mouth corners' centre.
DEFAULT_TEMPLATE = {"right_eye": [0.3125, 0.40], "left_eye": [0.6875, 0.40], "mouth": [0.5, 0.77]}


def anchor_points(landmarks: np.ndarray) -> np.ndarray:
    """Right eye centre, left eye centre, mouth centre (3x2 image pixels) from 468 landmarks."""
    points = np.asarray(landmarks, np.float64)[:, :2]
    return np.stack(
        [
            points[list(topo.EYE_CENTRE_RIGHT)].mean(0),
            points[list(topo.EYE_CENTRE_LEFT)].mean(0),
            points[list(topo.MOUTH_CORNERS)].mean(0),
        ]
    )


def align_matrix(landmarks: np.ndarray, size: int, template: dict | None = None) -> np.ndarray:
    """2x3 similarity (rotation, uniform scale, shift) from image pixels to crop pixels, the
    least-squares fit of the three anchors onto the template."""
    template = template or DEFAULT_TEMPLATE
    src = anchor_points(landmarks)
    dst = np.array([template["right_eye"], template["left_eye"], template["mouth"]], np.float64) * size
    # Closed-form 2-D similarity (Umeyama without reflection).
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    a = (s * d).sum()
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()
    norm = (s**2).sum()
    if norm <= 1e-9:
        raise ValueError("degenerate face landmarks: eyes and mouth coincide")
    c, k = a / norm, b / norm
    rot = np.array([[c, -k], [k, c]])
    shift = mu_d - rot @ mu_s
    return np.column_stack([rot, shift]).astype(np.float64)


def extract(image: np.ndarray, matrix: np.ndarray, size: int, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """The crop (size x size) of `image` (HxWxC or HxW) under `matrix`; outside the image: edge pixels."""
    return cv2.warpAffine(image, matrix, (size, size), flags=interpolation, borderMode=cv2.BORDER_REPLICATE)


def invert(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(matrix)


def mouth_interior(landmarks: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """SxS float32 0..1: the mouth opening (inside the inner lips) of `landmarks`, drawn in the crop
    with sub-pixel, anti-aliased edges. Drawn in the crop, not cut from a frame-sized mask: cheaper,
    and the same whatever the frame's size."""
    points = np.asarray(landmarks, np.float64)[:, :2] @ matrix[:, :2].T + matrix[:, 2]
    polygon = topo.inner_mouth_polygon(points)[:, :2]
    mask = np.zeros((size, size), np.float32)
    cv2.fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=4)
    return mask


def reference(image: np.ndarray, landmarks: np.ndarray, size: int, template: dict | None = None) -> np.ndarray:
    """The photo's own face, aligned like every frame's crop (SxSx3 uint8): what the generator copies
    the person's teeth, lip colour and eyes from."""
    return extract(image, align_matrix(landmarks, size, template), size)
