"""The training command end to end on a tiny run: checkpoint, loss log and held-out table come out,
the same seed gives the same weights, and the verdict needs every held-out face to be better."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models import train

TINY = [
    "--photos",
    "skimage:astronaut",
    "--holdout",
    "skimage:astronaut",
    "--samples",
    "3",
    "--eval-samples",
    "2",
    "--size",
    "64",
    "--patch",
    "32",
    "--batch",
    "2",
    "--steps",
    "3",
    "--adv",
    "0.02",
    "--adv-start",
    "0.3",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    cache = root / "cache"
    runs = []
    for name in ("a", "b"):
        out = root / name / "default.pt"
        assert train.main([*TINY, "--cache", str(cache), "--out", str(out)]) == 0
        runs.append(out)
    return runs


def test_a_run_writes_checkpoint_state_log_and_evaluation(trained):
    out = trained[0]
    assert out.is_file() and out.with_suffix(".state").is_file()
    log = out.with_suffix(".log.csv").read_text().splitlines()
    assert log[0] == "step,seconds,l1,ssim,adv_g,d,lr" and len(log) == 1 + 3
    evaluation = json.loads(out.with_suffix(".eval.json").read_text())
    assert evaluation["samples"] == 2 and evaluation["held_out_faces"] == ["skimage:astronaut#0"]
    assert set(evaluation["warp"]) == {"psnr", "ssim", "psnr_mask", "ssim_mask"}


def test_the_same_seed_gives_the_same_weights(trained):
    a, b = (torch.load(p, weights_only=True)["generator"] for p in trained)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_verdict_needs_every_held_out_face_to_be_better():
    class PlusOnFirstFace(torch.nn.Module):  # brings the first face's crops to their target, not the second's
        def __init__(self, targets):
            super().__init__()
            self.targets = targets

        def forward(self, x):
            for target in self.targets:
                if torch.equal(x[0, 3], target[3]):
                    return target[None, :3]
            return x[:, :3]

    rng = np.random.default_rng(0)
    warped = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    target = np.clip(warped.astype(int) + rng.integers(-20, 21, warped.shape), 0, 255).astype(np.uint8)
    masks = rng.integers(1, 256, (4, 32, 32), dtype=np.uint8)
    arrays = {"warped": warped, "target": target, "mask": masks}
    # Samples 0 and 2 show face "a" (i % 2), 1 and 3 face "b": the stand-in fixes face "a" only.
    fixed = [torch.cat([torch.from_numpy(target[i].transpose(2, 0, 1) / 255.0).float(),
                        torch.from_numpy(masks[i] / 255.0).float()[None]]) for i in (0, 2)]  # fmt: skip
    result = train.evaluate(PlusOnFirstFace(fixed), arrays, ["a", "b"])
    assert result["generator"]["psnr"] > result["warp"]["psnr"]  # better on average
    assert result["per_face"]["a"]["beats_warp_only"] and not result["per_face"]["b"]["beats_warp_only"]
    assert result["beats_warp_only"] is False
    assert "not better on every measure for: b" in train.format_table(result)
