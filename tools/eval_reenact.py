"""Self-reenactment against real people: the first frame of a real clip is the portrait, the clip itself
drives it (`portrait animate FIRST.png --drive CLIP`), and the real frames are the truth.

    python -m tools.eval_reenact FOLDER [--clips d0 hd8 ...] [--backend none] [--frames N] [--json]

Read by an independent judge (dlib's 68 points and face descriptor, tools/judge.py), per clip:
- face box PSNR / SSIM of the render against the real frame, and of the first frame held still (the
  baseline a talking head must beat), in the real face's box, 1.3x its size;
- head track: Pearson r of the nose tip (x and y) of the render against the real one;
- mouth: Pearson r of the mouth opening;
- where the real head or mouth hardly moves (hd7's head, s20's mouth), r measures only the judge's
  jitter: such a clip is marked "still" and passes when the render keeps still too (the spread limits
  below were set on ../shared/talking, where talking mouths spread 0.11-0.19 and still ones 0.01-0.02);
- identity: the mean descriptor distance of rendered frames to the first frame (same person: < 0.6).
Targets: face box >= still + 1.5 dB and SSIM + 0.03, head track r >= 0.9, mouth r >= 0.7, identity <= 0.3.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import BadInput
from tools.eval_lipsync import find_clips, first_frame, probe
from tools.judge import Judge, mouth_opening

REPO = Path(__file__).resolve().parents[1]
NOSE_TIP = 30
TARGETS = {"psnr_gain_db": 1.5, "ssim_gain": 0.03, "head_r": 0.9, "mouth_r": 0.7, "identity": 0.3}
# A head moves when its nose tip's std (x and y, mean) passes this fraction of the eye-corner distance;
# a mouth when its opening's 5-95 percentile spread (3-frame median: dlib's one-frame slips out) does.
HEAD_MOVES, HEAD_STILL_RENDER = 0.02, 0.04
MOUTH_MOVES, MOUTH_STILL_RENDER = 0.05, 0.05


@dataclass
class Reenactment:
    clip: str
    frames: int
    psnr: float
    psnr_still: float
    ssim: float
    ssim_still: float
    head_r: float
    mouth_r: float
    identity: float
    render_s: float
    head_spread: float = float("nan")  # nose-tip std / eye distance: real, render
    head_spread_render: float = float("nan")
    mouth_spread: float = float("nan")  # mouth-opening 5-95 percentile spread: real, render
    mouth_spread_render: float = float("nan")

    @property
    def head_moves(self) -> bool:
        return not self.head_spread < HEAD_MOVES

    @property
    def mouth_moves(self) -> bool:
        return not self.mouth_spread < MOUTH_MOVES

    @property
    def head_ok(self) -> bool:
        return self.head_r >= TARGETS["head_r"] if self.head_moves else self.head_spread_render < HEAD_STILL_RENDER

    @property
    def mouth_ok(self) -> bool:
        return self.mouth_r >= TARGETS["mouth_r"] if self.mouth_moves else self.mouth_spread_render < MOUTH_STILL_RENDER

    @property
    def passes(self) -> bool:
        return (self.psnr - self.psnr_still >= TARGETS["psnr_gain_db"]
                and self.ssim - self.ssim_still >= TARGETS["ssim_gain"]
                and self.head_ok and self.mouth_ok and self.identity <= TARGETS["identity"])  # fmt: skip


def head_spread(landmarks: np.ndarray) -> float:
    """How much a head moves: its nose tip's std (x and y, mean) over the median eye-corner distance."""
    eyes = float(np.nanmedian(np.linalg.norm(landmarks[:, 36] - landmarks[:, 45], axis=1)))
    return float(np.nanmean(np.nanstd(landmarks[:, NOSE_TIP, :2], axis=0))) / max(eyes, 1e-6)


def mouth_spread(opening: np.ndarray) -> float:
    """How much a mouth moves: the 5-95 percentile spread of its opening after a 3-frame median."""
    from scipy.ndimage import median_filter

    series = np.asarray(opening, np.float64)
    series = series[np.isfinite(series)]
    if len(series) < 3:
        return float("nan")
    filtered = median_filter(series, 3, mode="nearest")
    return float(np.percentile(filtered, 95) - np.percentile(filtered, 5))


def read_frames(path: Path, limit: int) -> list[np.ndarray]:
    """RGB frames of a video, or of a folder of PNG frames (as `portrait animate --out FOLDER` writes them)."""
    if path.is_dir():
        import cv2

        files = sorted(path.glob("frame_*.png"))[:limit]
        return [cv2.cvtColor(cv2.imread(str(f), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for f in files]
    from device.media.video import read_frames as frames

    out = []
    for frame in frames(path):
        out.append(frame)
        if len(out) >= limit:
            break
    return out


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.std(a[keep]) < 1e-9 or np.std(b[keep]) < 1e-9:
        return float("nan")
    return float(np.corrcoef(a[keep], b[keep])[0, 1])


def box_scores(real: np.ndarray, other: np.ndarray, box: tuple[int, int, int, int]) -> tuple[float, float]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    x0, y0, x1, y1 = box
    a, b = real[y0:y1, x0:x1], other[y0:y1, x0:x1]
    return (float(peak_signal_noise_ratio(a, b, data_range=255)),
            float(structural_similarity(a, b, channel_axis=2, data_range=255)))  # fmt: skip


def face_box(landmarks: np.ndarray, shape: tuple[int, ...], scale: float = 1.3) -> tuple[int, int, int, int] | None:
    if not np.isfinite(landmarks).all():
        return None
    low, high = landmarks.min(0), landmarks.max(0)
    centre, half = (low + high) / 2, (high - low).max() / 2 * scale
    x0, y0 = np.floor(centre - half).astype(int).clip(0)
    x1, y1 = int(min(shape[1], np.ceil(centre[0] + half))), int(min(shape[0], np.ceil(centre[1] + half)))
    return (int(x0), int(y0), x1, y1) if x1 - x0 > 8 and y1 - y0 > 8 else None


def render_drive(
    photo: Path, clip: Path, fps: int, size: int, frames: int, backend: str, out: Path, repo: Path = REPO
) -> float:
    """`portrait animate PHOTO --drive CLIP` with the checkout ``repo`` into ``out``; the seconds it took.

    Give `out` as a folder: the frames come as PNG and the judge scores the renderer, not a second H.264
    encode (at CRF 20 that alone put a still clip's first frame at 37 dB against its own, where the
    source's consecutive frames are 44 dB apart: the still-frame baseline pays no such encode).
    RuntimeError with the command's last line of stderr when it fails.
    """
    command = [
        sys.executable, "-m", "device.cli", "animate", str(photo), "--drive", str(clip), "--fps", str(fps),
        "--size", str(size), "--seconds", f"{frames / fps:.6f}", "--backend", backend, "--out", str(out), "--quiet",
    ]  # fmt: skip
    if repo == REPO:
        command.append("--no-drive-audio")  # older checkouts dropped the driver's sound anyway
    return run_animate(command, repo)


def run_animate(command: list[str], repo: Path = REPO) -> float:
    """Run a `portrait animate` command line in the checkout ``repo``; the seconds it took."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=repo)
    if done.returncode != 0:
        message = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise RuntimeError(f"portrait animate failed (exit {done.returncode}): {message}")
    return time.perf_counter() - started


def clip_and_portrait(clip: Path, work: Path, limit: int) -> tuple[Any, int, list[np.ndarray], Path]:
    """(probe info, fps, the real frames, the first frame saved as the portrait) of a self-reenactment."""
    from PIL import Image

    info = probe(clip)
    fps = round(float(info.fps))
    real = read_frames(clip, limit)
    if len(real) < 2:
        raise BadInput(f"video {clip}: needs at least 2 frames")
    photo = work / f"{clip.stem}.png"
    Image.fromarray(first_frame(clip.resolve())).save(photo)
    return info, fps, real, photo


def evaluate(clip: Path, judge: Judge, work: Path, backend: str, limit: int, repo: Path = REPO) -> Reenactment:
    info, fps, real, photo = clip_and_portrait(clip, work, limit)
    clip = clip.resolve()
    out = work / f"{clip.stem}-render"  # PNG frames: see render_drive
    render_s = render_drive(photo, clip, fps, max(info.width, info.height), len(real), backend, out, repo)
    rendered = read_frames(out, len(real))
    n = min(len(real), len(rendered))
    real_track, render_track = judge.track(real[:n]), judge.track(rendered[:n])
    still = real[0]
    scores, still_scores = [], []
    for i in range(1, n):
        box = face_box(real_track.landmarks[i], real[i].shape)
        if box is None or rendered[i].shape != real[i].shape:
            continue
        scores.append(box_scores(real[i], rendered[i], box))
        still_scores.append(box_scores(real[i], still, box))
    if not scores:
        raise RuntimeError(f"{clip.name}: the judge found no face to score")
    head = [pearson(real_track.landmarks[:n, NOSE_TIP, k], render_track.landmarks[:n, NOSE_TIP, k]) for k in (0, 1)]
    real_mouth, render_mouth = real_track.series(mouth_opening), render_track.series(mouth_opening)
    mouth = pearson(real_mouth, render_mouth)
    reference = judge.describe(still)
    step = max(1, n // 12)  # a dozen frames are enough for identity
    distances = []
    for i in range(step, n, step):
        box = render_track.boxes[i]
        if box is not None and np.isfinite(render_track.landmarks[i]).all():
            descriptor = judge.descriptor(rendered[i], render_track.landmarks[i], box)
            distances.append(float(np.linalg.norm(descriptor - reference)))
    s, t = np.array(scores), np.array(still_scores)
    return Reenactment(
        clip=clip.stem, frames=n, psnr=float(s[:, 0].mean()), psnr_still=float(t[:, 0].mean()),
        ssim=float(s[:, 1].mean()), ssim_still=float(t[:, 1].mean()), head_r=float(np.nanmean(head)),
        mouth_r=mouth, identity=float(np.mean(distances)) if distances else float("nan"), render_s=render_s,
        head_spread=head_spread(real_track.landmarks[:n]), head_spread_render=head_spread(render_track.landmarks[:n]),
        mouth_spread=mouth_spread(real_mouth), mouth_spread_render=mouth_spread(render_mouth),
    )  # fmt: skip


def _moving(r: float, moves: bool) -> str:
    """An r, or "still" (with the r after it) where the real clip hardly moves."""
    return f"{r:.2f}" if moves else "still"


def print_table(results: list[Reenactment], failed: list[tuple[str, str]]) -> None:
    head = (
        f"{'clip':6} {'frames':>6} {'PSNR':>6} {'still':>6} {'gain':>6} {'SSIM':>6} {'still':>6} {'gain':>6} "
        f"{'head r':>6} {'mouth r':>7} {'ident':>6} {'render s':>8}  verdict"
    )
    print(head)
    for r in results:
        print(
            f"{r.clip:6} {r.frames:6d} {r.psnr:6.2f} {r.psnr_still:6.2f} {r.psnr - r.psnr_still:+6.2f} "
            f"{r.ssim:6.3f} {r.ssim_still:6.3f} {r.ssim - r.ssim_still:+6.3f} {_moving(r.head_r, r.head_moves):>6} "
            f"{_moving(r.mouth_r, r.mouth_moves):>7} "
            f"{r.identity:6.2f} {r.render_s:8.1f}  {'PASS' if r.passes else 'FAIL'}"
        )
    if results:
        m = {
            k: float(np.nanmean([getattr(r, k) for r in results]))
            for k in ("psnr", "psnr_still", "ssim", "ssim_still", "head_r", "mouth_r", "identity", "render_s")
        }
        print(
            f"{'mean':6} {sum(r.frames for r in results):6d} {m['psnr']:6.2f} {m['psnr_still']:6.2f} "
            f"{m['psnr'] - m['psnr_still']:+6.2f} {m['ssim']:6.3f} {m['ssim_still']:6.3f} "
            f"{m['ssim'] - m['ssim_still']:+6.3f} {m['head_r']:6.2f} {m['mouth_r']:7.2f} {m['identity']:6.2f} "
            f"{m['render_s']:8.1f}  {sum(r.passes for r in results)}/{len(results)}"
        )
    for name, why in failed:
        print(f"failed {name}: {why}")
    print("targets: face box >= still + 1.5 dB and SSIM + 0.03; head r >= 0.9; mouth r >= 0.7; identity <= 0.3")
    print(
        f"still: the real head's nose std < {HEAD_MOVES} eye distances (the render's must stay < {HEAD_STILL_RENDER}), "
        f"the real mouth's spread < {MOUTH_MOVES} (the render's < {MOUTH_STILL_RENDER}); the mean r is over every clip"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.eval_reenact", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a folder of talking-face videos")
    parser.add_argument("--clips", nargs="+", help="only these clips (file stems or names)")
    parser.add_argument("--backend", default="none", help="generator runtime of the render (default: none)")
    parser.add_argument("--frames", type=int, default=150, help="at most this many frames per clip (default 150)")
    parser.add_argument("--json", action="store_true", help="print a machine-readable summary")
    parser.add_argument("--repo", type=Path, default=REPO, help="render with this checkout (a before/after table)")
    args = parser.parse_args(argv)
    try:
        clips = find_clips(args.folder, args.clips)
        judge = Judge()
    except BadInput as exc:
        print(f"eval_reenact: {exc}", file=sys.stderr)
        return 2
    results, failed = [], []
    with tempfile.TemporaryDirectory(prefix="eval-reenact-") as tmp:
        for clip in clips:
            try:
                results.append(evaluate(clip, judge, Path(tmp), args.backend, args.frames, args.repo.resolve()))
            except (BadInput, RuntimeError) as exc:
                failed.append((clip.stem, str(exc)))
            if not args.json:
                print(f"  {clip.stem}: done", file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                {
                    "clips": [
                        asdict(r) | {"passes": r.passes, "head_moves": r.head_moves, "mouth_moves": r.mouth_moves}
                        for r in results
                    ],
                    "failed": failed,
                    "targets": TARGETS,
                },
                indent=2,
            )
        )
    else:
        print_table(results, failed)
    return 1 if failed and not results else 0


if __name__ == "__main__":
    sys.exit(main())
