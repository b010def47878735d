"""Paint what a warp cannot invent: the inside of an opening mouth, and the lash line of a
closed eye."""

from __future__ import annotations

import cv2
import numpy as np

from device.face import topology as topo


class MouthPainter:
    """Dark cavity, a hint of upper and lower teeth and the tongue, shaded to the photo's own tones."""

    def __init__(self, source: np.ndarray, landmarks: np.ndarray) -> None:
        skin = _mean_colour(source, landmarks[topo.CHEEKS, :2], radius=3)
        lips = _mean_colour(source, landmarks[topo.LIPS_OUTER_LOWER[2:-2], :2], radius=1)
        brightness = float(np.clip(skin.mean() / 170.0, 0.45, 1.15))
        # A mouth's inside is dark red whatever the lips look like; the lips only tint it.
        warm = np.array([96.0, 34.0, 34.0]) * brightness
        self.cavity = np.clip(0.65 * warm + 0.35 * lips * 0.4, 8, 120)
        self.throat = np.clip(self.cavity * 0.3, 3, 50)
        self.tongue = np.clip(lips * 0.75 + np.array([25.0, 0.0, 0.0]), 0, 255)
        self.teeth = np.clip(np.array([238.0, 234.0, 222.0]) * brightness, 60, 248)

    def paint(self, region: np.ndarray, targets: np.ndarray, offset: tuple[int, int], strength: float) -> None:
        """Paint in place into `region` (a view of the frame starting at `offset`), using the
        target landmarks of this frame; `strength` 0..1 fades the painting in as the mouth opens."""
        if strength <= 0.01:
            return
        points = targets[:, :2] - np.array(offset, np.float64)
        polygon = topo.inner_mouth_polygon(points)
        x0, y0 = np.floor(polygon.min(0)).astype(int) - 2
        x1, y1 = np.ceil(polygon.max(0)).astype(int) + 3
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, region.shape[1]), min(y1, region.shape[0])
        if x1 - x0 < 3 or y1 - y0 < 2:
            return
        local = polygon - np.array([x0, y0])
        mask = np.zeros((y1 - y0, x1 - x0), np.float32)
        # Sub-pixel polygon with 4 fractional bits: the lips' inner edge stays smooth.
        cv2.fillPoly(mask, [np.round(local * 16).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=4)
        if mask.max() <= 0:
            return
        mask = cv2.GaussianBlur(mask, (3, 3), 0.6)  # soften the lip edge by a fraction of a pixel

        upper = points[topo.LIPS_INNER_UPPER] - np.array([x0, y0])
        lower = points[topo.LIPS_INNER_LOWER] - np.array([x0, y0])
        xs = np.arange(x1 - x0, dtype=np.float32)
        ys = np.arange(y1 - y0, dtype=np.float32)[:, None]
        order_u, order_l = np.argsort(upper[:, 0]), np.argsort(lower[:, 0])
        top = np.interp(xs, upper[order_u, 0], upper[order_u, 1])[None, :]
        bottom = np.interp(xs, lower[order_l, 0], lower[order_l, 1])[None, :]
        gap = np.maximum(bottom - top, 1e-3)
        depth = np.clip((ys - top) / gap, 0.0, 1.0)  # 0 at the upper lip, 1 at the lower lip
        width = max(float(upper[:, 0].max() - upper[:, 0].min()), 1.0)
        across = (xs[None, :] - float(upper[:, 0].mean())) / (width / 2.0)  # -1..1 corner to corner

        colour = np.empty((*mask.shape, 3), np.float32)
        shade = np.exp(-(across**2) / 0.35) * np.exp(-((depth - 0.45) ** 2) / 0.15)
        colour[:] = self.cavity
        colour += (self.throat - self.cavity) * shade[..., None]
        opening = float(gap.max())
        # Upper teeth hang from the upper lip between the canines; their band grows with the opening.
        teeth_band = min(0.1 * width, 0.32 * opening)
        teeth = (ys - top < teeth_band) & (np.abs(across) < 0.72)
        teeth_alpha = teeth * np.clip(1.0 - np.abs(across) / 0.72, 0, 1) ** 0.35
        teeth_alpha *= np.clip((teeth_band - (ys - top)) / 1.5, 0, 1)
        # Teeth catch less light toward the back of the band.
        teeth_shade = 1.0 - 0.25 * np.clip((ys - top) / max(teeth_band, 1.0), 0, 1)
        teeth_colour = self.teeth * teeth_shade[..., None]
        colour += (teeth_colour - colour) * teeth_alpha[..., None]
        if opening > 0.18 * width:
            lower_band = 0.5 * teeth_band
            lower_teeth = (bottom - ys < lower_band) & (np.abs(across) < 0.55)
            colour += (self.teeth * 0.75 - colour) * (0.35 * lower_teeth)[..., None]
            tongue = np.exp(-(across**2) / 0.2) * np.clip((depth - 0.7) / 0.3, 0, 1)
            colour += (self.tongue - colour) * (0.5 * tongue)[..., None]
        alpha = (mask * strength)[..., None]
        patch = region[y0:y1, x0:x1].astype(np.float32)
        region[y0:y1, x0:x1] = np.clip(patch + (colour - patch) * alpha, 0, 255).astype(np.uint8)


def paint_lash_line(region: np.ndarray, points: np.ndarray, offset: tuple[int, int], strength: float) -> None:
    """A closed eye shows its lashes: a soft dark line along the closed lid."""
    if strength <= 0.05:
        return
    shifted = points - np.array(offset, np.float64)
    line = np.round(shifted * 16).astype(np.int32)
    overlay = region.copy()
    thickness = max(1, round(np.linalg.norm(shifted[-1] - shifted[0]) / 25))
    cv2.polylines(overlay, [line], False, (25, 18, 16), thickness, lineType=cv2.LINE_AA, shift=4)
    cv2.addWeighted(overlay, 0.6 * strength, region, 1.0 - 0.6 * strength, 0, dst=region)


def _mean_colour(image: np.ndarray, points: np.ndarray, radius: int) -> np.ndarray:
    height, width = image.shape[:2]
    samples = []
    for x, y in np.round(points).astype(int):
        x0, x1 = max(x - radius, 0), min(x + radius + 1, width)
        y0, y1 = max(y - radius, 0), min(y + radius + 1, height)
        if x1 > x0 and y1 > y0:
            samples.append(image[y0:y1, x0:x1].reshape(-1, 3))
    if not samples:
        return np.array([150.0, 110.0, 100.0])
    return np.concatenate(samples).astype(np.float64).mean(0)
