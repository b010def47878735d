"""The generator stage of the renderer: aligned crop -> generator on the chosen runtime -> paste back.

It implements device.render.renderer.GeneratorStage. The crop size, the alignment template, the
tensor layout and names all come from the bundle's contract.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from device.errors import PortraitError
from device.runtime import crop as cropping
from device.runtime.base import Backend
from device.runtime.bundle import Bundle, psnr

MASK_EPSILON = 1.0 / 255.0


REFERENCE = ("reference_red", "reference_green", "reference_blue")


class BundleGenerator:
    def __init__(self, bundle: Bundle, backend: Backend) -> None:
        self.bundle, self.backend = bundle, backend
        self.name = f"{backend.name}:{bundle.name}-{bundle.version}"
        contract = bundle.contract
        self.size = int(contract["crop_size"])
        self.template = contract.get("alignment", {}).get("template", cropping.DEFAULT_TEMPLATE)
        spec = contract["inputs"][0]
        self.channels = int(spec["shape"][1])
        names = list(spec.get("channels", ["red", "green", "blue", "repair_mask"]))
        known = {"red", "green", "blue", "repair_mask", "mouth_interior", *REFERENCE}
        if len(names) != self.channels or not set(names) <= known or names[:3] != ["red", "green", "blue"]:
            raise PortraitError(f"generator {self.name}: input channels {names} are not ones this device can build")
        self.input_names = names
        # Bundles since 0.2 output the change to the crop (the device adds it); earlier ones the refined crop.
        self.outputs_change = contract["outputs"][0]["name"] == "change"
        # A bundle that is shown the mouth's opening draws its inside (and the lids) itself.
        self.owns_mouth = "mouth_interior" in names
        self.golden_psnr = None

    def health_check(self, min_psnr: float | None = None) -> float:
        """Run the golden vectors (this is also the warm-up); PortraitError when below the bundle's floor."""
        inputs, expected = self.bundle.golden()
        floor = float(self.bundle.manifest["golden"].get("min_psnr", 30.0) if min_psnr is None else min_psnr)
        worst = 99.0
        for x, y in zip(inputs, expected, strict=True):
            worst = min(worst, psnr(self._refined(x, self.backend.run(x[None])[0]), y))
        self.golden_psnr = worst
        if worst < floor:
            raise PortraitError(
                f"generator {self.name}: golden vectors give {worst:.1f} dB, below the bundle's "
                f"floor of {floor:.1f} dB; the runtime or the model is broken"
            )
        return worst

    def latency_ms(self, runs: int = 20) -> float:
        x = np.zeros([1, self.channels, self.size, self.size], np.float32)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            self.backend.run(x)
            times.append((time.perf_counter() - start) * 1000)
        return float(np.median(times))

    def _refined(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """The refined crop (3xSxS, 0..1) from one input (CxSxS) and the model's output for it."""
        return np.clip(x[:3] + out, 0.0, 1.0) if self.outputs_change else np.clip(out, 0.0, 1.0)

    def prepare(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
        """Once per photo: its aligned face (3xSxS float32 0..1) when the bundle takes it as a reference."""
        if not set(REFERENCE) & set(self.input_names):
            return None
        crop = cropping.reference(image, landmarks, self.size, self.template)
        return np.ascontiguousarray(crop.transpose(2, 0, 1), np.float32) * (1.0 / 255.0)

    def refine_crop(
        self,
        crop: np.ndarray,
        mask: np.ndarray,
        interior: np.ndarray | None = None,
        reference: np.ndarray | None = None,
    ) -> np.ndarray:
        """One generator call on an aligned crop (SxSx3 uint8 RGB, SxS float masks, 3xSxS reference)
        -> SxSx3 float 0..255."""
        x = np.empty((1, self.channels, self.size, self.size), np.float32)
        x[0, :3] = crop.transpose(2, 0, 1) * (1.0 / 255.0)
        for index, name in enumerate(self.input_names[3:], start=3):
            if name == "repair_mask":
                x[0, index] = mask
            elif name == "mouth_interior":
                x[0, index] = 0.0 if interior is None else interior
            else:
                x[0, index] = 0.0 if reference is None else reference[REFERENCE.index(name)]
        return self._refined(x[0], self.backend.run(x)[0]).transpose(1, 2, 0) * 255.0

    def refine(
        self,
        frame: np.ndarray,
        landmarks: np.ndarray,
        repair_mask: np.ndarray,
        context: object = None,
        corner: tuple[int, int] = (0, 0),
    ) -> np.ndarray:
        """The frame refined where `repair_mask` (the whole frame, or a patch of it from `corner`) allows,
        changed in place (the renderer passes its own copy of the photo) and returned."""
        ys, xs = np.nonzero(repair_mask > MASK_EPSILON)
        if len(ys) == 0:
            return frame
        size = self.size
        matrix = cropping.align_matrix(landmarks, size, self.template)
        crop = cropping.extract(frame, matrix, size)
        cx, cy = corner
        from_patch = matrix.copy()
        from_patch[:, 2] += matrix[:, :2] @ np.array([cx, cy], np.float64)
        mask = np.clip(
            cv2.warpAffine(repair_mask, from_patch, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0), 0.0, 1.0
        )
        interior = cropping.mouth_interior(landmarks, matrix, size) if self.owns_mouth else None
        reference = context if isinstance(context, np.ndarray) else None
        delta = self.refine_crop(crop, mask, interior, reference) - crop.astype(np.float32)
        # Paste back only the change, only over the mask's box: nothing else is resampled.
        height, width = frame.shape[:2]
        px0, py0 = max(int(xs.min()) - 2, 0), max(int(ys.min()) - 2, 0)
        px1, py1 = min(int(xs.max()) + 3, repair_mask.shape[1]), min(int(ys.max()) + 3, repair_mask.shape[0])
        x0, y0 = cx + px0, cy + py0
        x1, y1 = min(cx + px1, width), min(cy + py1, height)
        back = cropping.invert(matrix)
        back[:, 2] -= (x0, y0)
        delta_frame = cv2.warpAffine(
            delta, back, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
        feather = repair_mask[py0 : py0 + (y1 - y0), px0 : px0 + (x1 - x0), None]
        patch = frame[y0:y1, x0:x1].astype(np.float32) + delta_frame * np.minimum(feather * 1.5, 1.0)
        frame[y0:y1, x0:x1] = np.clip(patch + 0.5, 0, 255).astype(np.uint8)
        return frame
