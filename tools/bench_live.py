"""Benchmarks of the daemon's live paths, printed as tables.

    python -m tools.bench_live [--seconds 15] [--soak-jobs 30] [--size 512] [--runs 5] [--backend auto]

1. Mirror mode with a file camera (a performer video rendered from the sample portrait, read at
   the camera's own 25 fps and, second row, as fast as it decodes): frames per second and latency
   from camera frame to displayed frame (p50/p95).
2. Capture to first animated frame: a camera photo in memory -> face analysis -> speech -> the first
   rendered frame of the visitor's clip (what a kiosk visitor waits for), p50 over runs.
3. Daemon memory soak: the real daemon as a process on a local Mosquitto, `animate` jobs sent one
   after another over MQTT (about an hour of kiosk use); its RSS after each job.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import cv2
import numpy as np


def _performer(path: Path, frames: int = 100, size: int = 512) -> None:
    from skimage import data

    from device.face.analysis import FaceAnalyzer
    from device.motion.params import FaceParams
    from device.outputs.video import VideoWriter
    from device.render.renderer import Renderer

    image = np.ascontiguousarray(data.astronaut())
    renderer = Renderer(image, FaceAnalyzer().analyse(image))
    with VideoWriter(path, 25, size, size) as writer:
        for i in range(frames):
            params = FaceParams(jaw_open=max(0.0, float(np.sin(i / 6))), head_yaw=5 * float(np.sin(i / 20)))
            writer.write(cv2.resize(renderer.render(params), (size, size), interpolation=cv2.INTER_AREA))


def bench_mirror(
    seconds: float, camera_fps: float | None, video: Path, animator: Any, size: int = 512, warmup: float = 2.0
) -> dict[str, Any]:
    from device import assets
    from device.config import AppConfig
    from device.service.live import LiveRenderer
    from device.service.modes import StageHooks
    from device.service.stats import FrameMetrics

    metrics = FrameMetrics(window_s=seconds + 5)
    camera = {"type": "file", "path": str(video), "loop": True}
    if camera_fps:
        camera["fps"] = camera_fps
    with tempfile.TemporaryDirectory() as state:
        config = AppConfig.model_validate({
            "mode": "mirror", "device": {"id": "bench", "state_dir": state}, "mqtt": {"enabled": False},
            "output": {"fps": 25, "size": size}, "portrait": {"photo": str(assets.sample_portrait())}, "camera": camera,
        })  # fmt: skip
        stage = LiveRenderer()
        frames: list[float] = []
        stage.frame_listeners.append(lambda _frame: frames.append(time.perf_counter()))
        stage.start(
            "mirror",
            config,
            StageHooks(metrics=metrics, face_seen=lambda _: None, emit=lambda *_: None, renderer=lambda: animator),
        )
        time.sleep(warmup)
        start_count, started = len(frames), time.perf_counter()
        time.sleep(seconds)
        count, elapsed = len(frames) - start_count, time.perf_counter() - started
        stage.stop()
    latencies = np.array(list(stage.latencies_ms)[-max(count, 1) :])
    if latencies.size == 0:  # no frame in the window: say so in the table rather than fail on an empty array
        latencies = np.array([np.nan])
    return {
        "camera": f"file @ {camera_fps:g} fps" if camera_fps else "file, unpaced",
        "fps": count / elapsed,
        "latency_p50": float(np.percentile(latencies, 50)),
        "latency_p95": float(np.percentile(latencies, 95)),
    }


def bench_first_frame(animator: Any, runs: int = 5, size: int = 512) -> dict[str, Any]:
    from skimage import data

    from device.pipeline import AnimateRequest

    photo = np.ascontiguousarray(data.astronaut())  # a camera frame already in memory
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            first: list[float] = []
            started = time.perf_counter()

            def progress(done: int, _total: int, first=first, started=started) -> None:
                if done == 1:
                    first.append(time.perf_counter() - started)

            request = AnimateRequest(
                photo=photo, out=Path(tmp) / "visitor.mp4", text="Hello! This is me, talking.", size=size
            )
            animator.animate(request, progress=progress)
            times.append(first[0])
    return {"p50_s": float(np.median(times)), "max_s": float(np.max(times)), "runs": runs}


def bench_soak(jobs: int, size: int = 512) -> list[int]:
    from skimage import data

    from tests.service.support import Broker, DaemonProcess, Device, base_config, device_watcher, toml_dumps

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o755)
        photos = tmp / "photos"
        photos.mkdir()
        from PIL import Image

        Image.fromarray(np.ascontiguousarray(data.astronaut())).save(photos / "astronaut.png")
        broker = Broker(tmp / "mosquitto")
        broker.start()
        doc = base_config(tmp / "state", broker.port, photos)
        doc["output"] = {"fps": 25, "size": size}
        config = tmp / "portrait.toml"
        config.write_text(toml_dumps(doc))
        watcher = device_watcher(broker.port, doc["device"]["id"])
        daemon = DaemonProcess(config, tmp / "daemon.log").start()
        rss = []
        try:
            device = Device(broker.port, doc["device"]["id"], watcher)
            device.wait_online(120)
            rss.append(_rss(daemon.proc.pid))
            for index in range(jobs):
                job = f"soak-{index}-{uuid.uuid4().hex[:6]}"
                text = ["Hello, welcome to the museum.", "I was painted long ago.", "Thank you for visiting!"][
                    index % 3
                ]
                reply = device.command("animate", {"job_id": job, "photo": str(photos / "astronaut.png"), "text": text})
                assert reply["ok"], reply
                watcher.wait_for(
                    lambda m, job=job: (
                        m.topic == device.topic("events")
                        and json.loads(m.payload).get("type") in ("job.done", "job.failed")
                        and json.loads(m.payload).get("job_id") == job
                    ),
                    120,
                    what=f"{job} done",
                )
                rss.append(_rss(daemon.proc.pid))
        finally:
            daemon.terminate()
            watcher.close()
            broker.stop()
    return rss


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench_live", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="mirror measurement per row (default: 15)")
    parser.add_argument("--warmup", type=float, default=2.0, help="mirror warm-up before measuring (default: 2 s)")
    parser.add_argument("--size", type=int, default=512, help="output and camera size in pixels (default: 512)")
    parser.add_argument(
        "--performer-frames",
        type=int,
        default=100,
        help="frames of the performer video the file camera loops (default: 100)",
    )
    parser.add_argument("--runs", type=int, default=5, help="capture-to-first-frame runs (default: 5)")
    parser.add_argument("--soak-jobs", type=int, default=30, help="animate jobs in the memory soak (0: skip)")
    parser.add_argument(
        "--backend", default="auto", help="generator backend for the mirror and first-frame rows (auto, none, ...)"
    )
    args = parser.parse_args(argv)
    if min(args.size, args.performer_frames, args.runs) < 1 or args.seconds <= 0:
        parser.error("--size, --performer-frames and --runs must be at least 1, --seconds above 0")

    from device.pipeline import Animator

    size = args.size
    animator = Animator(backend=args.backend)
    print(f"generator: {getattr(animator.generator, 'name', 'none') if animator.generator else 'none (warp only)'}")
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "performer.mp4"
        _performer(video, args.performer_frames, size)
        rows = [
            bench_mirror(args.seconds, camera_fps, video, animator, size, args.warmup) for camera_fps in (25.0, None)
        ]
    print(f"\nmirror mode, {size}x{size} output, camera frame -> displayed frame (headless display)")
    print(f"{'camera':<22} {'fps':>7} {'latency p50 ms':>15} {'p95 ms':>8}")
    for row in rows:
        print(f"{row['camera']:<22} {row['fps']:>7.1f} {row['latency_p50']:>15.1f} {row['latency_p95']:>8.1f}")
    print("target: >= 20 fps")

    first = bench_first_frame(animator, args.runs, size)
    print(f"\ncapture -> first animated frame (face analysis + speech + first frame), {size}x{size}")
    print(f"p50 {first['p50_s']:.3f} s, max {first['max_s']:.3f} s over {first['runs']} runs; target <= 1.0 s")

    if args.soak_jobs:
        rss = bench_soak(args.soak_jobs, size)
        mb = np.array(rss) / 2**20
        print(f"\ndaemon RSS over {args.soak_jobs} animate jobs (MQTT, {size}x{size} clips with speech)")
        print(f"{'after':<14} {'RSS MB':>8}")
        for label, index in (("start", 0), ("1 job", 1), ("half", len(mb) // 2), ("end", len(mb) - 1)):
            print(f"{label:<14} {mb[index]:>8.1f}")
        print(
            f"max {mb.max():.1f} MB; growth from job 1 to the end {mb[-1] - mb[1]:+.1f} MB; target <= 400 MB and flat"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
