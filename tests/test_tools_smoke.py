"""Every benchmark and evaluation tool, run as its README line runs it but at a tiny size, so that none
of them can stop working unnoticed: each prints its table with plausible numbers and exits 0, and the
rollout benchmark keeps, on failure, the logs its message names. (`portrait bench` is in test_cli.py,
`tools.eval_lipsync` in test_eval_lipsync.py.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def tool(name: str, *args: str, tmp: Path | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """`python -m tools.NAME ARGS` from the checkout; `tmp` becomes its TMPDIR, so what it leaves is found there."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    return subprocess.run(
        [sys.executable, "-m", f"tools.{name}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def row(output: str, label: str) -> str:
    """The value column of a two-column table row."""
    line = next((x for x in output.splitlines() if x.startswith(label)), None)
    assert line is not None, f"no row {label!r} in:\n{output}"
    return line[len(label) :].strip()


@pytest.mark.slow
def test_bench_rollout_two_devices(tmp_path: Path) -> None:
    done = tool("bench_rollout", "--devices", "2", "--mb", "2", tmp=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert row(done.stdout, "devices") == "2 (canary 1), 2 SUCCEEDED"
    assert row(done.stdout, "bundle").startswith("2.0")  # MB, as asked
    # Each device fetched the bundle once from the broker: egress about size x devices.
    assert 0.95 <= float(row(done.stdout, "sent / (size x devices)")) <= 1.5
    assert not list(tmp_path.glob("bench-rollout-*"))  # a run that succeeded leaves nothing behind


def test_bench_rollout_below_the_smallest_bundle_is_exit_2(tmp_path: Path) -> None:
    done = tool("bench_rollout", "--devices", "2", "--mb", "1", tmp=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--mb 1: the smallest real bundle is" in done.stderr


@pytest.mark.slow
def test_bench_rollout_keeps_the_logs_it_names_when_it_fails(tmp_path: Path) -> None:
    done = tool("bench_rollout", "--devices", "1", "--mb", "2", "--timeout", "0.01", tmp=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 of 1 devices did not succeed (sim00=TIMEOUT)" in done.stderr
    folder = Path(re.search(r"the logs are kept in (\S+)", done.stderr).group(1))
    assert folder.parent == tmp_path and (folder / "sim00.log").is_file()
    assert "msg=ready device=sim00" in (folder / "sim00.log").read_text()


@pytest.mark.slow
def test_bench_flood_fifty_commands() -> None:
    done = tool("bench_flood", "--commands", "50")
    assert done.returncode == 0, done.stdout + done.stderr
    assert row(done.stdout, "replies / commands") == "50 / 50"
    before, after = (float(x) for x in re.findall(r"[\d.]+", row(done.stdout, "daemon RSS before / after")))
    assert 20 < before <= after < 1000


@pytest.mark.slow
def test_bench_live_a_few_frames() -> None:
    done = tool(
        "bench_live",
        "--seconds",
        "1",
        "--warmup",
        "0.5",
        "--size",
        "128",
        "--performer-frames",
        "10",
        "--runs",
        "1",
        "--soak-jobs",
        "1",
        "--backend",
        "none",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "mirror mode, 128x128 output" in out
    paced = row(out, "file @ 25 fps").split()
    assert float(paced[0]) > 1 and 0 < float(paced[1]) <= float(paced[2])  # fps, latency p50 <= p95
    first = re.search(r"p50 ([\d.]+) s, max ([\d.]+) s over 1 runs", out)
    assert first and 0 < float(first.group(1)) < 30
    assert 20 < float(row(out, "start")) <= float(row(out, "1 job")) < 1000  # RSS MB


def test_review_sheet_at_a_small_size(tmp_path: Path) -> None:
    from tools import review

    out = tmp_path / "review.png"
    done = tool("review", "--backend", "tflite", "--size", "128", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    with Image.open(out) as sheet:
        assert sheet.size == (review.LABEL + 5 * review.CELL, 28 + len(review.POSES) * review.CELL)
    assert len(re.findall(r"mean change [\d.]+ / 255", done.stdout)) == len(review.POSES)


def test_review_without_a_generator_is_exit_2(tmp_path: Path) -> None:
    done = tool(
        "review", "--backend", "tflite", "--bundle", str(tmp_path / "no-bundle"), "--out", str(tmp_path / "r.png")
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no-bundle" in done.stderr and not (tmp_path / "r.png").exists()


@pytest.mark.slow
def test_lipsync_one_sentence() -> None:
    done = tool("lipsync", "--text", "Hello there, my friend.")
    assert done.returncode == 0, done.stdout + done.stderr
    numbers = row(done.stdout, "sample (astronaut)").split()
    frames, r, wide, shut = int(numbers[0]), *(float(x) for x in numbers[1:4])
    assert frames > 25 and r > 0.5 and wide > shut  # the mouth opens where the track opens it


@pytest.mark.slow
def test_eval_reenact_on_a_tiny_driving_clip(tmp_path: Path) -> None:
    """The self-reenactment evaluation on a clip the test makes: the sample portrait turning its head."""
    import numpy as np
    from skimage import data

    from device.face.analysis import FaceAnalyzer
    from device.motion.params import FaceParams
    from device.outputs.video import VideoWriter
    from device.render.renderer import Renderer

    image = np.ascontiguousarray(data.astronaut())
    renderer = Renderer(image, FaceAnalyzer().analyse(image))
    clips = tmp_path / "clips"
    clips.mkdir()
    with VideoWriter(clips / "turn.mp4", 25, 512, 512) as writer:
        for i in range(12):
            writer.write(renderer.render(FaceParams(head_yaw=4.0 * np.sin(i / 3), jaw_open=0.3 * (i % 3 == 0))))
    done = tool("eval_reenact", str(clips), "--frames", "12", "--json", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)["clips"][0]
    assert result["clip"] == "turn" and result["frames"] == 12
    assert all(np.isfinite(result[k]) for k in ("psnr", "psnr_still", "ssim", "head_r", "identity"))
    assert result["identity"] < 0.6  # the judge sees the same person
