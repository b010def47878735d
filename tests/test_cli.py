"""`portrait animate` and `portrait bench` as a user runs them: real clips decoded back."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from device.media.video import probe_video
from tests.conftest import run_cli, save_rgb


def test_idle_clip_of_the_sample_portrait(tmp_path) -> None:
    out = tmp_path / "idle.mp4"
    result = run_cli("animate", "--seconds", "2", "--fps", "20", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["frames"] == 40
    # --backend auto: the committed bundle's signed evaluation and review recommend its generator.
    assert summary["generator"].endswith(":default-generator-0.1.0")
    assert {"face_analysis", "rig", "warp", "generator", "encode"} <= set(summary["timings_ms"])
    info = probe_video(out)
    assert info.frames == 40 and abs(info.duration - 2.0) < 1e-6
    assert (info.width, info.height) == (512, 512) and not info.has_audio


def test_size_and_png_frames(tmp_path, astronaut) -> None:
    photo = save_rgb(tmp_path / "photo.png", astronaut)
    out = tmp_path / "frames"
    result = run_cli("animate", str(photo), "--seconds", "0.4", "--size", "300", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    frames = sorted(out.glob("frame_*.png"))
    assert len(frames) == 10
    assert cv2.imread(str(frames[0])).shape == (300, 300, 3)


@pytest.mark.slow
def test_bad_options_exit_2_and_name_the_value(tmp_path) -> None:
    cases = [
        (["--fps", "0"], "--fps 0"),
        (["--seconds", "-1"], "--seconds -1"),
        (["--size", "10"], "--size 10"),
        (["--face", "3"], "face 3 requested"),
        (["--backend", "cuda-magic"], "--backend cuda-magic"),
        (["--out", str(tmp_path / "clip.gif")], "clip.gif"),
        (["--transcript", "hello"], "--transcript"),
    ]
    for extra, expected in cases:
        result = run_cli(
            "animate", "--seconds", "1", *extra, *([] if "--out" in extra else ["--out", str(tmp_path / "x.mp4")])
        )
        assert result.returncode == 2, (extra, result.stderr)
        assert expected in result.stderr, (extra, result.stderr)
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.slow
def test_bench_prints_a_table(tmp_path) -> None:
    result = run_cli("bench", "--frames", "15")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("none") and "512x512" in line for line in lines)
    assert "warp p50/p95" in result.stdout and "fastest: none" in result.stdout


@pytest.mark.slow
def test_seeded_idle_motion_is_reproducible(tmp_path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        assert run_cli("animate", "--seconds", "0.5", "--seed", "7", "--out", str(out), "--quiet").returncode == 0
    a = cv2.imread(str(first / "frame_000009.png")).astype(int)
    b = cv2.imread(str(second / "frame_000009.png")).astype(int)
    assert np.array_equal(a, b)
