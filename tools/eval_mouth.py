"""How believable is the rendered mouth, against real people: the generator vs the warp + painted mouth.

    python -m tools.eval_mouth FOLDER [--clips d10 d12 ...] [--backends none auto] [--frames N] [--repo PATH] [--json]
    python -m tools.eval_mouth --text "Hello there." --photos PHOTO ... [--backends none] [--size N]

Self-reenactment, as tools/eval_reenact.py does it: the first frame of each real clip is the portrait, the
clip drives it (`portrait animate FIRST.png --drive CLIP`), once per backend (`none` = warp + painted
mouth, `auto` = the generator on the best runtime), and the real frames are the truth. Read by an
independent judge, dlib's 68 points (tools/judge.py), never by the MediaPipe mesh that drives the rig.

Per clip and backend:
- mouth box PSNR / SSIM: each rendered frame is first moved onto the real one by the 2-D similarity that
  best maps its dlib nose (27-35) and mouth (48-67) points onto the real frame's. Head placement is the
  rig's job and eval_reenact grades it; left in, a few pixels of head error would swamp the mouth's
  own error and hide whether teeth, lips and the dark of the mouth look real. The nose is rigid with
  the upper jaw, the mouth points lay the lips over the real lips, so what is left in the box is how
  the mouth looks. The box is square, 1.6x the real mouth's width, centred on the real mouth (48-67).
  The baseline: the first frame held still, aligned the same way onto each real frame.
- face box PSNR / SSIM, unaligned (eval_reenact.face_box): the generator must not spoil the rest.
- below the chin: the mean absolute change (0..255, all channels) of the neck and clothes against the
  render's own first frame. The region hangs under the first real frame's dlib jaw line (0-16): from 8 %
  of the face height (brow to chin) below the chin and the jaw line down to 1.2 face heights below the
  chin, across the jaw's width plus 20 %. The real clip's own change there is shown beside it.
  `--text` mode renders speech without head drive on each `--photos` photo (`portrait animate PHOTO
  --text T`), where nothing below the jaw should move at all: the "neck and clothes move with the jaw"
  check, with the r of the per-frame change against the mouth opening.

Targets (generator vs warp only): mouth box >= +2 dB PSNR and >= +0.03 SSIM over `none`; the
generator's mouth closer to the real one than the still first frame's (PSNR and SSIM both higher); face
box PSNR no worse than `none`. A clip passes when every generator backend meets all four.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from device.errors import BadInput
from tools.eval_lipsync import find_clips
from tools.eval_reenact import (
    REPO,
    box_scores,
    clip_and_portrait,
    face_box,
    pearson,
    read_frames,
    render_drive,
    run_animate,
)
from tools.judge import Judge, mouth_opening

# dlib 68-point indices (0-based).
ALIGN_POINTS = np.r_[27:36, 48:68]  # nose bridge and base, outer and inner lips
MOUTH_POINTS = np.r_[48:68]
MOUTH_CORNERS = (48, 54)
JAW_POINTS = np.r_[0:17]
CHIN = 8

MOUTH_BOX_SCALE = 1.6  # box side over the mouth's width: lips, teeth and a margin of skin
BELOW_CHIN_GAP = 0.08  # face heights between the jaw line and the region: the jaw's own edge is not neck
BELOW_CHIN_DEPTH = 1.2  # face heights below the chin: neck, collar and the top of the clothes
BELOW_CHIN_WIDEN = 1.2  # the jaw's x-range, widened by 20 %

TARGETS = {"psnr_gain_db": 2.0, "ssim_gain": 0.03}
DEFAULT_BACKENDS = ("none", "auto")
WARP = "none"  # the backend without a generator: the baseline the generator must beat

Box = tuple[int, int, int, int]


# Geometry ------------------------------------------------------------------------------------------------


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, shift) that best maps points ``src`` onto ``dst``.

    Least squares in closed form (Umeyama 1991): deterministic, unlike a RANSAC fit, and every point counts.
    """
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"similarity needs two (N, 2) point sets, N >= 2; got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    var = (a**2).sum() / len(src)
    if var < 1e-12:
        raise ValueError("similarity: the source points all coincide")
    u, s, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])  # a rotation, never a mirror
    rotation = u @ d @ vt
    scale = float(np.trace(np.diag(s) @ d) / var)
    return np.hstack([scale * rotation, (mu_d - scale * rotation @ mu_s)[:, None]])


def align(image: np.ndarray, landmarks: np.ndarray, onto: np.ndarray) -> np.ndarray:
    """``image`` moved so that its nose and mouth points (68-point ``landmarks``) lie on ``onto``'s."""
    matrix = similarity(landmarks[ALIGN_POINTS], onto[ALIGN_POINTS])
    height, width = image.shape[:2]
    # Replicated edges: a shifted frame has no black border to drag the score of a box near the edge down.
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def mouth_box(landmarks: np.ndarray, shape: tuple[int, ...], scale: float = MOUTH_BOX_SCALE) -> Box | None:
    """A square ``scale`` times the mouth's width (corner to corner), centred on the mouth, clipped to the
    frame; None when the mouth is not found or the box is too small to score (SSIM needs 7x7)."""
    mouth = landmarks[MOUTH_POINTS]
    if not np.isfinite(mouth).all():
        return None
    half = np.linalg.norm(landmarks[MOUTH_CORNERS[1]] - landmarks[MOUTH_CORNERS[0]]) * scale / 2
    centre = (mouth.min(0) + mouth.max(0)) / 2
    x0, y0 = (int(v) for v in np.floor(centre - half).clip(0))
    x1, y1 = int(min(shape[1], np.ceil(centre[0] + half))), int(min(shape[0], np.ceil(centre[1] + half)))
    return (x0, y0, x1, y1) if x1 - x0 >= 8 and y1 - y0 >= 8 else None


def below_chin_mask(landmarks: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """The neck-and-clothes region (a bool HxW mask) under the 68-point ``landmarks``' jaw line; None when
    there is no face or the region lies outside the frame."""
    if not np.isfinite(landmarks).all():
        return None
    jaw = landmarks[JAW_POINTS]
    chin_y = landmarks[CHIN, 1]
    face_height = chin_y - landmarks[:, 1].min()  # brow to chin: the jaw opening barely changes it
    if face_height <= 1:
        return None
    gap = BELOW_CHIN_GAP * face_height
    left, right = jaw[:, 0].min(), jaw[:, 0].max()
    widen = (right - left) * (BELOW_CHIN_WIDEN - 1) / 2
    height, width = shape[:2]
    x0, x1 = max(0, math.floor(left - widen)), min(width, math.ceil(right + widen))
    y0, y1 = max(0, math.ceil(chin_y + gap)), min(height, math.ceil(chin_y + BELOW_CHIN_DEPTH * face_height))
    mask = np.zeros((height, width), dtype=np.uint8)
    if x1 <= x0 or y1 <= y0:
        return None
    mask[y0:y1, x0:x1] = 1
    # A tilted head drops one side of the jaw below the chin: everything above the lowered jaw line is face.
    face = np.vstack([[jaw[0, 0], -1.0], jaw + np.array([0.0, gap]), [jaw[-1, 0], -1.0]])
    cv2.fillPoly(mask, [np.round(face).astype(np.int32)], 0)
    return mask.astype(bool) if mask.sum() >= 16 else None


def change_series(frames: list[np.ndarray], mask: np.ndarray) -> np.ndarray:
    """Per frame, the mean absolute change (0..255, all channels) inside ``mask`` against the first frame."""
    first = frames[0][mask].astype(np.int16)
    return np.array([float(np.abs(f[mask].astype(np.int16) - first).mean()) for f in frames])


# Results -------------------------------------------------------------------------------------------------


@dataclass
class BackendScore:
    """One backend's render of one clip. PSNR in dB, SSIM 0..1, below_chin 0..255."""

    backend: str
    mouth_psnr: float
    mouth_ssim: float
    face_psnr: float
    face_ssim: float
    below_chin: float
    lost: int  # frames where the judge found no face in this render (left out of every backend's means)
    render_s: float


@dataclass
class MouthResult:
    clip: str
    frames: int  # frames compared (real and rendered)
    scored: int  # frames in the mouth and face means: every render and the real frame have landmarks
    still_psnr: float  # the first frame held still, aligned onto each real frame
    still_ssim: float
    real_below_chin: float  # how much the real person's neck and clothes move (head motion included)
    backends: dict[str, BackendScore] = field(default_factory=dict)

    def verdict(self, backend: str) -> dict[str, Any]:
        """Gains over `none`, and the four targets, for the render by ``backend``."""
        b = self.backends[backend]
        closer = b.mouth_psnr > self.still_psnr and b.mouth_ssim > self.still_ssim
        out: dict[str, Any] = {"closer_than_still": bool(closer)}
        warp = self.backends.get(WARP)
        if warp is None or backend == WARP:
            return out
        gain_psnr, gain_ssim = b.mouth_psnr - warp.mouth_psnr, b.mouth_ssim - warp.mouth_ssim
        face_ok = bool(b.face_psnr >= warp.face_psnr)
        passes = gain_psnr >= TARGETS["psnr_gain_db"] and gain_ssim >= TARGETS["ssim_gain"] and closer and face_ok
        return out | {"gain_psnr": gain_psnr, "gain_ssim": gain_ssim, "face_no_worse": face_ok, "passes": passes}

    @property
    def generators(self) -> list[str]:
        return [b for b in self.backends if b != WARP] if WARP in self.backends else []

    @property
    def passes(self) -> bool | None:
        """Every generator backend meets the targets; None when there is no generator or no `none` to beat."""
        generators = self.generators
        return all(self.verdict(g)["passes"] for g in generators) if generators else None

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        for name in self.backends:
            out["backends"][name] |= self.verdict(name)
        return out | {"passes": self.passes}


@dataclass
class SpeechResult:
    """`--text` mode: one photo speaking, rendered by one backend."""

    photo: str
    backend: str
    frames: int
    mouth_range: float  # p95 - p5 of the render's dlib mouth opening (over the eye-corner distance)
    below_chin: float
    below_chin_max: float
    below_chin_r: float  # Pearson r of the per-frame below-chin change against the mouth opening
    render_s: float


# Evaluation ----------------------------------------------------------------------------------------------


def _mean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def evaluate_clip(
    clip: Path, judge: Judge, work: Path, backends: list[str], limit: int, repo: Path = REPO
) -> MouthResult:
    """Render ``clip`` driven by itself with each backend and score the mouth, the face and below the chin."""
    info, fps, real, photo = clip_and_portrait(clip, work, limit)
    clip = clip.resolve()
    renders, seconds = {}, {}
    for backend in backends:
        progress(f"  {clip.stem}: rendering --backend {backend}")
        out = work / f"{clip.stem}-{backend}"  # PNG frames: the renderer judged, not a second encode
        seconds[backend] = render_drive(photo, clip, fps, max(info.width, info.height), len(real), backend, out, repo)
        renders[backend] = read_frames(out, len(real))
        if renders[backend] and renders[backend][0].shape != real[0].shape:
            raise RuntimeError(f"--backend {backend} rendered {renders[backend][0].shape}, the clip is {real[0].shape}")
    n = min(len(real), *(len(frames) for frames in renders.values()))
    if n < 2:
        raise RuntimeError(f"{clip.name}: a render has fewer than 2 frames")
    progress(f"  {clip.stem}: judging {n} frames")
    real_lm = judge.track(real[:n]).landmarks
    render_lm = {b: judge.track(frames[:n]).landmarks for b, frames in renders.items()}
    if not np.isfinite(real_lm[0]).all():
        raise RuntimeError(f"{clip.name}: the judge found no face in the first frame")
    found = {b: np.isfinite(lm).all(axis=(1, 2)) for b, lm in render_lm.items()}
    frames = [
        i for i in range(1, n)
        if np.isfinite(real_lm[i]).all() and all(f[i] for f in found.values())
        and mouth_box(real_lm[i], real[i].shape) is not None and face_box(real_lm[i], real[i].shape) is not None
    ]  # fmt: skip
    if not frames:
        raise RuntimeError(f"{clip.name}: no frame where the judge found the face in the real clip and every render")
    still = [box_scores(real[i], align(real[0], real_lm[0], real_lm[i]), mouth_box(real_lm[i], real[i].shape))
             for i in frames]  # fmt: skip
    mask = below_chin_mask(real_lm[0], real[0].shape)
    result = MouthResult(
        clip=clip.stem, frames=n, scored=len(frames), still_psnr=_mean([s[0] for s in still]),
        still_ssim=_mean([s[1] for s in still]),
        real_below_chin=float(change_series(real[:n], mask)[1:].mean()) if mask is not None else float("nan"),
    )  # fmt: skip
    for backend, rendered in renders.items():
        lm = render_lm[backend]
        mouth, face = [], []
        for i in frames:
            aligned = align(rendered[i], lm[i], real_lm[i])
            mouth.append(box_scores(real[i], aligned, mouth_box(real_lm[i], real[i].shape)))
            face.append(box_scores(real[i], rendered[i], face_box(real_lm[i], real[i].shape)))
        below = float(change_series(rendered[:n], mask)[1:].mean()) if mask is not None else float("nan")
        result.backends[backend] = BackendScore(
            backend=backend, mouth_psnr=_mean([m[0] for m in mouth]), mouth_ssim=_mean([m[1] for m in mouth]),
            face_psnr=_mean([f[0] for f in face]), face_ssim=_mean([f[1] for f in face]), below_chin=below,
            lost=int((~found[backend][1:n]).sum()), render_s=seconds[backend],
        )  # fmt: skip
    return result


def render_text(photo: Path, text: str, backend: str, out: Path, size: int | None = None, repo: Path = REPO) -> float:
    """`portrait animate PHOTO --text TEXT --backend B` with the checkout ``repo``; the seconds it took."""
    command = [sys.executable, "-m", "device.cli", "animate", str(photo), "--text", text, "--backend", backend,
               "--out", str(out), "--quiet"]  # fmt: skip
    if size is not None:
        command += ["--size", str(size)]
    return run_animate(command, repo)


def evaluate_speech(
    photo: Path, text: str, judge: Judge, work: Path, backend: str, limit: int, size: int | None, repo: Path = REPO
) -> SpeechResult:
    """Speech without head drive: how much the neck and clothes of ``photo`` move while its mouth talks."""
    from PIL import Image

    out = work / f"{photo.stem}.{backend}.speech.mp4"
    render_s = render_text(photo.resolve(), text, backend, out, size, repo)
    rendered = read_frames(out, limit)
    if len(rendered) < 2:
        raise RuntimeError(f"{photo.name}: the render has fewer than 2 frames")
    with Image.open(photo) as image:
        still = np.asarray(image.convert("RGB"))
    height, width = rendered[0].shape[:2]
    if still.shape[:2] != (height, width):  # the renderer scales the photo to an even size, or to --size
        still = cv2.resize(still, (width, height), interpolation=cv2.INTER_AREA)
    landmarks = judge.track([still]).landmarks[0]
    mask = below_chin_mask(landmarks, still.shape)
    if mask is None:
        raise RuntimeError(f"{photo.name}: the judge found no face, or no neck below it inside the frame")
    change = change_series(rendered, mask)
    opening = judge.track(rendered).series(mouth_opening)
    finite = opening[np.isfinite(opening)]
    return SpeechResult(
        photo=photo.stem, backend=backend, frames=len(rendered),
        mouth_range=float(np.percentile(finite, 95) - np.percentile(finite, 5)) if len(finite) else float("nan"),
        below_chin=float(change[1:].mean()), below_chin_max=float(change[1:].max()),
        below_chin_r=pearson(change, opening), render_s=render_s,
    )  # fmt: skip


# Output --------------------------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def columns(backends: list[str]) -> list[tuple[str, str, str]]:
    """(group, label, key) of each table column after clip and frames; the group is named at its first column."""

    def group(name: str, items: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
        return [(name if i == 0 else "", label, key) for i, (label, key) in enumerate(items)]

    out = group("mouth PSNR", [("still", "still_psnr")] + [(b, f"mouth_psnr.{b}") for b in backends])
    out += group("mouth SSIM", [("still", "still_ssim")] + [(b, f"mouth_ssim.{b}") for b in backends])
    for g in [b for b in backends if b != WARP] if WARP in backends else []:
        out += group(f"{g} - {WARP}", [("dB", f"gain_psnr.{g}"), ("SSIM", f"gain_ssim.{g}")])
    out += group("closer", [(b, f"closer.{b}") for b in backends])
    out += group("face PSNR", [(b, f"face_psnr.{b}") for b in backends])
    out += group("below chin", [("real", "real_below_chin")] + [(b, f"below_chin.{b}") for b in backends])
    return out


def flat(result: MouthResult) -> dict[str, Any]:
    row: dict[str, Any] = {"still_psnr": result.still_psnr, "still_ssim": result.still_ssim,
                           "real_below_chin": result.real_below_chin}  # fmt: skip
    for name, b in result.backends.items():
        verdict = result.verdict(name)
        row |= {f"mouth_psnr.{name}": b.mouth_psnr, f"mouth_ssim.{name}": b.mouth_ssim,
                f"face_psnr.{name}": b.face_psnr, f"below_chin.{name}": b.below_chin,
                f"closer.{name}": verdict["closer_than_still"]}  # fmt: skip
        if "gain_psnr" in verdict:
            row |= {f"gain_psnr.{name}": verdict["gain_psnr"], f"gain_ssim.{name}": verdict["gain_ssim"]}
    return row


def cell(key: str, value: Any, width: int) -> str:
    if isinstance(value, str):
        return f"{value:>{width}}"
    if key.startswith("gain_ssim"):
        return f"{value:+{width}.3f}"
    if key.startswith("gain_psnr"):
        return f"{value:+{width}.2f}"
    if "ssim" in key:
        return f"{value:{width}.3f}"
    return f"{value:{width}.2f}"


def print_table(results: list[MouthResult], backends: list[str], failed: list[tuple[str, str]]) -> None:
    cols = columns(backends)
    widths = [max(6, len(label)) for _, label, _ in cols]
    # Each group's name starts over its first column and runs on over the next ones.
    groups, at = "", 14
    for (name, _, _), width in zip(cols, widths, strict=True):
        if name:
            groups = f"{groups:<{max(at, len(groups) + 1)}}{name}"
        at += width + 1
    print(f"{groups.rstrip()}")
    print(f"{'clip':6} {'frames':>6} " + " ".join(f"{lab:>{w}}" for (_, lab, _), w in zip(cols, widths, strict=True))
          + "  verdict")  # fmt: skip
    rows = [flat(r) for r in results]
    for r, row in zip(results, rows, strict=True):
        values = [("yes" if row[k] else "no") if k.startswith("closer") else row.get(k, "-") for _, _, k in cols]
        verdict = "-" if r.passes is None else "PASS" if r.passes else "FAIL"
        print(f"{r.clip:6} {r.scored:6d} "
              + " ".join(cell(k, v, w) for (_, _, k), v, w in zip(cols, values, widths, strict=True))
              + f"  {verdict}")  # fmt: skip
    if len(results) > 1:
        values = []
        for _, _, k in cols:
            got = [row[k] for row in rows if k in row]
            if k.startswith("closer"):
                values.append(f"{sum(got)}/{len(got)}")
            else:
                values.append(_mean(got) if got else "-")
        verdicts = [r.passes for r in results if r.passes is not None]
        verdict = f"{sum(verdicts)}/{len(verdicts)}" if verdicts else "-"
        print(f"{'mean':6} {sum(r.scored for r in results):6d} "
              + " ".join(cell(k, v, w) for (_, _, k), v, w in zip(cols, values, widths, strict=True))
              + f"  {verdict}")  # fmt: skip
    for r in results:
        lost = [f"{b.backend} {b.lost}" for b in r.backends.values() if b.lost]
        if lost:
            print(f"{r.clip}: the judge lost the face in {', '.join(lost)} of {r.frames - 1} rendered frames")
    for name, why in failed:
        print(f"failed {name}: {why}")
    print(
        "frames: frames scored (i >= 1, landmarks in the real frame and every render); mouth box aligned by dlib "
        "nose + mouth; closer: PSNR and SSIM both beat the still frame's; face box unaligned;\n"
        "below chin: mean |change| 0..255 of neck and clothes against the first frame"
    )
    print(
        "targets: generator - none >= +2 dB PSNR and >= +0.03 SSIM in the mouth box, closer than the still "
        "frame (PSNR and SSIM), face PSNR >= none's"
    )


def print_speech(results: list[SpeechResult], failed: list[tuple[str, str]]) -> None:
    print(f"{'photo':12} {'backend':>8} {'frames':>6} {'mouth range':>11} {'below chin':>10} {'max':>6} "
          f"{'r(mouth)':>8} {'render s':>8}")  # fmt: skip
    for r in results:
        print(f"{r.photo:12} {r.backend:>8} {r.frames:6d} {r.mouth_range:11.3f} {r.below_chin:10.2f} "
              f"{r.below_chin_max:6.2f} {r.below_chin_r:8.2f} {r.render_s:8.1f}")  # fmt: skip
    for name, why in failed:
        print(f"failed {name}: {why}")
    print(
        "speech without head drive: below chin = mean |change| 0..255 of the neck and clothes against the first "
        "frame; r(mouth): its per-frame r with the dlib mouth opening (the neck moving with the jaw)"
    )


# Command line --------------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.eval_mouth", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, nargs="?", help="a folder of talking-face videos")
    parser.add_argument("--clips", nargs="+", help="only these clips (file stems or names)")
    parser.add_argument("--backends", nargs="+", default=list(DEFAULT_BACKENDS),
                        help="generator runtimes to render with (default: none auto)")  # fmt: skip
    parser.add_argument("--frames", type=int, default=150, help="at most this many frames per clip (default 150)")
    parser.add_argument("--text", help="speech mode: each --photos photo says this (no head drive)")
    parser.add_argument("--photos", nargs="+", type=Path, help="the photos of --text mode")
    parser.add_argument("--size", type=int, help="longest side of the --text renders (default: the photo's)")
    parser.add_argument("--json", action="store_true", help="print a machine-readable summary")
    parser.add_argument("--repo", type=Path, default=REPO, help="render with this checkout (a before/after table)")
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """BadInput naming the first bad input."""
    from device.runtime import BACKENDS

    if args.folder is None and args.text is None:
        raise BadInput("give a FOLDER of talking-face videos, or --text with --photos")
    if args.text is not None and not args.text.strip():
        raise BadInput("--text: is empty")
    if (args.text is None) != (args.photos is None):
        raise BadInput("--text and --photos go together" if args.text is None else "--text: needs --photos PHOTO ...")
    for photo in args.photos or []:
        if not photo.is_file():
            raise BadInput(f"--photos {photo}: {'not a file' if photo.exists() else 'not found'}")
    unknown = [b for b in args.backends if b not in BACKENDS]
    if unknown:
        raise BadInput(f"--backends {' '.join(unknown)}: unknown; use {', '.join(BACKENDS)}")
    if args.frames < 2:
        raise BadInput(f"--frames {args.frames}: needs at least 2")
    if args.size is not None and args.size < 16:
        raise BadInput(f"--size {args.size}: too small")
    if not (args.repo / "device" / "cli.py").is_file():
        raise BadInput(f"--repo {args.repo}: not a checkout of this project (no device/cli.py)")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    backends = list(dict.fromkeys(args.backends))
    try:
        check_args(args)
        clips = find_clips(args.folder, args.clips) if args.folder is not None else []
        judge = Judge()
    except BadInput as exc:
        print(f"eval_mouth: {exc}", file=sys.stderr)
        return 2
    repo = args.repo.resolve()
    results, speech, failed = [], [], []
    with tempfile.TemporaryDirectory(prefix="eval-mouth-") as tmp:
        for clip in clips:
            try:
                results.append(evaluate_clip(clip, judge, Path(tmp), backends, args.frames, repo))
                progress(f"  {clip.stem}: done")
            except (BadInput, RuntimeError) as exc:
                failed.append((clip.stem, str(exc)))
                progress(f"  {clip.stem}: failed: {exc}")
        for photo in args.photos or []:
            for backend in backends:
                progress(f"  {photo.stem}: speaking, --backend {backend}")
                try:
                    speech.append(evaluate_speech(photo, args.text, judge, Path(tmp), backend, args.frames,
                                                  args.size, repo))  # fmt: skip
                except (BadInput, RuntimeError) as exc:
                    failed.append((f"{photo.stem} ({backend})", str(exc)))
    if args.json:
        print(json.dumps({"clips": [r.as_json() for r in results], "speech": [asdict(r) for r in speech],
                          "failed": failed, "targets": TARGETS}, indent=2))  # fmt: skip
    else:
        if clips:
            print_table(results, backends, [f for f in failed if f[0] in {c.stem for c in clips}])
        if args.photos:
            if clips:
                print()
            print_speech(speech, [f for f in failed if f[0] not in {c.stem for c in clips}])
    return 1 if failed and not results and not speech else 0


if __name__ == "__main__":
    sys.exit(main())
