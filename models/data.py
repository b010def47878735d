"""Self-supervised training pairs through the device's own face pipeline and warp.

A real face is animated by the device's renderer (rig -> two-map warp -> painted mouth interior and
lash lines) to a random pose, and the result is animated back to the original landmarks by a second
renderer that takes the first one's frame as its photo. What comes back has exactly the device's
artefacts (double resampling blur, stretched lips and lids, a painted mouth where the photo's mouth was
open, squeezed paint where it was closed) and the original photo is the ground truth, except inside
its mouth opening, where the device's paint is (the generator is not to invent teeth). Heavy
augmentation (scale, rotation, colour, blur, noise, JPEG, flips) stretches a few photos a long way.

Everything here is numpy/OpenCV (no torch), so the export calibration uses it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from device.face.analysis import Face, FaceAnalyzer
from device.motion.params import FaceParams
from device.render.renderer import Renderer, mouth_interior
from device.runtime import crop as cropping

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
MIN_FACE = 96  # smaller faces give crops too blurry to learn detail from
# Bumped whenever the pairs change (renderer paint, repair mask, recipe): part of the cache file names.
RECIPE_VERSION = 4


@dataclass
class Sample:
    warped: np.ndarray  # SxSx3 uint8 RGB: the crop after the device's round-trip warp
    mask: np.ndarray  # SxS float32 0..1: the renderer's repair mask in the crop
    target: np.ndarray  # SxSx3 uint8 RGB: the real face


def load_sources(specs: Iterable[str]) -> list[tuple[str, np.ndarray]]:
    """Photos from files, folders (their images) and `skimage:NAME` samples (e.g. skimage:astronaut)."""
    from device.face.photo import load_photo

    out = []
    for spec in specs:
        if spec.startswith("skimage:"):
            import skimage.data

            out.append((spec, np.ascontiguousarray(getattr(skimage.data, spec.split(":", 1)[1])()[..., :3])))
            continue
        path = Path(spec)
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
        out.extend((str(p), load_photo(p)) for p in files)
    return out


def find_faces(sources: list[tuple[str, np.ndarray]], analyzer: FaceAnalyzer | None = None):
    """(name, image, Face) for every face of at least MIN_FACE px in the photos."""
    analyzer = analyzer or FaceAnalyzer()
    faces = []
    for name, image in sources:
        for index, detection in enumerate(analyzer.detect(image)):
            if detection.width < MIN_FACE:
                continue
            try:
                face = analyzer.analyse(image, face=index, name=name)
            except Exception:  # a face cut by the edge, a false detection: skip it
                continue
            faces.append((f"{name}#{index}", image, face))
    return faces


def random_params(rng: np.random.Generator) -> FaceParams:
    talk = rng.random() < 0.8
    return FaceParams(
        jaw_open=float(rng.uniform(0.1, 1.0)) if talk else 0.0,
        lip_round=float(rng.uniform(0, 1)) * (rng.random() < 0.4),
        lip_wide=float(rng.uniform(0, 1)) * (rng.random() < 0.4),
        lip_press=float(rng.uniform(0, 1)) * (rng.random() < 0.25),
        smile=float(rng.uniform(-0.5, 1.0)) * (rng.random() < 0.5),
        blink_left=float(rng.uniform(0.3, 1.0)) if rng.random() < 0.35 else 0.0,
        blink_right=float(rng.uniform(0.3, 1.0)) if rng.random() < 0.35 else 0.0,
        brow_raise=float(rng.uniform(-1, 1)) * (rng.random() < 0.4),
        head_yaw=float(rng.normal(0, 4)),
        head_pitch=float(rng.normal(0, 3)),
        head_roll=float(rng.normal(0, 3)),
        gaze_x=float(rng.uniform(-1, 1)) * (rng.random() < 0.5),
        gaze_y=float(rng.uniform(-1, 1)) * (rng.random() < 0.3),
    )


def _augment_photo(image: np.ndarray, face: Face, rng: np.random.Generator, strength: float) -> tuple[np.ndarray, Face]:
    """A random similarity and photometric change of the photo (landmarks follow)."""
    if strength <= 0:
        return image, face
    centre = face.landmarks[:, :2].mean(0)
    angle = rng.uniform(-12, 12) * strength
    scale = float(np.exp(rng.uniform(-0.35, 0.35) * strength))
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale)
    matrix[:, 2] += rng.uniform(-0.05, 0.05, 2) * face.size * strength
    h, w = image.shape[:2]
    image = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)

    def move(xy):
        return xy @ matrix[:, :2].T + matrix[:, 2]

    landmarks = face.landmarks.copy()
    landmarks[:, :2] = move(landmarks[:, :2])
    landmarks[:, 2] *= scale
    iris = None if face.iris is None else move(face.iris.reshape(-1, 2)).reshape(face.iris.shape)
    image = image.astype(np.float32)
    # Photometric: gamma, contrast, brightness, saturation, per-channel tint.
    image = 255.0 * (image / 255.0) ** float(np.exp(rng.normal(0, 0.2 * strength)))
    mean = image.mean()
    image = (image - mean) * float(np.exp(rng.normal(0, 0.15 * strength))) + mean + rng.normal(0, 12 * strength)
    grey = image.mean(2, keepdims=True)
    image = grey + (image - grey) * float(np.clip(1 + rng.normal(0, 0.3 * strength), 0, 2))
    image = image * (1 + rng.normal(0, 0.05 * strength, 3))
    if rng.random() < 0.3 * strength:
        sigma = rng.uniform(0.3, 1.2)
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    if rng.random() < 0.3 * strength:
        image = image + rng.normal(0, rng.uniform(1, 5), image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    if rng.random() < 0.3 * strength:
        quality = int(rng.integers(40, 95))
        _, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return np.ascontiguousarray(image), replace(face, landmarks=landmarks, iris=iris)


def animate(image: np.ndarray, face: Face, params: FaceParams, close_mouth: bool = False) -> tuple[np.ndarray, Face]:
    """The device's single-warp frame for `params` (painted as on the device) and the Face it shows."""
    forward = Renderer(image, face, close_mouth_at_rest=close_mouth)
    targets, iris = forward.rig.pose(params)
    frame = forward._warp(targets, iris, (params.blink_right, params.blink_left))
    forward._paint(frame, targets, params)
    return frame, replace(face, landmarks=np.column_stack([targets, face.landmarks[:, 2]]), iris=iris)


def round_trip(
    image: np.ndarray,
    face: Face,
    params: FaceParams,
    size: int,
    close_mouth: bool = False,
    template: dict | None = None,
) -> Sample:
    """Animate the face to `params` with the device's renderer, then back to its own landmarks."""
    frame, posed = animate(image, face, params, close_mouth)
    back = Renderer(frame, posed, close_mouth_at_rest=False)
    home = face.landmarks[:, :2].astype(np.float64)
    restored = back._warp(home, face.iris, (0.0, 0.0))
    back._paint(restored, home, FaceParams())
    mask = back._repair_mask(home)
    matrix = cropping.align_matrix(home, size, template)
    warped = cropping.extract(restored, matrix, size)
    target = cropping.extract(image, matrix, size)
    # Inside the photo's own mouth opening the device paints the interior, whatever the photo showed:
    # there the ground truth is that paint, not the photo's teeth (learning those taught the generator
    # to whiten every lower lip).
    inside = cropping.extract(mouth_interior(home, image.shape) * 255, matrix, size) > 127
    target[inside] = warped[inside]
    return Sample(
        warped=warped,
        mask=np.clip(cropping.extract(mask, matrix, size), 0.0, 1.0).astype(np.float32),
        target=target,
    )


def generate(
    faces, count: int, size: int, seed: int, augment: float = 1.0, progress=None, open_mouths: float = 0.4
) -> Iterator[Sample]:
    """`count` samples cycling over the faces, deterministic for a seed.

    A share `open_mouths` of them start from a device frame with the mouth open (painted interior) and
    take the round trip from there, with that frame as the target: the only ground truth there is for
    an open mouth when the photos show none. They teach the generator to keep the painted interior
    and sharpen the lips around it, where photo-only pairs teach it that teeth follow the lips' edge.
    """
    rng = np.random.default_rng(seed)
    for i in range(count):
        _, image, face = faces[i % len(faces)]
        photo, moved = _augment_photo(image, face, rng, augment)
        close_mouth = bool(rng.random() < 0.3)
        if rng.random() < open_mouths:
            opened = replace(random_params(rng), jaw_open=float(rng.uniform(0.3, 1.0)), lip_press=0.0)
            photo, moved = animate(photo, moved, opened, close_mouth)
            close_mouth = False
        sample = round_trip(photo, moved, random_params(rng), size, close_mouth=close_mouth)
        if augment > 0 and rng.random() < 0.5:  # mirror: the pipeline is symmetric enough
            sample = Sample(sample.warped[:, ::-1].copy(), sample.mask[:, ::-1].copy(), sample.target[:, ::-1].copy())
        if progress:
            progress(i + 1, count)
        yield sample


def to_input(warped: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 + HxW mask -> 4xHxW float32 0..1 (the generator contract's channel order)."""
    return np.concatenate([warped.astype(np.float32).transpose(2, 0, 1) / 255.0, mask[None].astype(np.float32)])


def build_arrays(
    faces, count: int, size: int, seed: int, augment: float = 1.0, progress=None, open_mouths: float = 0.4
) -> dict[str, np.ndarray]:
    samples = list(generate(faces, count, size, seed, augment, progress, open_mouths))
    return {
        "warped": np.stack([s.warped for s in samples]),
        "mask": np.stack([(s.mask * 255).round().astype(np.uint8) for s in samples]),
        "target": np.stack([s.target for s in samples]),
    }


def device_inputs(
    faces, count: int, size: int, seed: int, channels: list[str] | tuple[str, ...], augment: float = 0.5
) -> Iterator[np.ndarray]:
    """`count` generator inputs (CxSxS float32, uint8-exact) for a generator that owns the mouth, as the
    device makes them at run time: each photo posed by the rig to random expressions, warped with nothing
    painted, its repair mask, mouth opening and the photo's own face as the reference. There is no truth
    for a posed still: these calibrate and check a quantized model against its float one."""
    from models.talking import Sample, to_input

    rng = np.random.default_rng(seed)
    for i in range(count):
        _, image, face = faces[i % len(faces)]
        photo, moved = _augment_photo(image, face, rng, augment)
        params = random_params(rng)
        renderer = Renderer(photo, moved, owns_mouth=True)
        targets, iris = renderer.rig.pose(params)
        frame = renderer._warp(targets, iris, (params.blink_right, params.blink_left))
        matrix = cropping.align_matrix(targets, size)
        warped = cropping.extract(frame, matrix, size)
        mask = np.clip(cropping.extract(renderer._repair_mask(targets), matrix, size), 0.0, 1.0)
        sample = Sample(
            warped=warped,
            mask=np.round(mask * 255) / 255.0,
            interior=np.round(cropping.mouth_interior(targets, matrix, size) * 255) / 255.0,
            reference=cropping.reference(photo, moved.landmarks, size),
            target=warped,
        )
        yield to_input(sample, channels).astype(np.float32)
