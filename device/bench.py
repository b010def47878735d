"""`portrait bench`: per-stage p50/p95 ms and end-to-end fps for each available generator runtime."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

STAGES = ("face_analysis", "rig", "warp", "mouth", "generator", "composite", "encode", "frame")


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
        renderer = Renderer(image, face, close_mouth_at_rest=True, generator=generator, timer=timer)
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


def print_table(rows: list[dict], frames: int) -> None:
    print(f"portrait bench: {frames} frames per runtime, speech-driven motion, H.264 encode included")
    header = f"{'runtime':<12} {'size':>9} {'fps':>7} {'10s clip':>9}  " + "  ".join(
        f"{name + ' p50/p95':>22}" for name in STAGES
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        cells = []
        for name in STAGES:
            stage = row["stages"].get(name)
            cells.append(f"{'-':>22}" if stage is None else f"{stage['p50']:>10.2f} /{stage['p95']:>9.2f}")
        print(
            f"{row['backend']:<12} {row['size']:>9} {row['fps']:>7.1f} {row['clip_10s_wall_s']:>8.2f}s  "
            + "  ".join(cells)
        )
    best = max(rows, key=lambda r: r["fps"])
    print(f"fastest: {best['backend']} at {best['fps']:.1f} fps (ms per stage; 'frame' is end to end)")
