"""Render one frame: rig(params) -> target landmarks -> dense warp of the face region (the jaw moves
over a still neck) -> mouth interior (painted, or the generator's) -> generator (when a model is
loaded) -> the whole head's motion -> the full frame.

The source photo is analysed once; a frame costs two small spline fits, one remap of the face
region and a few small paints, which is what makes real time possible on a Pi-class CPU.
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

from device.face import topology as topo
from device.face.analysis import Face
from device.motion.params import FaceParams
from device.render.head import HeadMotion, apply, invert
from device.render.mouth import MouthPainter, paint_lash_line
from device.render.rig import CONTROL, LOWER_LIP, UPPER_LIP, FaceRig
from device.render.warp import GridWarp, smoothstep
from device.timing import StageTimer

REGION_SCALE = 1.9  # the warped region around the face, relative to the face's size
FACE_ELLIPSE_SCALE = 1.12  # inside this (relative to the face oval) the warp is at full strength
BORDER_ANCHORS = 7  # zero-motion anchors per region side keep the spline calm far from the face
# Below the jaw line the neck and clothes stay still: this far below it (in eye distances), feathered.
JAW_MARGIN = 0.04
JAW_FEATHER = 0.04
# Two maps, split along the inner lower lip and the lower eyelids: the upper map knows the upper lip
# and upper lids but not the lower ones, the lower map the reverse.
_LOWER_LIDS = set(topo.RIGHT_EYE_LOWER[1:-1] + topo.LEFT_EYE_LOWER[1:-1])
_UPPER_LIDS = set(topo.RIGHT_EYE_UPPER[1:-1] + topo.LEFT_EYE_UPPER[1:-1])
CONTROL_UPPER_MAP = [i for i in CONTROL if i not in set(LOWER_LIP) | _LOWER_LIDS]
CONTROL_LOWER_MAP = [i for i in CONTROL if i not in set(UPPER_LIP) | _UPPER_LIDS]


def mouth_interior(points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """HxW uint8, 1 inside the mouth opening of the landmarks `points`: the area the painter owns."""
    interior = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(interior, [np.round(topo.inner_mouth_polygon(points)[:, :2]).astype(np.int32)], 1)
    return interior


class GeneratorStage(Protocol):
    """The seam for the trained generator (see device/runtime): it refines the warped frame where the
    warp stretched (or left the mouth's inside to it), given this frame's landmarks and a repair mask
    over the frame. `prepare` is called once per photo (what the generator keeps of the photo itself,
    e.g. its own teeth and lip colour) and its result is passed back to every `refine`."""

    name: str
    owns_mouth: bool  # True: it draws the open mouth's inside and the lids itself, nothing is painted

    def prepare(self, image: np.ndarray, landmarks: np.ndarray) -> object: ...

    def refine(
        self,
        frame: np.ndarray,
        landmarks: np.ndarray,
        repair_mask: np.ndarray,
        context: object = None,
        corner: tuple[int, int] = (0, 0),
    ) -> np.ndarray:
        """`repair_mask` covers the frame from `corner` (x, y) on: the whole frame, or a patch of it.
        May change `frame` in place (it is the render's own copy); returns the refined frame."""
        ...


class Renderer:
    def __init__(
        self,
        image: np.ndarray,
        face: Face,
        close_mouth_at_rest: bool = False,
        generator: GeneratorStage | None = None,
        timer: StageTimer | None = None,
        person_mask: np.ndarray | None = None,
        owns_mouth: bool | None = None,
    ) -> None:
        """`person_mask` (HxW, 0..1, see device.face.segment): with it the whole head moves (hair, ears,
        neck) over a still background; without it head motion turns the face inside its region only.
        `owns_mouth`: nothing is painted and the repair mask covers the whole mouth, as for a generator
        that draws the mouth itself (default: whether `generator` does); training data sets it alone."""
        self.image = np.ascontiguousarray(image)
        self.face = face
        self.generator = generator
        self.timer = timer or StageTimer()
        self.rig = FaceRig(face.landmarks, face.iris, close_mouth_at_rest)
        self.painter = MouthPainter(self.image, face.landmarks)
        self.source = face.landmarks[:, :2].astype(np.float32)
        self.source_iris = None if face.iris is None else face.iris.reshape(-1, 2).astype(np.float32)
        self.rest_open = bool(not close_mouth_at_rest)
        self.head = None if person_mask is None else HeadMotion(self.image, face.landmarks, person_mask)
        if owns_mouth is None:
            owns_mouth = generator is not None and bool(getattr(generator, "owns_mouth", False))
        self.owns_mouth = owns_mouth
        self.generator_context = None if generator is None else generator.prepare(self.image, self.source)
        self._set_region()
        self._set_jaw_line()

    def _set_region(self) -> None:
        height, width = self.image.shape[:2]
        oval = self.source[topo.FACE_OVAL]
        centre = (oval.min(0) + oval.max(0)) / 2.0
        half = (oval.max(0) - oval.min(0)) / 2.0
        side = REGION_SCALE * float(max(half)) * 2.0
        x0 = int(max(0, np.floor(centre[0] - side / 2)))
        y0 = int(max(0, np.floor(centre[1] - side / 2 - 0.1 * side)))  # hair above moves with the head
        x1 = int(min(width, np.ceil(centre[0] + side / 2)))
        y1 = int(min(height, np.ceil(centre[1] + side / 2)))
        self.warp = GridWarp(x0, y0, x1 - x0, y1 - y0)
        # Anchors on the region border: whatever the face does, the border stays put.
        ts = np.linspace(0.0, 1.0, BORDER_ANCHORS, endpoint=False)
        w, h = x1 - x0 - 1, y1 - y0 - 1
        border = np.concatenate([
            np.column_stack([ts * w, np.zeros_like(ts)]), np.column_stack([np.full_like(ts, w), ts * h]),
            np.column_stack([w - ts * w, np.full_like(ts, h)]), np.column_stack([np.zeros_like(ts), h - ts * h]),
        ])  # fmt: skip
        self.anchors = (border + np.array([x0, y0])).astype(np.float32)
        # Full strength inside the face ellipse, easing to zero before the region border.
        xs = np.arange(x0, x1, dtype=np.float32)[None, :]
        ys = np.arange(y0, y1, dtype=np.float32)[:, None]
        ax, ay = half * FACE_ELLIPSE_SCALE
        rho = np.sqrt(((xs - centre[0]) / ax) ** 2 + ((ys - centre[1]) / ay) ** 2)
        edge = min((centre[0] - x0) / ax, (x1 - centre[0]) / ax, (centre[1] - y0) / ay, (y1 - centre[1]) / ay)
        edge = max(edge * 0.96, 1.05)
        self.falloff = (1.0 - smoothstep(1.0, edge, rho)).astype(np.float32)
        # The lower-lip map must also be faded where it hands over to the main map.
        self.face_centre = centre

    def _set_jaw_line(self) -> None:
        """The face outline below the mouth, ear to ear through the chin: below it nothing moves."""
        local = self.rig.local
        lowest = float(local[topo.FACE_OVAL, 1].max())
        mouth_y = float(self.rig.mouth_centre[1])
        jaw = [i for i in topo.FACE_OVAL if local[i, 1] > mouth_y - 0.25 * (lowest - mouth_y)]
        self.jaw_line = sorted(jaw, key=lambda i: float(local[i, 0]))
        self.jaw_margin = JAW_MARGIN * self.rig.unit
        self.jaw_feather = max(1.0, JAW_FEATHER * self.rig.unit)

    def below_jaw(self, targets: np.ndarray) -> tuple[int, np.ndarray]:
        """(first row, mask) over the warp region from that row down: 1 below both this frame's jaw
        line and the photo's, feathered. There the neck and clothes stay as they are; the chin moves
        over them, and where it rises it uncovers what the warp stretches from below."""
        warp = self.warp
        down = self.rig.axis_y
        shift = np.array([warp.x0, warp.y0], np.float64)
        now, rest = targets[self.jaw_line, :2] - shift, self.source[self.jaw_line].astype(np.float64) - shift
        lower = np.where(((now - rest) @ down > 0)[:, None], now, rest) + self.jaw_margin * down
        reach = 2.0 * (warp.width + warp.height)
        polygon = np.concatenate([[lower[0] + reach * down], lower, [lower[-1] + reach * down]])
        top = int(np.clip(np.floor(lower[:, 1].min() - 3 * self.jaw_feather), 0, warp.height))
        height, width = warp.height - top, warp.width
        # A wide feather is smooth: draw and blur it at a reduced scale, where cv2.resize puts the
        # pixel centres, and upsample (at 1080x1920 a sixth of the full-size cost, within 3 % of it).
        step = max(1, int(self.jaw_feather // 1.25))
        small = (-(-height // step), -(-width // step))
        band = np.zeros(small, np.float32)
        local = (polygon - np.array([0.0, top]) + 0.5) / step - 0.5
        cv2.fillPoly(band, [np.round(local * 16).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=4)
        band = cv2.GaussianBlur(band, (0, 0), self.jaw_feather / step)
        if step > 1:
            band = cv2.resize(band, (width, height), interpolation=cv2.INTER_LINEAR)
        return top, band

    # ------------------------------------------------------------------------------------------
    def render(self, params: FaceParams, shape: np.ndarray | None = None) -> np.ndarray:
        """One frame; `shape`: a performer's face shape for the rig (FaceRig.pose)."""
        timer = self.timer
        with timer.stage("rig"):
            targets, iris = self.rig.pose(params, shape)
            motion = None
            if self.head is not None:
                # The rigid part of the motion moves the whole head at the end; the face warp does the rest.
                motion = self.head.rigid_motion(self.rig.head_only(params))
                back = invert(motion)
                targets = apply(back, targets)
                iris = None if iris is None else apply(back, iris)
        with timer.stage("warp"):
            frame = self._warp(targets, iris, (params.blink_right, params.blink_left))
        if not self.owns_mouth:
            with timer.stage("mouth"):
                self._paint(frame, targets, params, shaped=shape is not None)
        if self.generator is not None:
            with timer.stage("generator"):
                mask, corner = self.repair_patch(targets)
                frame = self.generator.refine(frame, targets, mask, self.generator_context, corner)
        if motion is not None and self.head is not None:
            with timer.stage("head"):
                frame = self.head.compose(frame, motion)
        return frame

    def _controls(
        self, targets: np.ndarray, iris: np.ndarray | None, indices: list[int], blinks: tuple[float, float]
    ) -> tuple[np.ndarray, np.ndarray]:
        target = [targets[indices], self.anchors]
        source = [self.source[indices], self.anchors]
        if iris is not None and self.source_iris is not None:
            for side, blink in enumerate(blinks):
                # A closing lid hides the iris: pinning it would hold the eye open.
                if blink < 0.15:
                    target.append(iris[side])
                    source.append(self.source_iris[side * 5 : side * 5 + 5])
        return np.concatenate(target).astype(np.float32), np.concatenate(source).astype(np.float32)

    def _warp(self, targets: np.ndarray, iris: np.ndarray | None, blinks: tuple[float, float]) -> np.ndarray:
        warp = self.warp
        # Two maps, split at the mouth and the eyes: a mouth that closes over teeth (or opens from
        # closed lips) and a lid that closes over an eye need the upper part to sample the upper
        # part and the lower the lower, which no single smooth map can do across the seam.
        t_upper, s_upper = self._controls(targets, iris, CONTROL_UPPER_MAP, blinks)
        t_lower, s_lower = self._controls(targets, None, CONTROL_LOWER_MAP, blinks)
        coarse_upper = warp.displacement(t_upper, s_upper)
        below, box = self._below_seam(targets)
        coarse_lower = warp.displacement(t_lower, s_lower, base=coarse_upper, box=warp.grid_box(*box))
        offsets = warp.upsample(coarse_upper)
        # The lower map differs from the upper one only inside the seam's box: blend it in there alone.
        bx0, by0, bx1, by1 = (int(v) for v in box) if np.all(np.isfinite(box)) else (0, 0, 0, 0)
        if bx1 > bx0 and by1 > by0:
            seam = below[by0:by1, bx0:bx1]
            for upper, lower in zip(offsets, warp.upsample(coarse_lower), strict=True):
                inside = upper[by0:by1, bx0:bx1]
                inside += (lower[by0:by1, bx0:bx1] - inside) * seam
        weight = self.falloff.copy()
        top, neck = self.below_jaw(targets)
        weight[top:] *= 1.0 - neck
        offsets = [cv2.multiply(axis, weight) for axis in offsets]
        region = warp.remap(self.image, offsets)
        with self.timer.stage("composite"):
            # The falloff leaves the region border untouched, so a plain paste has no seam.
            frame = self.image.copy()
            frame[warp.y0 : warp.y0 + warp.height, warp.x0 : warp.x0 + warp.width] = region
        return frame

    def _below_seam(self, targets: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        """Where the lower map rules: below the inner lower lip (down past the chin) and below each
        lower eyelid (over the cheek), fading out sideways beyond the corners, where both maps agree."""
        warp = self.warp
        shift = np.array([warp.x0, warp.y0])
        mask = np.zeros((warp.height, warp.width), np.float32)
        xs = np.arange(warp.width, dtype=np.float32)[None, :]
        ys = np.arange(warp.height, dtype=np.float32)[:, None]
        low, high = np.full(2, np.inf), np.full(2, -np.inf)
        for seam_indices, drop_widths, side_widths in (
            (topo.LIPS_INNER_LOWER, 3.0, 0.6),
            (topo.RIGHT_EYE_LOWER, 0.9, 0.5),
            (topo.LEFT_EYE_LOWER, 0.9, 0.5),
        ):
            seam = targets[seam_indices, :2] - shift
            if seam[0, 0] > seam[-1, 0]:
                seam = seam[::-1]  # the left eye's list runs from the image's right
            left, right = seam[0], seam[-1]
            width = float(np.linalg.norm(right - left))
            drop, side = drop_widths * width, side_widths * width
            polygon = np.concatenate([
                [left + np.array([-side, 0.0])], seam, [right + np.array([side, 0.0])],
                [right + np.array([side, drop])], [left + np.array([-side, drop])],
            ])  # fmt: skip
            x0, y0 = np.floor(polygon.min(0)).astype(int).clip(0)
            x1, y1 = np.ceil(polygon.max(0)).astype(int) + 1
            x1, y1 = min(x1, warp.width), min(y1, warp.height)
            if x1 <= x0 or y1 <= y0:
                continue
            patch = np.zeros((y1 - y0, x1 - x0), np.float32)
            local = (polygon - np.array([x0, y0])) * 16
            cv2.fillPoly(patch, [np.round(local).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=4)
            centre = 0.5 * (left[0] + right[0])
            sideways = 1.0 - smoothstep(0.0, side * 0.95, np.abs(xs[:, x0:x1] - centre) - width / 2.0)
            downward = 1.0 - smoothstep(0.6 * drop, drop, ys[y0:y1] - float(seam[:, 1].max()))
            np.maximum(mask[y0:y1, x0:x1], patch * sideways * downward, out=mask[y0:y1, x0:x1])
            low, high = np.minimum(low, [x0, y0]), np.maximum(high, [x1, y1])
        return mask, (low[0], low[1], high[0], high[1])

    def _paint(self, frame: np.ndarray, targets: np.ndarray, params: FaceParams, shaped: bool = False) -> None:
        warp = self.warp
        region = frame[warp.y0 : warp.y0 + warp.height, warp.x0 : warp.x0 + warp.width]
        offset = (warp.x0, warp.y0)
        opening = topo.mouth_opening(targets)
        # A performer's shape moves the photo's own mouth, parted or not: its rest is the photo's.
        closed = 0.0 if shaped else 1.0 if not self.rest_open else float(np.clip(params.mouth_close, 0.0, 1.0))
        rest = topo.mouth_opening(self.source) * (1.0 - closed)
        # Paint only the opening the photo does not already show (a smile's own teeth stay real).
        strength = float(np.clip((opening - rest - 0.01) / 0.06, 0.0, 1.0))
        self.painter.paint(region, targets, offset, strength)
        for blink, lower in ((params.blink_right, topo.RIGHT_EYE_LOWER), (params.blink_left, topo.LEFT_EYE_LOWER)):
            strength = float(smoothstep(0.55, 1.0, np.array(blink)))
            paint_lash_line(region, targets[lower, :2], offset, strength)

    def _repair_mask(self, targets: np.ndarray) -> np.ndarray:
        """The repair mask over the whole frame (HxW float32): see repair_patch."""
        patch, (x0, y0) = self.repair_patch(targets)
        mask = np.zeros(self.image.shape[:2], np.float32)
        mask[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]] = patch
        return mask

    def repair_patch(self, targets: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """Where the generator may change the frame, softly: the eyes and the mouth, as a patch of the
        frame and its top-left corner. Drawn on the patch only: its cost grows with the face, not the frame.

        A generator that owns the mouth gets all of it, lips and inside. One that does not gets only the
        lips' inner edge: the inside is the painter's (or the photo's own teeth), and the old generator,
        trained on a few smiling stills, only knew how to fill it with pale teeth."""
        size = max(3, int(self.rig.unit * 0.15) | 1)
        kernel = np.ones((size, size), np.uint8)
        inner = topo.inner_mouth_polygon(targets)[:, :2]
        outer = targets[topo.LIPS_OUTER_UPPER + topo.LIPS_OUTER_LOWER[::-1], :2]
        eyes = [targets[topo.RIGHT_EYE_UPPER + topo.RIGHT_EYE_LOWER[::-1], :2],
                targets[topo.LEFT_EYE_UPPER + topo.LEFT_EYE_LOWER[::-1], :2]]  # fmt: skip
        points = np.concatenate([inner, outer, *eyes])
        margin = 3 * size + 2  # the dilation and the blur reach no further: the patch loses nothing
        height, width = self.image.shape[:2]
        x0, y0 = (np.floor(points.min(0)) - margin).astype(int).clip(0)
        x1 = int(min(width, np.ceil(points[:, 0].max()) + margin + 1))
        y1 = int(min(height, np.ceil(points[:, 1].max()) + margin + 1))
        if x1 <= x0 or y1 <= y0:
            return np.zeros((0, 0), np.float32), (0, 0)
        shift = np.array([x0, y0], np.float64)

        def local(polygon: np.ndarray) -> np.ndarray:
            return np.round(polygon - shift).astype(np.int32)

        mouth = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mouth, [local(inner)], 1)
        if self.owns_mouth:
            mask = mouth.astype(np.float32)
            cv2.fillPoly(mask, [local(outer)], 1.0)
            mouth = np.zeros_like(mouth)
        else:
            mask = (cv2.dilate(mouth, kernel) - cv2.erode(mouth, kernel)).astype(np.float32)
        for eye in eyes:
            cv2.fillPoly(mask, [local(eye)], 1.0)
        mask = np.maximum(mask, cv2.dilate(mask, kernel) * (1 - mouth))
        return cv2.GaussianBlur(mask, (size * 2 + 1,) * 2, 0), (int(x0), int(y0))
