"""Paint what a warp cannot invent: the inside of an opening mouth, and the lash line of a
closed eye."""

from __future__ import annotations

import cv2
import numpy as np

from device.face import topology as topo

# A photo whose lips part by more than this (relative to the mouth width) shows its own teeth or mouth
# (the face mesh reads closed lips at up to 0.07).
OWN_INTERIOR_OPENING = 0.1
# Of what a photo shows between its lips, the part that hangs from the upper lip (the upper teeth);
# the rest rides on the lower lip (the lower teeth).
UPPER_SHARE = 0.65
BAND_SIZE = (24, 96)  # rows (lip to lip) x columns (corner to corner) of the stored band


def _lip_curves(points: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inner upper and lower lip's heights at columns `xs` (image x), from the landmarks."""
    upper, lower = points[topo.LIPS_INNER_UPPER], points[topo.LIPS_INNER_LOWER]
    order_u, order_l = np.argsort(upper[:, 0]), np.argsort(lower[:, 0])
    top = np.interp(xs, upper[order_u, 0], upper[order_u, 1])
    bottom = np.interp(xs, lower[order_l, 0], lower[order_l, 1])
    return top, bottom


class MouthPainter:
    """Dark cavity, a hint of upper and lower teeth and the tongue, shaded to the photo's own tones. A
    photo that shows its own teeth keeps them: they hang from the upper lip and ride on the lower one,
    and the dark opens between them."""

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
        self._keep_own_interior(source, landmarks[:, :2].astype(np.float64))

    def _keep_own_interior(self, source: np.ndarray, points: np.ndarray) -> None:
        """What the photo shows between its lips, as a band (rows from the upper lip to the lower one,
        columns from corner to corner) and its height per column relative to the mouth width; None
        when the lips are together."""
        self.band: np.ndarray | None = None
        self.band_gap = np.zeros(BAND_SIZE[1], np.float32)
        if topo.mouth_opening(points) < OWN_INTERIOR_OPENING:
            return
        upper = points[topo.LIPS_INNER_UPPER]
        left, right = float(upper[:, 0].min()), float(upper[:, 0].max())
        width = max(right - left, 1.0)
        rows, columns = BAND_SIZE
        xs = left + (np.arange(columns) + 0.5) / columns * width
        top, bottom = _lip_curves(points, xs)
        # A little inside each lip: the lip's own edge is not part of the teeth.
        inset = 0.06 * np.maximum(bottom - top, 0.0)
        v = (np.arange(rows) + 0.5) / rows
        map_y = (top + inset)[None, :] + v[:, None] * (bottom - top - 2 * inset)[None, :]
        map_x = np.broadcast_to(xs[None, :], map_y.shape)
        self.band = cv2.remap(
            source,
            map_x.astype(np.float32),
            map_y.astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        ).astype(np.float32)
        self.band_gap = (np.maximum(bottom - top, 0.0) / width).astype(np.float32)

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

        in_box = points - np.array([x0, y0])
        upper = in_box[topo.LIPS_INNER_UPPER]
        xs = np.arange(x1 - x0, dtype=np.float32)
        ys = np.arange(y1 - y0, dtype=np.float32)[:, None]
        top, bottom = (curve[None, :] for curve in _lip_curves(in_box, xs))
        gap = np.maximum(bottom - top, 1e-3)
        depth = np.clip((ys - top) / gap, 0.0, 1.0)  # 0 at the upper lip, 1 at the lower lip
        width = max(float(upper[:, 0].max() - upper[:, 0].min()), 1.0)
        across = (xs[None, :] - float(upper[:, 0].mean())) / (width / 2.0)  # -1..1 corner to corner

        colour = np.empty((*mask.shape, 3), np.float32)
        shade = np.exp(-(across**2) / 0.35) * np.exp(-((depth - 0.45) ** 2) / 0.15)
        colour[:] = self.cavity
        colour += (self.throat - self.cavity) * shade[..., None]
        opening = float(gap.max())
        if opening > 0.18 * width:
            tongue = np.exp(-(across**2) / 0.2) * np.clip((depth - 0.7) / 0.3, 0, 1)
            colour += (self.tongue - colour) * (0.5 * tongue)[..., None]
        if self.band is not None:
            self._own_interior(colour, top, bottom, gap, across, ys, width)
        else:
            self._painted_teeth(colour, top, bottom, across, ys, width, opening)
        alpha = (mask * strength)[..., None]
        patch = region[y0:y1, x0:x1].astype(np.float32)
        region[y0:y1, x0:x1] = np.clip(patch + (colour - patch) * alpha, 0, 255).astype(np.uint8)

    def _painted_teeth(
        self,
        colour: np.ndarray,
        top: np.ndarray,
        bottom: np.ndarray,
        across: np.ndarray,
        ys: np.ndarray,
        width: float,
        opening: float,
    ) -> None:
        """A hint of teeth over `colour`, in place, for a photo that shows none of its own."""
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

    def _own_interior(
        self,
        colour: np.ndarray,
        top: np.ndarray,
        bottom: np.ndarray,
        gap: np.ndarray,
        across: np.ndarray,
        ys: np.ndarray,
        width: float,
    ) -> None:
        """The photo's own band over `colour` (the cavity), in place: its upper share hangs from the
        upper lip as it was, its lower share rides on the lower lip, the cavity shows between; a mouth
        less open than the photo's shows the upper part, the lower lip covering the rest."""
        assert self.band is not None
        rows, columns = BAND_SIZE
        u = np.clip((across + 1.0) / 2.0, 0.0, 1.0)  # 1 x W
        # The photo's gap in this frame's pixels, column by column (teeth keep their height).
        own = np.interp(u[0] * (columns - 1), np.arange(columns), self.band_gap)[None, :] * width
        own = np.maximum(own, 1.0)
        from_top, from_bottom = ys - top, bottom - ys
        upper_extent = np.minimum(UPPER_SHARE * own, gap)
        lower_extent = np.clip(gap - UPPER_SHARE * own, 0.0, (1.0 - UPPER_SHARE) * own)
        upper_alpha = np.clip(upper_extent - from_top + 0.5, 0.0, 1.0)
        lower_alpha = np.clip(lower_extent - from_bottom + 0.5, 0.0, 1.0) * (1.0 - upper_alpha)
        v = np.where(upper_alpha > 0, from_top / own, 1.0 - from_bottom / own)
        map_x = np.broadcast_to(u * (columns - 1), v.shape).astype(np.float32)
        map_y = np.clip(v * rows - 0.5, 0.0, rows - 1).astype(np.float32)
        own_colour = cv2.remap(self.band, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        alpha = (upper_alpha + lower_alpha)[..., None]
        colour += (own_colour - colour) * alpha


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
