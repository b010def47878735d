"""The export form of the generator (BatchNorm folded, the input concat split into two convolutions)
computes the same function as the trained network."""

from __future__ import annotations

import torch

from models.generator import SplitConvReLU, load_checkpoint, macs

CHECKPOINT = "models/checkpoints/default.pt"


def test_the_export_form_matches_the_trained_network() -> None:
    trained = load_checkpoint(CHECKPOINT, fuse=False)
    exported = load_checkpoint(CHECKPOINT, fuse=True)
    assert isinstance(exported.dec0, SplitConvReLU)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in exported.modules())
    x = torch.rand(2, 4, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (trained(x) - exported(x)).abs().max().item() < 1e-5
    assert macs(exported) == macs(trained)
