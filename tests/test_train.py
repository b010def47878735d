"""The training command end to end on a tiny run from talking clips: checkpoint, loss log and held-out
table come out, the same seed gives the same weights, a run resumes, and the verdict needs every held-out
clip to be better."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models import train
from models.generator import INPUT_CHANNELS, load_checkpoint

TINY = ["--holdout", "mirrored", "--pairs", "3", "--eval-pairs", "2", "--size", "64", "--patch", "32",
        "--batch", "2", "--steps", "3", "--adv", "0.02", "--adv-start", "0.3"]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory, talking_clips):
    root = tmp_path_factory.mktemp("train")
    cache = root / "cache"
    runs = []
    for name in ("a", "b"):
        out = root / name / "default.pt"
        assert train.main(["--clips", str(talking_clips), *TINY, "--cache", str(cache), "--out", str(out)]) == 0
        runs.append(out)
    return runs


@pytest.mark.slow
def test_a_run_writes_checkpoint_state_log_and_evaluation(trained):
    out = trained[0]
    assert out.is_file() and out.with_suffix(".state").is_file()
    log = out.with_suffix(".log.csv").read_text().splitlines()
    assert log[0] == "step,seconds,l1,ssim,adv_g,d,lr" and len(log) == 1 + 3
    evaluation = json.loads(out.with_suffix(".eval.json").read_text())
    assert evaluation["samples"] == 2 and evaluation["held_out_clips"] == ["mirrored"]
    assert evaluation["train_clips"] == ["speaker"]
    assert set(evaluation["painted"]) == set(train.MEASURES)
    model = load_checkpoint(out)
    assert model.input_channels == list(INPUT_CHANNELS) and model.trained_crop == 64


@pytest.mark.slow
def test_the_same_seed_gives_the_same_weights(trained):
    a, b = (torch.load(p, weights_only=True)["generator"] for p in trained)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_run_resumes_where_it_stopped(trained, talking_clips, tmp_path, capsys):
    """A run's state file lets a longer run continue from its last step, appending to its loss log."""
    cache = trained[0].parent.parent / "cache"
    out = tmp_path / "split" / "g.pt"
    args = ["--clips", str(talking_clips), *TINY, "--cache", str(cache), "--out", str(out)]
    assert train.main(args) == 0
    assert train.main([*args, "--steps", "5", "--resume"]) == 0
    assert "resumed at step 3" in capsys.readouterr().out
    assert torch.load(out, weights_only=True)["trained_steps"] == 5
    steps = [line.split(",")[0] for line in out.with_suffix(".log.csv").read_text().splitlines()[1:]]
    assert steps == ["1", "2", "3", "4", "5"]


def test_bad_input_exits_2(tmp_path, talking_clips, capsys):
    assert train.main(["--clips", str(tmp_path / "missing"), "--out", str(tmp_path / "g.pt")]) == 2
    assert "not a folder" in capsys.readouterr().err
    args = ["--clips", str(talking_clips), "--holdout", "speaker", "mirrored", "--out", str(tmp_path / "g.pt")]
    assert train.main(args) == 2
    assert "every clip" in capsys.readouterr().err


def test_the_verdict_needs_every_held_out_clip_to_be_better():
    """A model that brings only the first clip's pairs to their truth does not pass."""
    rng = np.random.default_rng(0)
    size = 32
    warped = rng.integers(0, 256, (4, size, size, 3), dtype=np.uint8)
    target = np.clip(warped.astype(int) + rng.integers(-20, 21, warped.shape), 0, 255).astype(np.uint8)
    mask = np.full((4, size, size), 255, np.uint8)
    arrays = {"warped": warped, "target": target, "mask": mask, "interior": np.zeros_like(mask),
              "reference": warped.copy(), "painted": warped.copy()}  # fmt: skip

    class FixesFirstClip(torch.nn.Module):
        input_channels = INPUT_CHANNELS

        def forward(self, x):
            for i in (0, 2):  # pairs of the first clip: i % 2 == 0
                if torch.allclose(x[0, :3], torch.from_numpy(warped[i].transpose(2, 0, 1) / 255.0).float()):
                    return torch.from_numpy(target[i].transpose(2, 0, 1) / 255.0).float()[None]
            return x[:, :3]

    result = train.evaluate(FixesFirstClip(), arrays, ["first", "second"])
    assert result["per_clip"]["first"]["beats_painted"] and not result["per_clip"]["second"]["beats_painted"]
    assert not result["beats_painted"]
    assert "not better for: second" in train.format_table(result)


def test_shift_tolerance_moves_each_cell_of_the_target_onto_the_output():
    """A target two pixels off the output (as the mesh can place lips) is charged nothing once aligned;
    each 16x16 cell finds its own shift, and a shift past the tolerance is still charged."""
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 32, 32, generator=generator)
    output = torch.roll(target, shifts=(1, -2), dims=(2, 3))
    inner = (..., slice(4, -4), slice(4, -4))  # away from the border the roll wraps around
    assert (train.shift_aligned(output, target, 2) - output)[inner].abs().max() == 0
    assert (train.shift_aligned(output, target, 1) - output)[inner].abs().mean() > 0.1
    # Two halves moved two ways: every cell takes its own.
    halves = torch.cat([output[..., :16], torch.roll(target, shifts=(-2, 0), dims=(2, 3))[..., 16:]], dim=3)
    assert (train.shift_aligned(halves, target, 2) - halves)[inner].abs().max() == 0


def test_a_run_with_shift_tolerance_trains(tmp_path, talking_clips):
    out = tmp_path / "tolerant.pt"
    args = ["--clips", str(talking_clips), *TINY, "--shift-tolerance", "2", "--cache", str(tmp_path), "--out", str(out)]
    assert train.main(args) == 0
    assert out.is_file()
