"""The whole head moves as one: hair, ears and the top of the neck follow the face's rigid motion over a
background that stays still, and the neck bends smoothly into shoulders that do not move.

Once per photo: the person mask (device.face.segment) gives the head's silhouette; the background
behind it is filled in (inpainted, at a reduced scale: it is only seen at the edge of a moving head).
Per frame: the rigid part of the face's motion, a similarity transform (shift, turn in the image
plane, scale) fitted to stable landmarks, is applied to the head with a weight that is 1 on the head
and falls to 0 down the neck. Where the head moved away from, the filled background shows.

Cost grows with the head, not the frame: everything runs in a box around the head.
"""

from __future__ import annotations

import cv2
import numpy as np

from device.face import topology as topo
from device.render.warp import smoothstep

# Down the neck, in face heights below the chin: full head motion above NECK_TOP, none below NECK_BOTTOM.
# A real head nods and turns on the upper neck: a collar a third of a face below the chin stays put.
NECK_TOP, NECK_BOTTOM = 0.05, 0.35
NECK_HALF_WIDTH = 0.3  # in face widths: the neck column that bends with the head
IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def similarity(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(scale, rotation, shift) of the similarity that best maps source points onto target points, in
    any dimension (Umeyama's least squares: no reflection)."""
    src, dst = np.asarray(source, np.float64), np.asarray(target, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    var = float((a**2).sum())
    if var <= 1e-12:
        return 1.0, np.eye(src.shape[1]), mu_d - mu_s
    u, s, vt = np.linalg.svd(b.T @ a)
    signs = np.ones(src.shape[1])
    signs[-1] = np.sign(np.linalg.det(u @ vt)) or 1.0
    rotation = u @ np.diag(signs) @ vt
    scale = float((s * signs).sum() / var)
    return scale, rotation, mu_d - scale * rotation @ mu_s


def fit_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, shift) that best maps source points onto target."""
    scale, rotation, shift = similarity(source, target)
    return np.column_stack([scale * rotation, shift])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points[..., :2] @ matrix[:, :2].T + matrix[:, 2]


def invert(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(matrix.astype(np.float64))


class HeadMotion:
    def __init__(self, image: np.ndarray, landmarks: np.ndarray, person: np.ndarray) -> None:
        """`person`: HxW float32 in 0..1, the person mask of `image` (1 on the person)."""
        height, width = image.shape[:2]
        points = landmarks[:, :2].astype(np.float64)
        oval = points[topo.FACE_OVAL]
        face_w = float(oval[:, 0].max() - oval[:, 0].min())
        self.face_w = face_w
        self.face_h = float(oval[:, 1].max() - oval[:, 1].min())
        self.chin = points[topo.CHIN[0]]
        eyes = points[list(topo.EYE_CENTRE_LEFT)].mean(0) - points[list(topo.EYE_CENTRE_RIGHT)].mean(0)
        axis_x = eyes / (np.linalg.norm(eyes) or 1.0)
        self.down = np.array([-axis_x[1], axis_x[0]])  # the face's own "down", for a tilted portrait
        # The box: the head with its hair, the neck, and a margin for motion.
        centre_x = float(oval[:, 0].mean())
        x0 = int(max(0, centre_x - 1.9 * face_w))
        x1 = int(min(width, centre_x + 1.9 * face_w))
        y0 = int(max(0, oval[:, 1].min() - 1.0 * self.face_h))
        y1 = int(min(height, self.chin[1] + (NECK_BOTTOM + 0.25) * self.face_h))
        self.box = (x0, y0, x1, y1)
        self.shape = (height, width)
        self.source_points = points[topo.SKULL]
        box_person = np.clip(person[y0:y1, x0:x1].astype(np.float32), 0.0, 1.0)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        self.grid = np.stack([xs, ys], axis=-1)
        # The motion field's coarse grid, placed where cv2.resize puts a small image's pixel centres.
        # Nodes 8 px apart, or 1/64 of the box on a big photo: the field changes over a face's size.
        step = max(8, max(x1 - x0, y1 - y0) // 64)
        nx, ny = max(2, (x1 - x0) // step), max(2, (y1 - y0) // step)
        cx = x0 + (np.arange(nx, dtype=np.float32) + 0.5) * (x1 - x0) / nx - 0.5
        cy = y0 + (np.arange(ny, dtype=np.float32) + 0.5) * (y1 - y0) / ny - 0.5
        self.coarse = np.stack(np.meshgrid(cx, cy), axis=-1)
        background = self._fill_background(image[y0:y1, x0:x1], box_person, self.grid)
        # What shows where the head moved away: the filled background inside the head's hole, the photo
        # around it. The face's own changes (expression, generator) lie on the head, inside the hole.
        self.still = np.where(self.hole[..., None] > 0.5, background, image[y0:y1, x0:x1])
        self.grid_xy = (np.ascontiguousarray(self.grid[..., 0]), np.ascontiguousarray(self.grid[..., 1]))
        # The person mask in frame pixels and 8 bits: the moved head's coverage is sampled with its maps.
        self.person_in_frame = np.zeros((height, width), np.uint8)
        self.person_in_frame[y0:y1, x0:x1] = np.round(box_person * 255.0).astype(np.uint8)

    def _head_weight(self, xy: np.ndarray) -> np.ndarray:
        """1 on the head, easing to 0 down the neck (in the face's own vertical direction); below the chin
        only the neck itself bends, the shoulders beside it stay where they are."""
        offset = xy - self.chin
        below_chin = (offset @ self.down) / max(self.face_h, 1.0)
        across = np.abs(offset @ np.array([self.down[1], -self.down[0]])) / max(self.face_w, 1.0)
        down_the_neck = 1.0 - smoothstep(NECK_TOP, NECK_BOTTOM, below_chin)
        beside_the_neck = smoothstep(0.0, 0.3, below_chin) * smoothstep(NECK_HALF_WIDTH, NECK_HALF_WIDTH + 0.35, across)
        # Motion fades out before the box's edge: hair that reaches past it bends instead of tearing.
        x0, y0, x1, y1 = self.box
        margin = 0.25 * self.face_w
        inside = np.minimum.reduce([xy[..., 0] - x0, x1 - 1 - xy[..., 0], xy[..., 1] - y0, y1 - 1 - xy[..., 1]])
        at_edge = np.where(self.open_edges(xy), 1.0, smoothstep(0.0, margin, inside))
        return (down_the_neck * (1.0 - beside_the_neck) * at_edge).astype(np.float32)

    def open_edges(self, xy: np.ndarray) -> np.ndarray:
        """Where the box ends at the photo's own border: nothing lies beyond it to tear from."""
        x0, y0, x1, y1 = self.box
        height, width = self.shape
        near = 0.25 * self.face_w
        return (
            ((xy[..., 0] - x0 < near) & (x0 == 0))
            | ((x1 - 1 - xy[..., 0] < near) & (x1 == width))
            | ((xy[..., 1] - y0 < near) & (y0 == 0))
            | ((y1 - 1 - xy[..., 1] < near) & (y1 == height))
        )

    def _fill_background(self, patch: np.ndarray, person: np.ndarray, grid: np.ndarray) -> np.ndarray:
        """The box with the head taken out and the background continued into the hole."""
        hole = ((person > 0.3) & (self._head_weight(grid) > 0.05)).astype(np.uint8)
        size = max(3, int(0.06 * self.face_h) | 1)
        hole = cv2.dilate(hole, np.ones((size, size), np.uint8))
        self.hole = hole.astype(np.float32)
        rows, cols = np.flatnonzero(hole.any(axis=1)), np.flatnonzero(hole.any(axis=0))
        self.head_extent = (
            (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1) if len(rows) else (0, 0, 0, 0)
        )
        scale = min(1.0, 240.0 / max(patch.shape[:2]))  # inpainting is slow; the fill is seen at edges only
        small = cv2.resize(patch, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        small_hole = cv2.resize(hole, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST)
        filled = cv2.inpaint(small, small_hole, 5, cv2.INPAINT_TELEA)
        filled = cv2.resize(filled, (patch.shape[1], patch.shape[0]), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(filled, dtype=np.uint8)

    def rigid_motion(self, targets: np.ndarray) -> np.ndarray:
        """The similarity that carries the photo's stable landmarks to where this frame puts them."""
        return fit_similarity(self.source_points, targets[topo.SKULL, :2])

    def compose(self, frame: np.ndarray, motion: np.ndarray) -> np.ndarray:
        """`frame` (the photo with this frame's expression, changed in place) with its head moved by `motion`.

        Each output pixel shows the moved person where the moved person covers it, and otherwise the
        still picture: the photo, or the filled-in background where the head used to be."""
        if np.abs(motion - IDENTITY).max() < 1e-4:
            return frame
        x0, y0, x1, y1 = self.box
        # Where each output pixel takes its colour from: the head's own place before the move, with the
        # weight of where that is (full on the head, none on the shoulders). The field is smooth, so it
        # is computed on a coarse grid and upsampled, as the face warp is.
        coarse = self.coarse
        back = apply(invert(motion), coarse).astype(np.float32)
        shift = self._head_weight(back)[..., None] * (back - coarse)  # zero on the shoulders and the box edge
        # Only around the head does anything change: its extent in the photo, grown by how far it moved
        # (bilinear upsampling never exceeds the coarse grid's largest shift).
        reach = int(np.ceil(np.abs(shift).max())) + 2
        top, bottom, left, right = self.head_extent
        top, left = max(0, top - reach), max(0, left - reach)
        bottom, right = min(y1 - y0, bottom + reach), min(x1 - x0, right + reach)
        # Separate x and y maps, contiguous, with cv2 arithmetic: OpenCV's interleaved-map remap of a
        # one-channel mask and numpy's strided adds were each slower than the rest of this together.
        size = (x1 - x0, y1 - y0)
        maps = []
        for axis in (0, 1):
            field = cv2.resize(np.ascontiguousarray(shift[..., axis]), size, interpolation=cv2.INTER_LINEAR)
            maps.append(cv2.add(self.grid_xy[axis][top:bottom, left:right], field[top:bottom, left:right]))
        moved = cv2.remap(frame, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        covered = cv2.remap(self.person_in_frame, maps[0], maps[1], cv2.INTER_LINEAR, borderValue=0)
        covered = covered.astype(np.float32) * (1.0 / 255.0)
        still = self.still[top:bottom, left:right]
        # In place: the frame is this render's own copy of the photo.
        frame[y0 + top : y0 + bottom, x0 + left : x0 + right] = cv2.blendLinear(moved, still, covered, 1.0 - covered)
        return frame
