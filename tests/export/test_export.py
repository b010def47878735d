"""The export toolchain end to end on the committed checkpoint: all three INT8 targets, the
validation table and floor, the signed bundle, and no drift from the committed default bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime.quantization")
pytest.importorskip("openvino")
pytest.importorskip("nncf")
pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_quantizer")

from device.errors import BadInput
from device.runtime import DEFAULT_BUNDLE, load_generator
from device.runtime.bundle import Bundle, load_public_key, psnr

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = ROOT / "models" / "checkpoints" / "default.pt"
TARGETS = ("onnxruntime", "openvino", "tflite")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    from tools.keys import generate

    base = tmp_path_factory.mktemp("keys")
    key, pub = generate(base / "test")
    _, other_pub = generate(base / "other")
    return {"key": key, "pub": load_public_key(pub), "other": load_public_key(other_pub)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, keys):
    """One real export of the committed checkpoint at its own crop size, few calibration crops."""
    from export.pipeline import export

    out = tmp_path_factory.mktemp("export") / "bundle"
    lines: list[str] = []
    manifest = export(
        CHECKPOINT,
        out,
        TARGETS,
        photos=["skimage:astronaut"],
        calibration_samples=12,
        eval_samples=3,
        runs=3,
        key=keys["key"],
        version="9.9.9",
        log=lines.append,
    )
    return out, manifest, "\n".join(lines)


@pytest.mark.slow
def test_every_target_is_int8_within_the_floor_and_loads(exported, keys):
    out, manifest, log = exported
    assert "| onnxruntime | int8 |" in log and "| openvino | int8 |" in log and "| tflite | int8 |" in log
    assert set(manifest["runtimes"]) == set(TARGETS)
    for name in TARGETS:
        entry = manifest["runtimes"][name]
        assert entry["precision"] == "int8"
        accuracy = entry["accuracy_vs_fp32"]
        assert accuracy["psnr_worst"] >= 35.0 and accuracy["ssim_worst"] >= 0.98  # every held-out crop
        assert accuracy["psnr"] >= accuracy["psnr_worst"] and accuracy["ssim"] >= accuracy["ssim_worst"]
        stage = load_generator(name, bundle=out, keys=[keys["pub"]])
        assert stage is not None and stage.golden_psnr >= 35.0
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no work or staging dirs left


def test_bundle_manifest_has_the_contract_and_files_by_hash(exported):
    out, manifest, _ = exported
    contract = manifest["contract"]
    assert contract["inputs"][0]["name"] == "crop" and contract["inputs"][0]["channels"][3] == "repair_mask"
    assert manifest["runtimes"]["tflite"]["layout"] == "NHWC"
    for entry in manifest["runtimes"].values():
        for f in entry["files"]:
            assert (out / f["path"]).stat().st_size == f["bytes"] and len(f["sha256"]) == 64
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["calibration"]["samples"] == 12 and manifest["golden"]["count"] == 3
    from tools.review import load_verdict

    assert manifest["evaluation"]["visual_review"] == load_verdict(CHECKPOINT)  # the review is signed in


def test_openvino_fp32_row_is_really_fp32():
    """On CPUs with bf16, OpenVINO lowers FP32 models unless told: the baseline row must not be bf16."""
    from export.targets import TARGETS

    entry = TARGETS["openvino"].fp32_entry([])
    assert entry["inference_precision"] == "f32"


def test_signature_verifies_with_its_key_and_not_another(exported, keys):
    out, _, _ = exported
    assert Bundle(out, keys=[keys["pub"]]).signer
    with pytest.raises(BadInput, match="signature"):
        Bundle(out, keys=[keys["other"]])


def test_tampered_file_or_manifest_is_refused(exported, keys, tmp_path):
    out, manifest, _ = exported
    copy = tmp_path / "b"
    shutil.copytree(out, copy)
    model = copy / manifest["runtimes"]["onnxruntime"]["files"][0]["path"]
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(BadInput, match="tampered"):
        load_generator("onnxruntime", bundle=copy, keys=[keys["pub"]])

    shutil.rmtree(copy)
    shutil.copytree(out, copy)
    changed = json.loads((copy / "manifest.json").read_text())
    changed["golden"]["min_psnr"] = 0.0
    (copy / "manifest.json").write_text(json.dumps(changed))
    with pytest.raises(BadInput, match="signature"):
        load_generator("onnxruntime", bundle=copy, keys=[keys["pub"]])
    (copy / "signature.json").unlink()
    with pytest.raises(BadInput, match="unsigned"):
        load_generator("onnxruntime", bundle=copy, keys=[keys["pub"]])


@pytest.mark.slow
def test_floor_failure_writes_nothing(tmp_path, keys):
    from export.pipeline import ExportFailed, export

    out = tmp_path / "never"
    with pytest.raises(ExportFailed, match="below the floor"):
        export(
            CHECKPOINT,
            out,
            ["onnxruntime"],
            calibration_samples=2,
            eval_samples=1,
            size=64,
            runs=1,
            floor_psnr=150.0,
            key=keys["key"],
            log=lambda *_: None,
        )
    assert list(tmp_path.iterdir()) == []


def test_the_floor_is_held_by_the_worst_crop_not_the_mean():
    """One crop far off and fifteen exact: the mean still reads high, the worst crop tells."""
    from export.pipeline import _accuracy

    rng = np.random.default_rng(0)
    reference = rng.uniform(0.2, 0.8, (16, 3, 32, 32)).astype(np.float32)

    class OneCropOff:  # a runtime whose change to the crop is exact (none) except on the first held-out crop
        def run(self, x):
            off = np.array_equal(x[0, :3], reference[0])
            return 0.1 * rng.standard_normal(x[:, :3].shape) if off else np.zeros_like(x[:, :3])

    accuracy = _accuracy(OneCropOff(), np.concatenate([reference, reference[:, :1]], 1), reference)
    assert accuracy["psnr_worst"] < 25.0 < accuracy["psnr"]
    assert accuracy["ssim_worst"] < accuracy["ssim"]


def test_reexport_matches_the_committed_default_bundle(exported):
    """The committed bundle was made from the committed checkpoint: same source, and the same outputs
    on its golden vectors (the FP32 reference exactly; each INT8 model, committed and re-exported,
    within the floor of it: the two INT8 builds are calibrated on different photos, so each is held
    to the function they both quantize rather than to the other's rounding)."""
    import torch

    from device.runtime import backend_class
    from device.runtime.bundle import sha256_file
    from models.generator import load_checkpoint

    out, _, _ = exported
    default = Bundle(DEFAULT_BUNDLE)
    assert default.manifest["source"]["checkpoint_sha256"] == sha256_file(CHECKPOINT)
    inputs, expected = default.golden()
    model = load_checkpoint(CHECKPOINT)
    with torch.no_grad():
        ours = model(torch.from_numpy(inputs)).numpy()
    assert np.abs(ours - expected).max() <= 1.5 / 255
    fresh = Bundle(out, verify_signature=False)

    def refined(bundle: Bundle, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        # A bundle whose model outputs the change to the crop: the device adds it to the crop.
        change = bundle.contract["outputs"][0]["name"] == "change"
        return np.clip(x[:3] + out if change else out, 0, 1)

    for name in TARGETS:
        a = backend_class(name)(default.files(name), default.runtime(name), default.contract)
        b = backend_class(name)(fresh.files(name), fresh.runtime(name), fresh.contract)
        for x, y in zip(inputs, expected, strict=True):
            assert psnr(refined(default, x, a.run(x[None])[0]), y) >= 35.0, ("committed", name)
            assert psnr(refined(fresh, x, b.run(x[None])[0]), y) >= 35.0, ("re-exported", name)


def test_checkpoint_of_another_architecture_is_bad_input(tmp_path):
    import torch

    from export.pipeline import export

    state = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    state["config"]["arch"] = "unet-s8"
    old = tmp_path / "old.pt"
    torch.save(state, old)
    with pytest.raises(BadInput, match=r"old\.pt.*'unet-s8'"):
        export(old, tmp_path / "out", ["onnxruntime"], log=lambda *_: None)
    assert not (tmp_path / "out").exists()
