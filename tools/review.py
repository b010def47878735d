"""Visual review of a generator bundle: the warp alone next to the warp + generator, on real faces.

    python -m tools.review [--bundle device/runtime/bundles/default] [--backend openvino] \
        [--photos skimage:astronaut ...] [--size 512] [--out review.png]
    python -m tools.review --verdict use|reject --reason "..." [--checkpoint models/checkpoints/default.pt]

The numbers of the held-out table say whether the generator is closer to the real face; they do not
say whether it looks better to a visitor (a model trained on a few faces can win on PSNR and still
lighten irises or fill an open mouth with pale texture). This renders what the device shows, through
the device's own renderer and backend, as one PNG: a row per face, for each pose the warp alone, the
warp + generator and their difference (x4). A person looks at it and records the verdict beside the
checkpoint (`default.review.json`); the export signs it into the bundle's evaluation, and `--backend
auto` uses the generator only when the held-out table and the review both say so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from device.errors import BadInput
from device.motion.params import FaceParams
from device.runtime import RUNTIMES

# Poses where the warp is weakest: open vowels (the mouth's inside: teeth, tongue, the dark of the mouth),
# a smile with teeth, lips pressed for m/b/p, closing eyelids, a glance aside.
POSES: dict[str, FaceParams] = {
    "rest": FaceParams(),
    "oh": FaceParams(jaw_open=0.5, lip_round=0.6),
    "aa": FaceParams(jaw_open=1.0),
    "smile ee": FaceParams(jaw_open=0.35, lip_wide=1.0, smile=0.8),
    "m/b/p": FaceParams(jaw_open=0.3, lip_press=1.0, mouth_close=1.0),
    "blink": FaceParams(blink_left=0.9, blink_right=0.9),
    "glance": FaceParams(gaze_x=0.8, jaw_open=0.3),
}
CELL = 256  # px per image in the sheet
LABEL = 160  # px of the label column


def review_path(checkpoint: str | Path) -> Path:
    return Path(checkpoint).with_suffix(".review.json")


def _face_box(face, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    pts = face.landmarks[:, :2]
    centre = (pts.min(0) + pts.max(0)) / 2
    half = float((pts.max(0) - pts.min(0)).max()) * 0.62
    x0, y0 = (np.maximum(centre - half, 0)).astype(int)
    x1, y1 = int(min(centre[0] + half, shape[1])), int(min(centre[1] + half, shape[0]))
    return x0, y0, x1, y1


def _mouth_box(face, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """A square around the mouth, twice its width: where a visitor looks when the portrait speaks."""
    from device.face import topology as topo

    lips = face.landmarks[topo.LIPS_OUTER_UPPER + topo.LIPS_OUTER_LOWER, :2]
    centre = (lips.min(0) + lips.max(0)) / 2 + np.array([0.0, 0.15 * np.ptp(lips[:, 0])])
    half = float(np.ptp(lips[:, 0]))
    x0, y0 = (np.maximum(centre - half, 0)).astype(int)
    x1, y1 = int(min(centre[0] + half, shape[1])), int(min(centre[1] + half, shape[0]))
    return x0, y0, x1, y1


def _cell(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return cv2.resize(image[y0:y1, x0:x1], (CELL, CELL), interpolation=cv2.INTER_AREA)


def render_sheet(
    photos: list[str], backend: str, bundle: str | None, threads: int = 2, size: int = 512
) -> tuple[np.ndarray, list[dict]]:
    """The review sheet (RGB) and, per face and pose, how much the generator changed the face."""
    from device.face.analysis import FaceAnalyzer
    from device.pipeline import prepare_photo
    from device.render.renderer import Renderer
    from device.runtime import load_generator
    from models.data import load_sources

    stage = load_generator(backend, bundle=bundle, threads=threads)
    if stage is None:
        raise BadInput(f"review: --backend {backend} loads no generator; name a runtime ({', '.join(RUNTIMES)})")
    analyzer = FaceAnalyzer(threads)
    rows, stats = [], []
    for name, image in load_sources(photos):
        photo, face, _ = prepare_photo(analyzer, image, size=size)
        warp_only = Renderer(photo, face)
        refined = Renderer(photo, face, generator=stage)
        box, mouth = _face_box(face, photo.shape), _mouth_box(face, photo.shape)
        for pose, params in POSES.items():
            a, b = warp_only.render(params), refined.render(params)
            diff = np.clip(np.abs(a.astype(np.int16) - b.astype(np.int16)) * 4, 0, 255).astype(np.uint8)
            label = np.full((CELL, LABEL, 3), 255, np.uint8)
            for k, text in enumerate((Path(name).name.split("#")[0][:18], pose)):
                cv2.putText(label, text, (6, 24 + 22 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
            cells = [_cell(a, box), _cell(b, box), _cell(diff, box), _cell(a, mouth), _cell(b, mouth)]
            rows.append(np.concatenate([label, *cells], axis=1))
            stats.append(
                {"photo": name, "pose": pose, "mean_change": round(float(np.abs(a.astype(float) - b).mean()), 3)}
            )
    header = np.full((28, rows[0].shape[1], 3), 255, np.uint8)
    titles = ("warp alone", "warp + generator", "difference x4", "mouth: warp alone", "mouth: generator")
    for j, text in enumerate(titles):
        cv2.putText(header, text, (LABEL + j * CELL + 6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([header, *rows], axis=0), stats


def record_verdict(checkpoint: str | Path, use: bool, reason: str, sheet: str | None = None) -> Path:
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise BadInput(f"review: checkpoint {checkpoint} not found")
    if not reason.strip():
        raise BadInput("review: --reason is required: say what you saw")
    from device.assets import sha256_file

    verdict = {
        "use_by_default": use,
        "reason": reason.strip(),
        "checkpoint_sha256": sha256_file(checkpoint),
        "reviewed": dt.date.today().isoformat(),
    }
    if sheet:
        verdict["sheet"] = sheet
    path = review_path(checkpoint)
    path.write_text(json.dumps(verdict, indent=2) + "\n")
    return path


def load_verdict(checkpoint: str | Path) -> dict | None:
    """The recorded review of this very checkpoint, or None (none, or one made for another checkpoint)."""
    from device.assets import sha256_file

    path = review_path(checkpoint)
    if not path.is_file():
        return None
    verdict = json.loads(path.read_text())
    if verdict.get("checkpoint_sha256") != sha256_file(checkpoint):
        return None
    return verdict


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.review", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default=None, help="model bundle (default: the installed one)")
    p.add_argument("--backend", default="openvino", choices=RUNTIMES)
    p.add_argument("--photos", nargs="+", default=["skimage:astronaut"], help="faces to review (held-out ones)")
    p.add_argument("--size", type=int, default=512, help="longest side the faces are rendered at (default: 512)")
    p.add_argument("--out", default="review.png")
    p.add_argument("--verdict", choices=("use", "reject"), help="record the review instead of rendering it")
    p.add_argument("--reason", default="", help="what the review saw (with --verdict)")
    p.add_argument("--checkpoint", default="models/checkpoints/default.pt", help="the checkpoint reviewed")
    args = p.parse_args(argv)
    try:
        if args.verdict:
            path = record_verdict(args.checkpoint, args.verdict == "use", args.reason, Path(args.out).name)
            print(f"review: recorded in {path}; re-export to sign it into the bundle")
            return 0
        sheet, stats = render_sheet(args.photos, args.backend, args.bundle, size=args.size)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cv2.imwrite(args.out, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"review sheet: {args.out} ({len(stats) // len(POSES)} faces x {len(POSES)} poses: warp | generator | diff)")
    for s in stats:
        print(f"  {s['photo']:40s} {s['pose']:10s} mean change {s['mean_change']:.2f} / 255")
    return 0


if __name__ == "__main__":
    sys.exit(main())
