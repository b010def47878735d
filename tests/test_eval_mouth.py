"""tools.eval_mouth: the nose + mouth alignment puts a moved frame back, the below-chin region hangs under the
jaw, and the command runs end to end on a tiny talking clip the test makes (no ../shared)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tools import eval_mouth
from tools.eval_reenact import box_scores
from tools.judge import Judge

ROOT = Path(__file__).resolve().parents[1]
SIZE = 256  # renders take a second or two at this size


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """The sample portrait cut to SIZE x SIZE around the face (about 100 px wide), with the neck and collar."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[30 : 30 + SIZE, 97 : 97 + SIZE])


@pytest.fixture(scope="module")
def judge() -> Judge:
    return Judge()


@pytest.fixture(scope="module")
def landmarks(astronaut: np.ndarray, judge: Judge) -> np.ndarray:
    points = judge.track([astronaut]).landmarks[0]
    assert np.isfinite(points).all()
    return points


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    """A folder with one tiny clip: the astronaut talking (the jaw opens and closes) and nodding a little."""
    from device.face.analysis import FaceAnalyzer
    from device.motion.params import FaceParams
    from device.outputs.video import VideoWriter
    from device.render.renderer import Renderer

    renderer = Renderer(astronaut, FaceAnalyzer().analyse(astronaut))
    folder = tmp_path_factory.mktemp("clips")
    with VideoWriter(folder / "talk.mp4", 25, SIZE, SIZE) as writer:
        for i in range(8):
            writer.write(renderer.render(FaceParams(jaw_open=0.5 * (i % 2), head_pitch=2.0 * np.sin(i / 2))))
    return folder


def tool(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.eval_mouth", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip


# Geometry --------------------------------------------------------------------------------------------------


def test_similarity_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(0)
    points = rng.uniform(50, 200, (29, 2))
    angle, scale, shift = np.deg2rad(7.0), 1.15, np.array([9.0, -5.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = points @ rotation.T + shift
    matrix = eval_mouth.similarity(points, moved)
    np.testing.assert_allclose(matrix, np.hstack([rotation, shift[:, None]]), atol=1e-9)
    with pytest.raises(ValueError, match="coincide"):
        eval_mouth.similarity(np.ones((5, 2)), moved[:5])


def sketched_points(centre: tuple[float, float] = (126.0, 118.0), width: float = 46.0) -> np.ndarray:
    """68 points with a nose and a mouth where the cut astronaut's are (the rest on a ring around them)."""
    cx, cy = centre
    points = np.stack([cx + 60 * np.cos(np.linspace(0, 6, 68)), cy - 30 + 60 * np.sin(np.linspace(0, 6, 68))], 1)
    points[27:31] = np.stack([np.full(4, cx), np.linspace(cy - 58, cy - 28, 4)], 1)  # the bridge
    points[31:36] = np.stack([np.linspace(cx - 16, cx + 16, 5), np.full(5, cy - 23)], 1)  # the base
    outer, inner = np.linspace(np.pi, -np.pi, 12, endpoint=False), np.linspace(np.pi, -np.pi, 8, endpoint=False)
    points[48:60] = np.stack([cx + width / 2 * np.cos(outer), cy - 9 * np.sin(outer)], 1)  # 48 left, 54 right
    points[60:68] = np.stack([cx + width / 3 * np.cos(inner), cy - 4 * np.sin(inner)], 1)
    return points


def moved(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` turned 6 degrees and scaled 1.08 about the nose and mouth, shifted (7, -4) px, and its points."""
    centre = points[eval_mouth.ALIGN_POINTS].mean(0)
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), 6.0, 1.08)
    matrix[:, 2] += (7.0, -4.0)
    out = cv2.warpAffine(image, matrix, image.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
    return out, points @ matrix[:, :2].T + matrix[:, 2]


def test_alignment_puts_a_moved_frame_back(astronaut: np.ndarray) -> None:
    """A frame rotated, scaled and shifted by a known similarity scores far better in the mouth box once aligned
    by its nose and mouth points than as it lies."""
    points = sketched_points()
    frame, frame_points = moved(astronaut, points)
    box = eval_mouth.mouth_box(points, astronaut.shape)
    assert box is not None
    side = box[2] - box[0]
    assert abs(side - 1.6 * 46) <= 2 and abs((box[3] - box[1]) - side) <= 1  # a square, 1.6x the mouth's width
    before = box_scores(astronaut, frame, box)
    after = box_scores(astronaut, eval_mouth.align(frame, frame_points, points), box)
    assert after[0] > before[0] + 10 and after[0] > 30, (before, after)  # dB
    assert after[1] > before[1] + 0.3 and after[1] > 0.9, (before, after)  # SSIM


@pytest.mark.slow
def test_alignment_by_the_judges_own_points(astronaut: np.ndarray, landmarks: np.ndarray, judge: Judge) -> None:
    """The same, with the moved frame's points read again by dlib, as the tool reads a render."""
    frame, _ = moved(astronaut, landmarks)
    box = eval_mouth.mouth_box(landmarks, astronaut.shape)
    before = box_scores(astronaut, frame, box)
    after = box_scores(astronaut, eval_mouth.align(frame, judge.track([frame]).landmarks[0], landmarks), box)
    assert after[0] > before[0] + 8 and after[1] > before[1] + 0.2, (before, after)


@pytest.mark.slow  # loads the judge
def test_below_chin_region_lies_under_the_jaw(astronaut: np.ndarray, landmarks: np.ndarray) -> None:
    mask = eval_mouth.below_chin_mask(landmarks, astronaut.shape)
    assert mask is not None and mask.shape == astronaut.shape[:2] and mask.any()
    rows, cols = np.nonzero(mask)
    chin_y = landmarks[8, 1]
    face_height = chin_y - landmarks[:, 1].min()
    assert rows.min() >= chin_y + 0.08 * face_height - 1  # nothing of the chin itself
    assert rows.max() <= min(SIZE - 1, chin_y + 1.2 * face_height + 1)
    jaw = landmarks[:17, 0]
    assert cols.min() >= jaw.min() - 0.1 * np.ptp(jaw) - 1 and cols.max() <= jaw.max() + 0.1 * np.ptp(jaw) + 1
    still = [astronaut] * 3
    assert eval_mouth.change_series(still, mask).max() == 0
    assert eval_mouth.below_chin_mask(np.full((68, 2), np.nan), astronaut.shape) is None


# The command -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["{tmp}/nowhere"], "nowhere: not found"),
        (["{tmp}"], "holds no video"),
        (["{clips}", "--clips", "nobody"], "--clips nobody: no such video"),
        (["{clips}", "--backends", "warp9"], "--backends warp9: unknown"),
        (["{clips}", "--frames", "1"], "--frames 1"),
        (["--text", "Hello.", "--photos", "{tmp}/missing.png"], "missing.png: not found"),
        (["--text", "Hello."], "needs --photos"),
        ([], "give a FOLDER"),
    ],
)
def test_bad_input_is_exit_2_naming_it(
    args: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "talk.mp4").write_bytes(b"")  # found by name; these inputs fail before any clip is read
    argv = [a.format(tmp=tmp_path, clips=clips) for a in args]
    assert eval_mouth.main(argv) == 2
    assert says in capsys.readouterr().err


@pytest.mark.slow
def test_the_table_on_a_tiny_talking_clip(clips: Path) -> None:
    done = tool(str(clips), "--backends", "none", "--frames", "6")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "talk: rendering --backend none" in done.stderr and "talk: done" in done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("clip"))
    assert header.split() == ["clip", "frames", "still", "none", "still", "none", "none", "none", "real", "none",
                              "verdict"]  # fmt: skip
    row = next(line for line in lines if line.startswith("talk")).split()
    assert int(row[1]) == 5  # frames 1..5 of 6 scored
    numbers = [float(row[i]) for i in (2, 3, 4, 5, 7, 8, 9)]
    assert all(np.isfinite(numbers)), row
    assert row[6] in ("yes", "no") and row[-1] == "-"  # no generator asked for: no verdict
    assert any(line.startswith("targets:") for line in lines)


@pytest.mark.slow
def test_json_on_a_tiny_talking_clip(clips: Path) -> None:
    done = tool(str(clips), "--backends", "none", "--frames", "6", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["failed"] == [] and result["targets"] == {"psnr_gain_db": 2.0, "ssim_gain": 0.03}
    clip = result["clips"][0]
    assert clip["clip"] == "talk" and clip["frames"] == 6 and clip["scored"] == 5 and clip["passes"] is None
    none = clip["backends"]["none"]
    # The render is the same renderer's work as the clip: its mouth is close, and the face far from noise.
    assert 15 < none["mouth_psnr"] < 99 and 0.3 < none["mouth_ssim"] <= 1
    assert 15 < clip["still_psnr"] < 99 and 0.3 < clip["still_ssim"] <= 1
    assert 12 < none["face_psnr"] < 99 and 0.2 < none["face_ssim"] <= 1
    assert 0 <= none["below_chin"] < 30 and 0 <= clip["real_below_chin"] < 30
    assert none["lost"] == 0 and none["render_s"] > 0 and isinstance(none["closer_than_still"], bool)


@pytest.mark.slow
def test_text_mode_measures_below_the_chin(tmp_path: Path, astronaut: np.ndarray) -> None:
    from PIL import Image

    photo = tmp_path / "astro.png"
    Image.fromarray(astronaut).save(photo)
    done = tool("--text", "Hello there.", "--photos", str(photo), "--backends", "none", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["clips"] == [] and result["failed"] == []
    speech = result["speech"][0]
    assert speech["photo"] == "astro" and speech["backend"] == "none" and speech["frames"] > 10
    assert speech["mouth_range"] > 0  # the mouth did speak
    assert 0 <= speech["below_chin"] <= speech["below_chin_max"] < 60
