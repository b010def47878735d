"""Renderer fidelity: render a sentence, measure the mouth opening in every rendered frame with the
face mesh, and correlate it with the viseme openness track the renderer was driven by.

    python -m tools.lipsync [PHOTO] [--text T] [--lang L]

Prints Pearson r (target >= 0.7), the mean opening where the track opens the mouth wide vs where it
shuts it. This checks that the renderer shows what it is driven with; it cannot see a timing error
(the mesh and the track come from the same side). Lip sync against real speakers, read by an
independent landmark model, is `python -m tools.eval_lipsync`.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_TEXT = "Hello! My name is Ada. I was painted a long time ago, but today I can finally speak to you."
WIDE_OPEN = 0.5  # frames the track opens to at least half its widest
SHUT = 0.02  # frames the track holds shut (m, b, p, silence)


@dataclass
class LipSyncReport:
    pearson_r: float
    frames: int
    open_mean: float  # measured opening on frames the track opens wide
    closed_mean: float  # on frames the track holds shut
    measured: np.ndarray
    expected: np.ndarray


def evaluate(
    photo: Path | None, text: str, lang: str = "en", fps: int = 25, analyzer=None, backend: str = "none"
) -> LipSyncReport:
    from device import assets
    from device.face import topology as topo
    from device.media.video import read_frames
    from device.motion.visemes import mouth_track, openness, speaking_envelope
    from device.pipeline import AnimateRequest, Animator

    animator = Animator(backend=backend)
    analyzer = analyzer or animator.analyzer
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "lipsync.mp4"
        request = AnimateRequest(photo=photo or assets.sample_portrait(), out=out, text=text, lang=lang, fps=fps)
        result = animator.animate(request)
        speech = animator.prepare_speech(request)
        expected = openness(mouth_track(speech.phones, fps, result.frames))
        speaking = speaking_envelope(speech.phones, fps, result.frames)
        measured, previous = [], None
        for frame in read_frames(out):
            previous = analyzer.track(frame, previous)
            measured.append(np.nan if previous is None else topo.mouth_opening(previous))
    measured = np.array(measured)
    # Before and after the speech the portrait shows its own mouth (a smile with teeth stays one): the
    # viseme track speaks for the frames in between.
    valid = ~np.isnan(measured)
    valid[: len(speaking)] &= speaking[: len(valid)] >= 0.99
    valid[len(speaking) :] = False
    r = float(np.corrcoef(measured[valid], expected[valid])[0, 1])
    n = min(len(measured), len(expected))
    open_frames = np.zeros(len(measured), bool)
    closed_frames = np.zeros(len(measured), bool)
    open_frames[:n] = expected[:n] >= WIDE_OPEN * expected.max()
    closed_frames[:n] = expected[:n] <= SHUT
    open_frames &= valid
    closed_frames &= valid
    return LipSyncReport(
        pearson_r=r,
        frames=len(measured),
        open_mean=float(measured[open_frames].mean()) if open_frames.any() else float("nan"),
        closed_mean=float(measured[closed_frames].mean()) if closed_frames.any() else float("nan"),
        measured=measured,
        expected=expected,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photo", nargs="?")
    parser.add_argument("--text", default=DEFAULT_TEXT)
    parser.add_argument("--lang", default="en")
    parser.add_argument("--backend", default="none", help="generator runtime (default: none, the warp alone)")
    args = parser.parse_args()
    report = evaluate(Path(args.photo) if args.photo else None, args.text, args.lang, backend=args.backend)
    print(f"{'photo':<40} {'frames':>6} {'pearson r':>10} {'open vowels':>12} {'m/b/p+silence':>14}")
    print(
        f"{args.photo or 'sample (astronaut)':<40} {report.frames:>6} {report.pearson_r:>10.3f} "
        f"{report.open_mean:>12.3f} {report.closed_mean:>14.3f}"
    )
    print("target: pearson r >= 0.7 (mouth opening measured by the face mesh vs the viseme openness track)")


if __name__ == "__main__":
    main()
