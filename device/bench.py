"""`portrait bench`: per-stage p50/p95 ms and end-to-end fps for each available generator runtime."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

STAGES = ("face_analysis", "rig", "warp", "mouth", "generator", "composite", "head", "encode", "frame")


def available_backends() -> list[str]:
    from device.runtime import installed_backends

    return ["none", *installed_backends()]


def run_bench(
    photo: Path | None,
    size: int,
    frames: int,
    text: str,
    backends: list[str] | None,
    as_json: bool,
    threads: int,
) -> int:
    from device import assets
    from device.face.analysis import FaceAnalyzer
    from device.face.photo import load_photo
    from device.face.segment import PersonSegmenter
    from device.motion.params import FaceParams
    from device.motion.timeline import motion_track
    from device.motion.tts import synthesize
    from device.outputs.video import VideoWriter
    from device.pipeline import prepare_photo
    from device.render.renderer import Renderer
    from device.runtime import load_generator
    from device.timing import StageTimer

    photo = photo or assets.sample_portrait()
    speech = synthesize(text)
    segmenter = PersonSegmenter(threads)
    fps = 25
    rows = []
    for backend in backends or available_backends():
        timer = StageTimer()
        analyzer = FaceAnalyzer(threads)
        image = load_photo(photo)
        for _ in range(5):  # face analysis runs once per photo; a few runs give a steadier figure
            with timer.stage("face_analysis"):
                analyzer.analyse(image)
        image, face, _ = prepare_photo(analyzer, photo, size=size)
        generator = load_generator(backend)
        # As a clip renders: with the whole head moving over the still background.
        person = segmenter.mask(image)
        renderer = Renderer(image, face, generator=generator, timer=timer, person_mask=person)
        track = motion_track(frames, fps, speech=speech, seed=1)
        height, width = image.shape[:2]
        with tempfile.TemporaryDirectory() as tmp:
            writer = VideoWriter(Path(tmp) / "bench.mp4", fps, width, height)
            for index in range(min(10, frames)):  # warm-up: caches, encoder start
                writer.write(renderer.render(FaceParams.from_array(track[index])))
            timer.reset(keep=("face_analysis",))
            started = time.perf_counter()
            for index in range(frames):
                with timer.stage("frame"):
                    frame = renderer.render(FaceParams.from_array(track[index]))
                    with timer.stage("encode"):
                        writer.write(frame)
            writer.close()  # the encoder's threads finish the last frames: part of the cost
            elapsed = time.perf_counter() - started
        summary = timer.summary()
        rows.append(
            {
                "backend": backend,
                "size": f"{width}x{height}",
                "fps": round(frames / elapsed, 1),
                "clip_10s_wall_s": round(10 * fps * elapsed / frames + summary["face_analysis"]["p50"] / 1000, 2),
                "stages": {name: summary[name] for name in STAGES if name in summary},
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows, frames)
    return 0


TABLE_WIDTH = 120  # a wide terminal; the stage table wraps its runtime columns to stay within it
_STAGE_LABEL = max(len(f"{name} p50/p95") for name in STAGES)
_CELL = 17  # "1234.56 / 1234.56"


def print_table(rows: list[dict], frames: int) -> None:
    """Two tables that fit TABLE_WIDTH: fps per runtime, then ms per stage (one column per runtime)."""
    print(f"portrait bench: {frames} frames per runtime, speech-driven motion, H.264 encode included")
    header = f"{'runtime':<14} {'size':>9} {'fps':>8} {'10 s clip':>10}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['backend']:<14} {row['size']:>9} {row['fps']:>8.1f} {row['clip_10s_wall_s']:>9.2f}s")
    per_line = max(1, (TABLE_WIDTH - _STAGE_LABEL) // (_CELL + 2))
    for start in range(0, len(rows), per_line):
        group = rows[start : start + per_line]
        print()
        header = f"{'ms per stage':<{_STAGE_LABEL}}" + "".join(f"  {row['backend']:>{_CELL}}" for row in group)
        print(header)
        print("-" * len(header))
        for name in STAGES:
            cells = []
            for row in group:
                stage = row["stages"].get(name)
                cell = "-" if stage is None else f"{stage['p50']:.2f} / {stage['p95']:.2f}"
                cells.append(f"  {cell:>{_CELL}}")
            print(f"{name + ' p50/p95':<{_STAGE_LABEL}}" + "".join(cells))
    print()
    print(fastest_line(rows))


def fastest_line(rows: list[dict]) -> str:
    """The fastest runtime, then the fastest generator runtime: the one `--backend` should name."""
    best = max(rows, key=lambda r: r["fps"])
    lines = [f"fastest: {best['backend']} at {best['fps']:.1f} fps ('frame' is end to end)"]
    generators = [row for row in rows if row["backend"] != "none"]
    if generators:
        top = max(generators, key=lambda r: r["fps"])
        name = top["backend"]
        lines.append(f"fastest generator runtime: {name} at {top['fps']:.1f} fps (--backend {name})")
    else:
        lines.append("fastest generator runtime: none measured (pip install 'talking-portrait[openvino]', or another)")
    return "\n".join(lines)
