"""Training pairs from real talking video, through the device's own face pipeline and renderer.

    python -m models.talking FOLDER --out pairs.npz [--holdout d10 d12 ...] [--pairs 3000]

For a source frame S and a target frame T of the same clip (the same person): T's landmarks are moved
into S's head frame (a similarity fitted on the skull points, the rigid part the renderer's head layer
does after the generator), the device's renderer warps S to them (nothing painted: the generator owns
the mouth), and T, moved the same way, is the ground truth: real teeth, tongue, lip insides and closing
lids.

`rig=True` (an experiment, `models.train --rig-pairs`) poses S by the rig instead, with T's expression
and head pose measured against the clip's neutral face as `--drive` measures a performer: the generator
then sees the rig's approximation of T's mouth, as on the device. It measured better through the rig
and looked worse: see models/README.md.
The crop, repair mask, mouth opening and reference (S's own face) are made exactly as the device makes
them (device/runtime/crop.py), so what the generator learns is what it will be shown.

Any folder of talking-face videos works; whole clips (people) are held out with `--holdout`.
numpy/OpenCV only, so the export calibration can use it too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from device.errors import BadInput
from device.face import topology as topo
from device.face.analysis import Face, FaceAnalyzer
from device.motion.drive import measure, params_from_measures, performance_reference, with_head_pose
from device.motion.params import FaceParams
from device.render.head import apply, fit_similarity, invert
from device.render.renderer import Renderer
from device.runtime import crop as cropping

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}
MIN_FACE = 96  # px, the landmarks' box (both sides): smaller crops are too blurry to learn detail from
RECIPE_VERSION = 1  # bumped whenever the pairs change: part of the cache file names


@dataclass
class Sample:
    warped: np.ndarray  # SxSx3 uint8 RGB: S warped by the device to T's landmarks
    mask: np.ndarray  # SxS float32 0..1: the repair mask in the crop
    interior: np.ndarray  # SxS float32 0..1: T's mouth opening in the crop
    reference: np.ndarray  # SxSx3 uint8 RGB: S's own face, aligned by its own landmarks
    target: np.ndarray  # SxSx3 uint8 RGB: the real frame T, in S's light
    painted: np.ndarray | None = None  # SxSx3 uint8 RGB: the warp with the painted mouth (the path without a model)


@dataclass
class ClipFrames:
    name: str
    frames: list[np.ndarray]
    faces: list[Face]
    measures: list[dict[str, float]] | None = None  # device.motion.drive.measure of each face

    def __post_init__(self) -> None:
        if self.measures is None:
            self.measures = [measure(face.landmarks, face.iris) for face in self.faces]

    def drive_params(self, source: int, target: int) -> np.ndarray:
        """FaceParams (as an array) that `--drive` would give frame `target` with frame `source` as the
        performer's first face: expression against the clip's neutral, head pose against the source."""
        reference = performance_reference(self.measures, source)
        params = params_from_measures(self.measures[target], reference)
        return with_head_pose(params, self.faces[target].landmarks, self.faces[source].landmarks)

    @property
    def openings(self) -> np.ndarray:
        return np.array([topo.mouth_opening(f.landmarks) for f in self.faces])


def find_videos(folder: Path, only: list[str] | None = None) -> list[Path]:
    """The videos of `folder` (sorted), or only those named (file stems or names); BadInput otherwise."""
    if not folder.is_dir():
        raise BadInput(f"clips folder {folder}: not a folder")
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if only:
        wanted = {Path(name).stem for name in only}
        missing = wanted - {p.stem for p in videos}
        if missing:
            raise BadInput(f"clips folder {folder}: no video named {', '.join(sorted(missing))}")
        videos = [p for p in videos if p.stem in wanted]
    if not videos:
        raise BadInput(f"clips folder {folder}: no videos ({', '.join(sorted(VIDEO_SUFFIXES))})")
    return videos


def load_clip(path: Path, analyzer: FaceAnalyzer, every: int = 2, limit: int = 120) -> ClipFrames | None:
    """Every `every`-th frame (at most `limit`) with its face, tracked through the clip; None when the
    face is too small or lost in most frames."""
    from device.media.video import read_frames

    frames, faces, previous = [], [], None
    for index, frame in enumerate(read_frames(path)):
        if len(frames) >= limit:
            break
        landmarks = analyzer.track(frame, previous)
        previous = landmarks
        if landmarks is None or index % every:
            continue
        xy = landmarks[:, :2]
        low, high = xy.min(0), xy.max(0)
        if (high - low).min() < MIN_FACE or (low < 0).any() or (high > np.array(frame.shape[1::-1]) - 1).any():
            continue
        iris = analyzer.mesh.irises(frame, landmarks)
        faces.append(Face(landmarks=landmarks, iris=iris, box=np.r_[low, high], score=1.0, index=0))
        frames.append(frame)
    return ClipFrames(path.stem, frames, faces) if len(frames) >= 2 else None


def _eye_gap(landmarks: np.ndarray, upper: list[int], lower: list[int]) -> float:
    return float(np.linalg.norm(landmarks[upper[1:-1], :2] - landmarks[lower[1:-1], :2], axis=1).mean())


def _blinks(source: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """How much more closed T's eyes are than S's (right, left), 0..1: a closing lid must not pin the iris."""
    out = []
    for upper, lower in ((topo.RIGHT_EYE_UPPER, topo.RIGHT_EYE_LOWER), (topo.LEFT_EYE_UPPER, topo.LEFT_EYE_LOWER)):
        ratio = _eye_gap(target, upper, lower) / max(_eye_gap(source, upper, lower), 1e-6)
        out.append(float(np.clip(1.0 - ratio, 0.0, 1.0)))
    return out[0], out[1]


def make_pair(
    source: np.ndarray,
    source_face: Face,
    target: np.ndarray,
    target_face: Face,
    size: int,
    template: dict | None = None,
    painted: bool = False,
    params: np.ndarray | None = None,
) -> Sample:
    """S warped by the device renderer to T in S's head frame, and T moved there: the truth.

    With `params` (FaceParams as an array, see ClipFrames.drive_params) the rig poses S as the device
    would for them; without, S is warped to T's own landmarks."""
    to_source = fit_similarity(target_face.landmarks[topo.SKULL, :2], source_face.landmarks[topo.SKULL, :2])
    # The generator draws the mouth's inside: nothing painted, the repair mask covers the whole mouth.
    renderer = Renderer(source, source_face, owns_mouth=True)
    if params is None:
        face_params = None
        targets = apply(to_source, target_face.landmarks[:, :2])
        iris = None if target_face.iris is None else apply(to_source, target_face.iris.reshape(-1, 2)).reshape(2, 5, 2)
        blinks = _blinks(source_face.landmarks, target_face.landmarks)
    else:
        face_params = FaceParams.from_array(params)
        posed, iris = renderer.rig.pose(face_params)
        # As the renderer does: the head's rigid motion comes after the generator, on the whole head.
        motion = fit_similarity(source_face.landmarks[topo.SKULL, :2], renderer.rig.head_only(face_params)[topo.SKULL])
        back = invert(motion)
        targets = apply(back, posed)
        iris = None if iris is None else apply(back, iris)
        blinks = (face_params.blink_right, face_params.blink_left)
    frame = renderer._warp(targets, iris, blinks)
    height, width = source.shape[:2]
    truth = cv2.warpAffine(target, to_source, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    matrix = cropping.align_matrix(targets, size, template)
    warped = cropping.extract(frame, matrix, size)
    mask = np.clip(cropping.extract(renderer._repair_mask(targets), matrix, size), 0.0, 1.0).astype(np.float32)
    sample = Sample(
        warped=warped,
        mask=mask,
        interior=cropping.mouth_interior(targets, matrix, size),
        reference=cropping.reference(source, source_face.landmarks, size, template),
        target=match_light(cropping.extract(truth, matrix, size), warped, mask),
    )
    if painted:
        if face_params is None:
            face_params = FaceParams(blink_right=blinks[0], blink_left=blinks[1])
        renderer._paint(frame, targets, face_params)
        sample.painted = cropping.extract(frame, matrix, size)
    return sample


def match_light(target: np.ndarray, warped: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """T with S's lighting: a gain and offset per channel fitted on the face outside the repair mask.
    Within a clip the light and the camera's exposure drift; the generator must not learn to repaint
    the mouth in another light, only to draw what is there."""
    size = target.shape[0]
    face = np.zeros((size, size), bool)
    face[size // 5 : size - size // 8, size // 6 : size - size // 6] = True
    keep = face & (mask < 0.02)
    if keep.sum() < 100:
        return target
    out = np.empty(target.shape, np.float32)
    for c in range(3):
        t, w = target[..., c][keep].astype(np.float64), warped[..., c][keep].astype(np.float64)
        gain = float(np.clip(w.std() / max(t.std(), 1e-6), 0.7, 1.4))
        out[..., c] = (target[..., c] - t.mean()) * gain + w.mean()
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _jitter(sample: Sample, rng: np.random.Generator) -> Sample:
    """The same photometric change of every image of the pair (colour, contrast, gamma), and a mirror."""
    gamma = float(np.exp(rng.normal(0, 0.15)))
    contrast = float(np.exp(rng.normal(0, 0.12)))
    tint = 1 + rng.normal(0, 0.04, 3)
    shift = rng.normal(0, 8)

    def change(image: np.ndarray) -> np.ndarray:
        x = 255.0 * (image.astype(np.float32) / 255.0) ** gamma
        x = (x - 128.0) * contrast + 128.0 + shift
        return np.clip(x * tint, 0, 255).astype(np.uint8)

    images = [change(sample.warped), sample.mask, sample.interior, change(sample.reference), change(sample.target)]
    if sample.painted is not None:
        images.append(change(sample.painted))
    if rng.random() < 0.5:
        images = [np.ascontiguousarray(a[:, ::-1]) for a in images]
    return Sample(*images)


def generate(
    clips: list[ClipFrames],
    count: int,
    size: int,
    seed: int,
    augment: bool = True,
    first_as_source: bool = False,
    progress: Callable[[int, int], None] | None = None,
    painted: bool = False,
    rig: bool = False,
) -> Iterator[Sample]:
    """`count` pairs, round-robin over the clips, deterministic for a seed. Half the targets are drawn from
    the clip's more open half of mouths (the frames a warp gets most wrong). `first_as_source`: S is always
    the clip's first frame, as in a self-reenactment evaluation. `rig`: S posed by the rig as `--drive`
    poses it (see make_pair)."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        clip = clips[i % len(clips)]
        n = len(clip.frames)
        s = 0 if first_as_source else int(rng.integers(n))
        openings = clip.openings
        if rng.random() < 0.5:
            pool = [k for k in np.flatnonzero(openings >= np.median(openings)) if k != s]
        else:
            pool = [k for k in range(n) if k != s]
        t = int(rng.choice(pool)) if pool else (s + 1) % n
        params = clip.drive_params(s, t) if rig else None
        sample = make_pair(
            clip.frames[s], clip.faces[s], clip.frames[t], clip.faces[t], size, painted=painted, params=params
        )
        if augment:
            sample = _jitter(sample, rng)
        if progress:
            progress(i + 1, count)
        yield sample


def to_input(sample: Sample, channels: list[str] | tuple[str, ...]) -> np.ndarray:
    """CxHxW float32 0..1 in the order the generator contract names its channels."""
    planes = {
        "red": sample.warped[..., 0], "green": sample.warped[..., 1], "blue": sample.warped[..., 2],
        "repair_mask": sample.mask, "mouth_interior": sample.interior,
        "reference_red": sample.reference[..., 0], "reference_green": sample.reference[..., 1],
        "reference_blue": sample.reference[..., 2],
    }  # fmt: skip
    scale = {name: (1.0 / 255.0 if plane.dtype == np.uint8 else 1.0) for name, plane in planes.items()}
    return np.stack([planes[name].astype(np.float32) * scale[name] for name in channels])


def build_arrays(samples: Iterator[Sample]) -> dict[str, np.ndarray]:
    """Pairs as compact uint8 arrays (masks scaled to 0..255), for caching."""
    rows = list(samples)

    def as_u8(mask: np.ndarray) -> np.ndarray:
        return (mask * 255).round().astype(np.uint8)

    arrays = {
        "warped": np.stack([r.warped for r in rows]),
        "mask": np.stack([as_u8(r.mask) for r in rows]),
        "interior": np.stack([as_u8(r.interior) for r in rows]),
        "reference": np.stack([r.reference for r in rows]),
        "target": np.stack([r.target for r in rows]),
    }
    if rows and all(r.painted is not None for r in rows):
        arrays["painted"] = np.stack([r.painted for r in rows])
    return arrays


def sample_at(arrays: dict[str, np.ndarray], i: int, window: tuple[slice, slice] | None = None) -> Sample:
    """Pair i of cached arrays (optionally a window of it), masks back to 0..1."""
    sl = window or (slice(None), slice(None))
    return Sample(
        warped=arrays["warped"][i][sl], mask=arrays["mask"][i][sl].astype(np.float32) / 255.0,
        interior=arrays["interior"][i][sl].astype(np.float32) / 255.0, reference=arrays["reference"][i][sl],
        target=arrays["target"][i][sl], painted=arrays["painted"][i][sl] if "painted" in arrays else None,
    )  # fmt: skip


def load_clips(
    folder: Path, names: list[str] | None, analyzer: FaceAnalyzer | None = None, log: Callable[[str], None] = print
) -> list[ClipFrames]:
    analyzer = analyzer or FaceAnalyzer()
    clips = []
    for path in find_videos(folder, names):
        clip = load_clip(path, analyzer)
        if clip is None:
            log(f"  {path.name}: skipped (face under {MIN_FACE} px or lost)")
            continue
        log(f"  {path.name}: {len(clip.frames)} frames")
        clips.append(clip)
    return clips


def load_clips_from(
    paths: list[str], analyzer: FaceAnalyzer | None = None, log: Callable[[str], None] = print
) -> list[ClipFrames]:
    """Clips from video files and folders of them (e.g. for export calibration); BadInput naming a bad path."""
    videos: list[Path] = []
    for entry in paths:
        path = Path(entry).expanduser()
        if path.is_dir():
            videos += find_videos(path)
        elif path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            videos.append(path)
        else:
            raise BadInput(f"clip {entry}: not a video file or a folder of videos")
    if not videos:
        return []
    analyzer = analyzer or FaceAnalyzer()
    clips = [clip for clip in (load_clip(video, analyzer) for video in videos) if clip is not None]
    for video in videos:
        if not any(clip.name == video.stem for clip in clips):
            log(f"  {video.name}: skipped (face under {MIN_FACE} px or lost)")
    return clips


def split(
    folder: Path, holdout: list[str], log: Callable[[str], None] = print
) -> tuple[list[ClipFrames], list[ClipFrames]]:
    """(training clips, held-out clips) of a folder; the held-out ones by name (people never trained on)."""
    every = [p.stem for p in find_videos(folder)]
    held_names = [p.stem for p in find_videos(folder, holdout)] if holdout else []
    analyzer = FaceAnalyzer()
    train = load_clips(folder, [n for n in every if n not in held_names], analyzer, log)
    held = load_clips(folder, held_names, analyzer, log) if held_names else []
    if not train:
        raise BadInput(f"clips folder {folder}: no clip with a usable face (>= {MIN_FACE} px) to train on")
    return train, held


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.talking", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a folder of talking-face videos")
    parser.add_argument("--out", type=Path, required=True, help="pairs file (.npz); held-out pairs go beside it")
    parser.add_argument("--holdout", nargs="*", default=[], help="clips (people) kept out of training")
    parser.add_argument("--pairs", type=int, default=3000, help="training pairs (default 3000)")
    parser.add_argument("--eval-pairs", type=int, default=64, help="held-out pairs (default 64)")
    parser.add_argument("--size", type=int, default=256, help="crop size (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        train, held = split(args.folder, args.holdout)
    except BadInput as exc:
        print(f"models.talking: {exc}", file=sys.stderr)
        return 2

    def show(i: int, n: int) -> None:
        if i == n or i % 100 == 0:
            print(f"  pairs: {i}/{n}", flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **build_arrays(generate(train, args.pairs, args.size, args.seed, progress=show)))
    print(f"{args.out}: {args.pairs} pairs from {len(train)} clips")
    if held:
        out = args.out.with_name(args.out.stem + ".holdout.npz")
        pairs = generate(
            held, args.eval_pairs, args.size, 10_000 + args.seed, augment=False, first_as_source=True, painted=True
        )
        np.savez(out, **build_arrays(pairs))
        print(f"{out}: {args.eval_pairs} held-out pairs from {', '.join(c.name for c in held)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
