"""The lip-sync evaluation and its independent judge (dlib), on a clip the test renders itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device.errors import BadInput
from tests.conftest import run_cli, save_rgb
from tools.eval_lipsync import check_audio, lag_correlations, main
from tools.judge import LANDMARKS_68, MODEL_SHA256, Judge, descriptor_distance, mouth_opening, mouth_width

SENTENCE = "Hello, I am Ada."
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def judge() -> Judge:
    return Judge()


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory, astronaut):
    """A folder with a short talking clip (speech track, transcript beside it) and one with a silent track."""
    from device.outputs.video import VideoWriter

    folder = tmp_path_factory.mktemp("clips")
    # The head and shoulders at 256 x 256: the face stays large enough (about 100 px) for the renderer to
    # take the clip's first frame as a portrait again.
    portrait = np.ascontiguousarray(astronaut[10:266, 92:348])
    photo = save_rgb(folder.parent / "astronaut.png", portrait)
    result = run_cli("animate", str(photo), "--text", SENTENCE, "--size", "256", "--out", str(folder / "talk.mp4"))
    assert result.returncode == 0, result.stderr
    (folder / "talk.txt").write_text(SENTENCE + "\n")
    still = portrait
    with VideoWriter(folder / "quiet.mp4", 25, 256, 256, audio=np.zeros(16000, np.float32), sample_rate=16000) as w:
        for _ in range(25):
            w.write(still)
    return folder


@pytest.mark.slow
def test_evaluation_reports_the_talking_clip_and_skips_the_silent_one(clip_folder, tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tools.eval_lipsync", str(clip_folder), "--json", "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert "render trails" in report["lag_sign"]
    (row,) = report["clips"]
    assert row["clip"] == "talk.mp4" and row["transcript"] is True
    assert row["frames"] > 25
    for key in ("r_lag0", "best_r", "r_within", "amplitude_ratio", "real_mouth_audio_r"):
        assert np.isfinite(row[key]), key
    assert sorted(int(k) for k in row["lag_r"]) == list(range(-8, 9))
    assert row["lost_real"] == [] and row["lost_render"] == []
    # The render of a render re-speaks the same audio: its mouth moves with the source's.
    assert row["best_r"] > 0.3 and abs(row["best_lag"]) <= 3
    assert [s["clip"] for s in report["skipped"]] == ["quiet.mp4"]
    assert "silent" in report["skipped"][0]["reason"]
    assert (tmp_path / "summary.json").is_file() and (tmp_path / "talk.tracks.json").is_file()


@pytest.mark.slow
def test_judge_reads_an_open_mouth_wider_than_a_closed_one(judge, analyzer, astronaut) -> None:
    from device.motion.params import FaceParams
    from device.pipeline import prepare_photo
    from device.render.renderer import Renderer

    photo, face, _ = prepare_photo(analyzer, astronaut, size=512)
    renderer = Renderer(photo, face)
    closed, opened = renderer.render(FaceParams()), renderer.render(FaceParams(jaw_open=0.9))
    readings = []
    for image in (closed, opened):
        (box, *_) = judge.detect(image)
        readings.append(judge.landmarks(image, box))
    assert mouth_opening(readings[1]) > mouth_opening(readings[0]) + 0.05
    assert 0.3 < mouth_width(readings[0]) < 1.0
    # The same face, mouth open or not: well inside dlib's same-person distance (0.6).
    a, b = (judge.descriptor(image, points) for image, points in zip((closed, opened), readings, strict=True))
    assert a.shape == (128,) and descriptor_distance(a, a) == 0.0
    assert descriptor_distance(a, b) < 0.45


@pytest.mark.slow  # loading the judge: about 3 s
def test_track_marks_frames_without_a_face_lost(judge, astronaut) -> None:
    blank = np.full((256, 256, 3), 128, np.uint8)
    track = judge.track([astronaut, blank, astronaut])
    assert track.status == ["detected", "lost", "detected"]
    assert track.lost == [1]
    opening = track.series(mouth_opening)
    assert np.isnan(opening[1]) and np.isfinite(opening[[0, 2]]).all()


def test_judge_refuses_a_model_file_with_the_wrong_hash(tmp_path) -> None:
    (tmp_path / LANDMARKS_68).write_bytes(b"not the landmark model")
    with pytest.raises(BadInput, match=LANDMARKS_68) as caught:
        Judge(models=tmp_path)
    assert "sha256" in str(caught.value) and MODEL_SHA256[LANDMARKS_68][:16] in str(caught.value)
    with pytest.raises(BadInput, match="not found"):
        Judge(models=tmp_path / "nowhere")


def test_positive_lag_means_the_render_trails() -> None:
    rng = np.random.default_rng(0)
    real = np.convolve(rng.normal(size=200), np.ones(4) / 4, mode="same")
    render = np.concatenate([np.zeros(3), real[:-3]])  # the same mouth, 3 frames late
    lags = lag_correlations(real, render)
    assert max(lags, key=lags.get) == 3 and lags[3] > 0.99


def test_audio_check_tells_silence_and_noise_from_speech() -> None:
    rate = 16000
    assert not check_audio(np.zeros(rate * 2, np.float32), rate).speech
    noise = np.random.default_rng(1).normal(scale=0.1, size=rate * 2).astype(np.float32)
    check = check_audio(noise, rate)
    assert not check.speech and "voice" in check.reason
    t = np.arange(rate * 2) / rate
    syllables = (np.sin(2 * np.pi * 4 * t) > 0).astype(np.float32)  # a voice at 150 Hz, 4 bursts a second
    assert check_audio(0.3 * np.sin(2 * np.pi * 150 * t).astype(np.float32) * syllables, rate).speech


def test_bad_input_exits_2(tmp_path, capsys) -> None:
    assert main([str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    (tmp_path / "a.mp4").write_bytes(b"")
    assert main([str(tmp_path), "--clips", "zz"]) == 2
    assert "--clips zz" in capsys.readouterr().err
    assert main([str(tmp_path), "--fps", "fast"]) == 2
