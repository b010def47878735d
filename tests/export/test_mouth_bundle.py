"""A generator that owns the mouth, end to end: trained on tiny talking clips, exported to every runtime,
signed, and run by the device's renderer, which builds the inputs the bundle's contract names."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime.quantization")
pytest.importorskip("openvino")
pytest.importorskip("nncf")
pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_quantizer")

from device.runtime import load_generator
from device.runtime.bundle import Bundle, load_public_key
from models.generator import INPUT_CHANNELS

TARGETS = ("onnxruntime", "openvino", "tflite")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mouth_bundle(tmp_path_factory, talking_clips):
    from export.pipeline import export
    from models import train
    from tools.keys import generate

    root = tmp_path_factory.mktemp("mouth-bundle")
    checkpoint = root / "g.pt"
    args = ["--clips", str(talking_clips), "--holdout", "mirrored", "--pairs", "4", "--eval-pairs", "2"]
    args += ["--size", "64", "--patch", "32", "--batch", "2", "--steps", "4", "--cache", str(root / "cache")]
    assert train.main([*args, "--out", str(checkpoint)]) == 0
    private, public = generate(root / "key")
    out = root / "bundle"
    export(checkpoint, out, TARGETS, photos=["skimage:astronaut"], clips=[str(talking_clips / "speaker.mp4")],
           calibration_samples=6, eval_samples=2, runs=2, key=private, floor_psnr=0.0, floor_ssim=0.0,
           log=lambda _line: None)  # fmt: skip
    return out, load_public_key(public)


def test_the_contract_names_the_new_inputs_and_the_change_output(mouth_bundle):
    out, key = mouth_bundle
    contract = Bundle(out, keys=[key]).contract
    assert contract["inputs"][0]["channels"] == list(INPUT_CHANNELS)
    assert contract["inputs"][0]["shape"] == [1, 8, 64, 64]
    assert contract["outputs"][0]["name"] == "change"


@pytest.mark.parametrize("name", TARGETS)
def test_every_runtime_draws_the_open_mouth_inside_the_repair_mask_only(mouth_bundle, name, astronaut, astronaut_face):
    from device.motion.params import FaceParams
    from device.render.renderer import Renderer

    out, key = mouth_bundle
    stage = load_generator(name, bundle=out, keys=[key])  # signature, hashes, shapes, golden vectors
    assert stage.owns_mouth and stage.outputs_change
    reference = stage.prepare(astronaut, astronaut_face.landmarks)
    assert reference.shape == (3, 64, 64) and reference.min() >= 0 and reference.max() <= 1
    params = FaceParams(jaw_open=0.8, blink_left=0.9)
    renderer = Renderer(astronaut, astronaut_face, generator=stage)
    assert renderer.owns_mouth
    warp_only = Renderer(astronaut, astronaut_face, owns_mouth=True)  # the generator's input: nothing painted
    plain, refined = warp_only.render(params), renderer.render(params)
    changed = np.abs(refined.astype(int) - plain.astype(int)).max(axis=2) > 0  # a 4-step model changes little
    targets = warp_only.rig.pose(params)[0]
    mask = warp_only._repair_mask(targets)
    assert changed.any()
    assert not (changed & (mask <= 1.0 / 255)).any()
    # Nothing was painted: the open mouth is far from the painter's dark slot.
    from device.render.renderer import mouth_interior

    opening = mouth_interior(targets, astronaut.shape).astype(bool)
    painted = Renderer(astronaut, astronaut_face).render(params)
    assert np.abs(refined[opening].astype(int) - painted[opening]).mean() > 10
