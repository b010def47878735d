"""The person in a photo, as a soft mask: MediaPipe's selfie segmentation (256x256, Apache-2.0), run once
per photo on the TFLite runtime. It tells the head (with its hair and ears) from the background, so
the head can move over a background that stays still."""

from __future__ import annotations

import threading

import cv2
import numpy as np

from device.assets import model_path
from device.face.tflite import TFLiteModel

MODEL = "selfie_segmentation.tflite"
SIZE = 256


class PersonSegmenter:
    def __init__(self, threads: int = 2) -> None:
        self.model = TFLiteModel(model_path(MODEL), threads)
        self._lock = threading.Lock()

    def mask(self, image: np.ndarray) -> np.ndarray:
        """HxW float32 in 0..1: how surely each pixel of the RGB uint8 `image` belongs to a person."""
        height, width = image.shape[:2]
        small = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        with self._lock:
            raw = self.model(small[None])[0]
        probability = np.clip(np.asarray(raw, np.float32).reshape(SIZE, SIZE), 0.0, 1.0)
        # Upsampled smoothly, then sharpened a little: a 256-pixel mask is soft at a large photo's hair edge.
        full = cv2.resize(probability, (width, height), interpolation=cv2.INTER_LINEAR)
        return np.clip((full - 0.5) * 2.0 + 0.5, 0.0, 1.0).astype(np.float32)
