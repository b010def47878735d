"""The visual review of a generator: the sheet shows what the device renders with and without it, and
a verdict counts only for the checkpoint it was made for."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from device.errors import BadInput
from device.runtime import runtime_status
from tools import review

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "models" / "checkpoints" / "default.pt"
RUNTIMES = [name for name, ok in runtime_status().items() if ok]


def test_sheet_has_a_row_per_face_and_the_generator_changes_only_some_cells():
    sheet, stats = review.render_sheet(["skimage:astronaut"], RUNTIMES[0], bundle=None)
    rows = len(review.POSES)  # one face: a row per pose
    assert sheet.shape == (28 + rows * review.CELL, review.LABEL + 5 * review.CELL, 3) and sheet.dtype == np.uint8
    assert [s["pose"] for s in stats] == list(review.POSES)
    changes = {s["pose"]: s["mean_change"] for s in stats}
    assert changes["aa"] > 0.0  # the generator works where the warp stretches


def test_a_runtime_is_required():
    with pytest.raises(BadInput, match="no generator"):
        review.render_sheet(["skimage:astronaut"], "none", bundle=None)


def test_verdict_is_kept_for_its_checkpoint_only(tmp_path):
    checkpoint = tmp_path / "model.pt"
    shutil.copy(CHECKPOINT, checkpoint)
    path = review.record_verdict(checkpoint, use=True, reason="looked fine", sheet="sheet.png")
    assert path == tmp_path / "model.review.json"
    verdict = review.load_verdict(checkpoint)
    assert verdict["use_by_default"] is True and verdict["reason"] == "looked fine"
    checkpoint.write_bytes(checkpoint.read_bytes() + b"\0")  # retrained: the old verdict no longer applies
    assert review.load_verdict(checkpoint) is None


def test_verdict_needs_a_reason_and_a_checkpoint(tmp_path):
    with pytest.raises(BadInput, match="reason"):
        review.record_verdict(CHECKPOINT, use=False, reason="  ")
    with pytest.raises(BadInput, match="not found"):
        review.record_verdict(tmp_path / "missing.pt", use=False, reason="x")


def test_committed_bundle_carries_the_committed_review():
    from device.runtime import DEFAULT_BUNDLE

    manifest = json.loads((DEFAULT_BUNDLE / "manifest.json").read_text())
    assert manifest["evaluation"]["visual_review"] == review.load_verdict(CHECKPOINT)
