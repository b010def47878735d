"""Smooth dense warps from sparse landmark moves: thin-plate splines fitted on the target points
(so the map goes from each output pixel back to where it samples the source), evaluated on a
coarse grid and upsampled, then one cv2.remap."""

from __future__ import annotations

import cv2
import numpy as np


def _kernel(squared_distance: np.ndarray) -> np.ndarray:
    """Thin-plate spline kernel r^2 log r^2 (0 at r = 0), computed in place."""
    np.maximum(squared_distance, 1e-12, out=squared_distance)
    logs = np.log(squared_distance)
    np.multiply(squared_distance, logs, out=squared_distance)
    return squared_distance


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    result = a @ b.T
    result *= -2.0
    result += (a * a).sum(1)[:, None]
    result += (b * b).sum(1)[None, :]
    return result


class ThinPlateSpline:
    """f: R^2 -> R^2 with f(centre_i) ~= value_i; `smoothing` relaxes the fit (stabilises close centres)."""

    def __init__(self, centres: np.ndarray, values: np.ndarray, smoothing: float = 1e-5) -> None:
        count = len(centres)
        self.centres = centres.astype(np.float64)
        kernel = _kernel(_squared_distances(self.centres, self.centres)) + smoothing * np.eye(count)
        poly = np.hstack([np.ones((count, 1)), self.centres])
        system = np.zeros((count + 3, count + 3))
        system[:count, :count] = kernel
        system[:count, count:] = poly
        system[count:, :count] = poly.T
        rhs = np.zeros((count + 3, values.shape[1]))
        rhs[:count] = values
        solution = np.linalg.solve(system, rhs)
        self.weights = solution[:count].astype(np.float32)
        self.affine = solution[count:].astype(np.float32)
        self.centres32 = self.centres.astype(np.float32)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        points = points.astype(np.float32)
        kernel = _kernel(_squared_distances(points, self.centres32))
        return kernel @ self.weights + self.affine[0] + points @ self.affine[1:]


class GridWarp:
    """A backward map over a rectangular region, sampled on a coarse grid.

    Coordinates are normalised to the region (0..1 on its longer side) for well-conditioned fits.
    `falloff` is 1 inside the face and eases to 0 at the region border, so the warp never touches
    the border and the region pastes back without a seam.
    """

    def __init__(self, x0: int, y0: int, width: int, height: int, cells: int = 32) -> None:
        self.x0, self.y0, self.width, self.height = x0, y0, width, height
        self.scale = float(max(width, height))
        self.grid_w = max(8, round(cells * width / self.scale))
        self.grid_h = max(8, round(cells * height / self.scale))
        # Grid nodes at pixel centres that align with cv2.resize's INTER_LINEAR upsampling.
        gx = (np.arange(self.grid_w) + 0.5) * width / self.grid_w - 0.5
        gy = (np.arange(self.grid_h) + 0.5) * height / self.grid_h - 0.5
        xs, ys = np.meshgrid(gx, gy)
        self.grid_px = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)  # region pixels
        self.grid = self.grid_px / self.scale
        # Frame pixel coordinates of the region's pixels: the identity map.
        px, py = np.meshgrid(np.arange(width, dtype=np.float32) + x0, np.arange(height, dtype=np.float32) + y0)
        self.identity_x, self.identity_y = px, py

    def normalise(self, points: np.ndarray) -> np.ndarray:
        return (points[:, :2] - np.array([self.x0, self.y0], np.float32)) / self.scale

    def displacement(
        self,
        targets: np.ndarray,
        sources: np.ndarray,
        smoothing: float = 1e-5,
        base: np.ndarray | None = None,
        box: tuple[int, int, int, int] | None = None,
    ) -> np.ndarray:
        """Coarse grid (grid_h x grid_w x 2) of source-minus-target offsets in region pixels.

        With `box` (grid x0, y0, x1, y1) only those nodes are evaluated and the rest come from `base`.
        """
        t = self.normalise(targets)
        s = self.normalise(sources)
        spline = ThinPlateSpline(t, s - t, smoothing)
        if box is None:
            return (spline(self.grid) * self.scale).reshape(self.grid_h, self.grid_w, 2)
        gx0, gy0, gx1, gy1 = box
        result = base.copy() if base is not None else np.zeros((self.grid_h, self.grid_w, 2), np.float32)
        nodes = self.grid.reshape(self.grid_h, self.grid_w, 2)[gy0:gy1, gx0:gx1].reshape(-1, 2)
        if len(nodes):
            result[gy0:gy1, gx0:gx1] = (spline(nodes) * self.scale).reshape(gy1 - gy0, gx1 - gx0, 2)
        return result

    def grid_box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        """Grid nodes covering a rectangle in region pixels (one node of margin for interpolation)."""
        step_x, step_y = self.width / self.grid_w, self.height / self.grid_h
        return (
            int(np.clip(np.floor(x0 / step_x - 1), 0, self.grid_w)),
            int(np.clip(np.floor(y0 / step_y - 1), 0, self.grid_h)),
            int(np.clip(np.ceil(x1 / step_x + 1), 0, self.grid_w)),
            int(np.clip(np.ceil(y1 / step_y + 1), 0, self.grid_h)),
        )

    def upsample(self, coarse: np.ndarray) -> list[np.ndarray]:
        """The coarse grid's x and y offsets at every region pixel: two contiguous HxW float32 maps
        (kept apart: cv2 arithmetic on contiguous planes is several times faster than on interleaved pairs)."""
        size = (self.width, self.height)
        return [
            cv2.resize(np.ascontiguousarray(coarse[..., axis], np.float32), size, interpolation=cv2.INTER_LINEAR)
            for axis in (0, 1)
        ]

    def remap(self, image: np.ndarray, offsets: list[np.ndarray]) -> np.ndarray:
        """Sample `image` (the full frame) at region pixel + (x, y) offsets; returns the region."""
        map_x = cv2.add(self.identity_x, offsets[0])
        map_y = cv2.add(self.identity_y, offsets[1])
        return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)
