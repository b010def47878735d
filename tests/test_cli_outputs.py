"""`portrait animate --out`: one rule for a file and a folder that are already there (exit 2 naming the
path and `--overwrite`, unless `--overwrite`), and never a half-written output, even when the render is
interrupted or killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from device.media.video import probe_video
from tests.conftest import run_cli

QUICK = ("--seconds", "0.5", "--fps", "10", "--size", "128", "--backend", "none", "--quiet")


def render(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli("animate", *QUICK, "--out", str(out), *extra)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under a folder (hidden ones included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def old_frames(folder: Path, count: int) -> dict[str, bytes]:
    """A previous render's output: `count` frames, its audio, and a file of the user's."""
    folder.mkdir()
    for i in range(count):
        cv2.imwrite(str(folder / f"frame_{i:06d}.png"), np.full((32, 32, 3), i, np.uint8))
    (folder / "audio.wav").write_bytes(b"RIFF old audio")
    (folder / "notes.txt").write_text("the user's own file\n")
    return snapshot(folder)


def test_an_existing_file_is_refused_naming_it_and_the_remedy(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"an earlier clip")
    result = render(out)
    assert result.returncode == 2
    assert str(out) in result.stderr and "--overwrite" in result.stderr
    assert out.read_bytes() == b"an earlier clip"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_an_existing_folder_is_refused_the_same_way(tmp_path: Path) -> None:
    out = tmp_path / "frames"
    before = old_frames(out, 3)
    result = render(out)
    assert result.returncode == 2
    assert str(out) in result.stderr and "--overwrite" in result.stderr
    assert snapshot(out) == before


def test_overwrite_replaces_a_file_with_a_complete_clip(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"an earlier clip")
    result = render(out, "--overwrite")
    assert result.returncode == 0, result.stderr
    info = probe_video(out)
    assert info.frames == 5 and (info.width, info.height) == (128, 128)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # no temporary file beside it


def test_overwrite_replaces_the_frames_of_a_folder_and_keeps_other_files(tmp_path: Path) -> None:
    out = tmp_path / "frames"
    before = old_frames(out, 12)  # a longer earlier render: its frames 5..11 must not linger
    result = render(out, "--overwrite")
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"frame_{i:06d}.png" for i in range(5)] + ["notes.txt"]
    assert (out / "notes.txt").read_bytes() == before["notes.txt"]
    assert cv2.imread(str(out / "frame_000000.png")).shape == (128, 128, 3)


def test_an_empty_folder_is_not_an_output_yet(tmp_path: Path) -> None:
    out = tmp_path / "frames"
    out.mkdir()
    assert render(out).returncode == 0
    assert len(list(out.glob("frame_*.png"))) == 5


def start_long_render(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "device.cli",
            "animate",
            "--seconds",
            "600",  # far longer than the test waits: it is always stopped mid-way
            "--fps",
            "25",
            "--size",
            "256",
            "--backend",
            "none",
            "--quiet",
            "--out",
            str(out),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as in a terminal: a test run started in the background inherits SIGINT ignored, and a
        # child that ignores it would render the whole clip instead of stopping.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for(predicate, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the render did not start writing in time"
        time.sleep(0.1)


def test_an_interrupted_overwrite_leaves_the_earlier_clip(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    render(out)
    before = out.read_bytes()
    proc = start_long_render(out, "--overwrite")
    try:
        wait_for(lambda: any(p.stat().st_size > 0 for p in tmp_path.glob(".clip.*.part.mp4")), 120, proc)
        proc.send_signal(signal.SIGINT)  # Ctrl-C mid-render
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted" in stderr
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_a_killed_frames_render_leaves_the_earlier_frames_whole(tmp_path: Path) -> None:
    out = tmp_path / "frames"
    before = old_frames(out, 3)
    proc = start_long_render(out, "--overwrite")
    try:
        wait_for(lambda: len(list(out.glob(".partial-*/frame_*.png"))) >= 3, 120, proc)
        os.kill(proc.pid, signal.SIGKILL)  # a power cut, as far as the output can tell
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    visible = {name: data for name, data in snapshot(out).items() if not name.startswith(".partial-")}
    assert visible == before  # the earlier render is all there is at the output; nothing half-new
    # The next render cleans up what the killed one left in its hidden folder.
    assert render(out, "--overwrite").returncode == 0
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:06d}.png" for i in range(5)] + ["notes.txt"]


# ---------------------------------------------------------------- the other things users tripped on


def test_no_face_says_what_to_try(tmp_path: Path, astronaut: np.ndarray) -> None:
    from tests.conftest import save_rgb

    upside_down = save_rgb(tmp_path / "upside-down.png", np.ascontiguousarray(astronaut[::-1, ::-1]))
    result = run_cli("animate", str(upside_down), *QUICK, "--out", str(tmp_path / "a.mp4"))
    assert result.returncode == 2
    assert f"{upside_down}: no face found" in result.stderr and "turned by 180 degrees" in result.stderr

    wall = save_rgb(tmp_path / "wall.png", np.full((256, 256, 3), 128, np.uint8))
    result = run_cli("animate", str(wall), *QUICK, "--out", str(tmp_path / "b.mp4"))
    assert result.returncode == 2
    assert f"{wall}: no face found" in result.stderr
    assert "upright" in result.stderr and "at least 64 px wide" in result.stderr and "crop closer" in result.stderr

    tiny = save_rgb(tmp_path / "tiny.png", cv2.resize(astronaut, (200, 200), interpolation=cv2.INTER_AREA))
    result = run_cli("animate", str(tiny), *QUICK, "--out", str(tmp_path / "c.mp4"))
    assert result.returncode == 2
    assert "too small" in result.stderr and "crop the photo closer" in result.stderr
    assert not any(tmp_path.glob("*.mp4"))


def test_bench_fits_120_columns_and_names_the_fastest_generator_runtime() -> None:
    result = run_cli("bench", "--frames", "12", "--size", "128", "--backend", "none", "--backend", "tflite")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 120, max(lines, key=len)
    assert any(line.startswith("fastest: ") for line in lines)
    assert any(line.startswith("fastest generator runtime: tflite at ") for line in lines)
    stage_rows = [line for line in lines if line.startswith("warp p50/p95")]
    assert len(stage_rows) == 1 and len(stage_rows[0].split()) == 2 + 2 * 3  # label, then p50 / p95 per runtime
