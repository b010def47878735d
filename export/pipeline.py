"""One export run: checkpoint -> ONNX FP32 -> INT8 per target -> validation + benchmark table ->
signed bundle, written to a temporary directory and renamed into place only when every target passed.

`export()` runs these steps in order; each is a function here, and each target's own knowledge (its
files, calibration, entry, backend) is its `Target` in export/targets.py:

    check_arguments, load_signing_key     bad input is reported before anything slow starts
    load_model                            the fused generator and its crop size
    prepare_inputs                        calibration and held-out crops (prepare_crops), as the device makes them
    pytorch_reference, make_contract      the FP32 truth and its latency; the generator contract
    export_onnx                           ONNX FP32, which every target starts from
    export_target                         per target: FP32 baseline, INT8 (Target), validate vs FP32, benchmark
    stage_target                          a passing target's INT8 files into the bundle
    write_golden, load_evaluation         golden vectors for the device's health check; evaluation + review
    make_manifest, write_manifest, sign   the manifest, then its Ed25519 signature
    install                               the staging folder renamed over `out`
    next_steps                            how to sign, verify and roll out what was written
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import re
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.errors import BadInput, PortraitError
from device.runtime import crop as cropping
from device.runtime.bundle import FORMAT, MANIFEST, sha256_file
from export import opt_out_of_telemetry
from export.targets import TARGETS, Build, Target

DEFAULT_TARGETS = tuple(TARGETS)
# The still-photo generator's inputs: what the contract says of a checkpoint that does not name its own.
DEFAULT_INPUT_CHANNELS = ["red", "green", "blue", "repair_mask"]
DEFAULT_INPUT_MEANING = (
    "the aligned face crop after the landmark warp and the mouth/lash paint, and the repair "
    "mask (1 where the warp stretches most: the lips' inner edge and the eyes, feathered; the painted "
    "interior of an open mouth is 0)"
)
ONNX_FILE = "generator.fp32.onnx"
GOLDEN_FILE = "golden.npz"


class ExportFailed(PortraitError):
    """A target fell below the accuracy floor or could not be built; nothing was written."""


def needs_reduce_range(cpuinfo: str | None = None) -> bool:
    """ONNX Runtime's reduce_range (7-bit weights) is needed only on x86 without VNNI, where the u8 x s8
    multiply-add (VPMADDUBSW) saturates; with VNNI and on ARM full 8-bit is enough. This tells it for
    the machine that runs the export (`--reduce-range auto`); a bundle for a fleet of unknown CPUs
    keeps it on (the default), which cost nothing measurable here (54.75 vs 54.77 dB vs FP32)."""
    import platform

    if platform.machine().lower() not in {"x86_64", "amd64", "i386", "i686"}:
        return False
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return True  # cannot tell: the safe choice
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return not {"avx512_vnni", "avx_vnni"} & set(flags)


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    from models.train import ssim

    return ssim(a.transpose(1, 2, 0), b.transpose(1, 2, 0))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse <= 1e-12 else float(10 * np.log10(1.0 / mse))


def prepare_crops(
    sources: list[str],
    count: int,
    size: int,
    seed: int,
    *,
    clips: list[str] | None = None,
    channels: list[str] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """`count` generator inputs (N x C x S x S float32, uint8-exact) in the order of `channels`, made by
    the device's own face analysis and renderer; the one source of both the calibration and the held-out
    crops. A generator that owns the mouth (a `mouth_interior` channel) gets the photos posed by the rig
    as the device poses them, and, with `clips` (talking-video files or folders), half of them from real
    talking frames; the still generator gets the photos' round trips (models.data)."""
    from models import data

    faces = data.find_faces(data.load_sources(sources))
    if not faces:
        raise BadInput(f"export: no usable face (>= {data.MIN_FACE} px) in {', '.join(sources)}")
    names = [f[0] for f in faces]
    if not channels or "mouth_interior" not in channels:
        crops = [
            data.to_input(s.warped, np.round(s.mask * 255) / 255.0)
            for s in data.generate(faces, count, size, seed, 0.5)
        ]
        return np.stack(crops).astype(np.float32), names
    from models import talking

    videos = talking.load_clips_from(clips or [], log=lambda _line: None)
    from_video = count // 2 if videos else 0
    crops = list(data.device_inputs(faces, count - from_video, size, seed, channels))
    if from_video:
        pairs = talking.generate(videos, from_video, size, seed, augment=False)
        crops += [talking.to_input(pair, channels) for pair in pairs]
        names += [clip.name for clip in videos]
    return np.stack(crops).astype(np.float32), names


def _latencies(backends: list, x: np.ndarray, runs: int, block: int = 20) -> list[dict]:
    """p50/p95 ms of each backend, timed in alternating blocks: on a shared, noisy machine a burst of load
    then slows every row alike, so the speed-up ratios between them hold. Blocks, not single runs: a
    runtime's worker threads spin for a while after each call and would steal the cores of the next one,
    so each block starts with two untimed runs."""
    times: list[list[float]] = [[] for _ in backends]
    while len(times[-1]) < runs:
        for backend, samples in zip(backends, times, strict=True):
            backend.run(x)
            backend.run(x)
            for _ in range(min(block, runs - len(samples))):
                start = time.perf_counter()
                backend.run(x)
                samples.append((time.perf_counter() - start) * 1000)
    return [{"p50": round(float(np.median(t)), 2), "p95": round(float(np.percentile(t, 95)), 2)} for t in times]


def refined(held: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """The refined crops from the model's outputs: the change added to the input crops, clipped (the
    export form, models.generator.change_output)."""
    return np.clip(held[:, :3] + outputs, 0.0, 1.0)


def _accuracy(backend, held: np.ndarray, reference: np.ndarray) -> dict:
    """Mean and worst PSNR/SSIM of the refined crops over the held-out crops: the floor is held by the worst
    crop, because a mean can hide one crop whose residual left the calibrated range (45.7 dB mean, 30.5 dB
    worst, seen). `reference`: the FP32 refined crops."""
    outs = refined(held, np.stack([backend.run(x[None])[0] for x in held]))
    psnrs = [_psnr(o, r) for o, r in zip(outs, reference, strict=True)]
    ssims = [_ssim(o, r) for o, r in zip(outs, reference, strict=True)]
    return {
        "psnr": round(float(np.mean(psnrs)), 2),
        "ssim": round(float(np.mean(ssims)), 4),
        "psnr_worst": round(float(np.min(psnrs)), 2),
        "ssim_worst": round(float(np.min(ssims)), 4),
    }


def format_table(rows: list[dict]) -> str:
    lines = [
        "| target | precision | size | PSNR dB vs FP32 (worst) | SSIM vs FP32 (worst) | p50 ms | speed-up vs FP32 "
        "| status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        speed = f"{r['speedup']:.2f}x" if r.get("speedup") else "-"
        lines.append(
            f"| {r['target']} | {r['precision']} | {r['bytes'] / 1e6:.2f} MB "
            f"| {r['psnr']:.2f} ({r['psnr_worst']:.2f}) | {r['ssim']:.4f} ({r['ssim_worst']:.4f}) "
            f"| {r['latency_ms']['p50']:.2f} | {speed} | {r['status']} |"
        )
    return "\n".join(lines)


# -- the steps ---------------------------------------------------------------------------------------


@dataclass
class Crops:
    """The generator inputs of one export: calibration crops, held-out crops, and the faces they came from."""

    calib: np.ndarray
    calib_faces: list[str]
    held: np.ndarray
    held_faces: list[str]


@dataclass
class TargetResult:
    """One target built, validated against the FP32 PyTorch outputs and timed."""

    build: Build
    fp32: dict  # accuracy of the FP32 baseline and its latency_ms
    int8: dict
    started: float  # time.time() when the target's build began

    @property
    def name(self) -> str:
        return self.build.target.name

    @property
    def speedup(self) -> float:
        return self.fp32["latency_ms"]["p50"] / max(self.int8["latency_ms"]["p50"], 1e-6)

    def passes(self, floor_psnr: float, floor_ssim: float) -> bool:
        return self.int8["psnr_worst"] >= floor_psnr and self.int8["ssim_worst"] >= floor_ssim

    def rows(self, ok: bool) -> list[dict]:
        """Its two rows of the table: the FP32 baseline and the INT8 build."""
        sizes = [sum(f.stat().st_size for f in files) for files in (self.build.fp32_files, self.build.int8_files)]
        return [
            {"target": self.name, "precision": "fp32", "bytes": sizes[0], **self.fp32, "speedup": 1.0, "status": "-"},
            {
                "target": self.name,
                "precision": "int8",
                "bytes": sizes[1],
                **self.int8,
                "speedup": round(self.speedup, 2),
                "status": "ok" if ok else "BELOW FLOOR",
            },
        ]

    def below_floor(self, floor_psnr: float, floor_ssim: float) -> str:
        int8 = self.int8
        return (
            f"{self.name}: INT8 gives PSNR {int8['psnr_worst']:.2f} dB / SSIM {int8['ssim_worst']:.4f} "
            f"against FP32 on its worst held-out crop (mean {int8['psnr']:.2f} dB / {int8['ssim']:.4f}), "
            f"below the floor of {floor_psnr} dB / {floor_ssim}"
        )


def check_arguments(checkpoint: Path, targets) -> list[Target]:
    """The targets to build, from the table; BadInput for a missing checkpoint or an unknown target."""
    if not checkpoint.is_file():
        raise BadInput(f"export: checkpoint {checkpoint} not found")
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise BadInput(f"export: unknown target(s) {unknown}; choose from {', '.join(DEFAULT_TARGETS)}")
    return [TARGETS[t] for t in targets]


def load_signing_key(key: str | Path | None):
    """The Ed25519 private key that signs the bundle, or None (unsigned); BadInput naming the file."""
    if key is None:
        return None
    from tools.keys import load_private_key

    try:
        return load_private_key(key)
    except (OSError, ValueError, TypeError) as exc:
        raise BadInput(f"export: signing key {key}: {exc}") from exc


def resolve_reduce_range(reduce_range: bool | None, log=print) -> bool:
    if reduce_range is None:
        reduce_range = needs_reduce_range()
        why = "x86 without VNNI" if reduce_range else "VNNI or not x86"
        log(f"export: ONNX Runtime reduce_range={reduce_range} (auto: {why})")
    return reduce_range


def load_model(checkpoint: Path, size: int | None, threads: int):
    """The checkpoint's generator with its BatchNorms folded, and the crop size (default: the trained one)."""
    import torch

    from models.generator import change_output, load_checkpoint

    torch.set_num_threads(threads)
    try:
        model = change_output(load_checkpoint(checkpoint, fuse=True))
    except ValueError as exc:
        raise BadInput(f"export: {exc}") from exc
    size = int(size or model.trained_crop)
    multiple = 4 * model.s2d  # space-to-depth, then two stride-2 levels
    if size <= 0 or size % multiple:
        raise BadInput(f"export: crop size {size} must be a positive multiple of {multiple} for this generator")
    return model, size


def input_channels(model) -> list[str]:
    """The generator's input channels, as its checkpoint names them (the still generator's if it does not)."""
    return list(getattr(model, "input_channels", None) or DEFAULT_INPUT_CHANNELS)


def prepare_inputs(
    photos,
    holdout,
    calibration_samples: int,
    eval_samples: int,
    size: int,
    seed: int,
    channels: list[str],
    clips: list[str] | None = None,
    log=print,
    holdout_clips: list[str] | None = None,
) -> Crops:
    """Calibration crops from `photos`, held-out crops from `holdout` (else other samples of `photos`)."""
    log(f"export: calibration crops ({calibration_samples}) from {', '.join(photos)} through the device pipeline")
    calib, calib_faces = prepare_crops(list(photos), calibration_samples, size, seed, clips=clips, channels=channels)
    held_sources = list(holdout) if holdout else list(photos)
    log(f"export: held-out crops ({eval_samples}) from {', '.join(held_sources)}")
    held_clips = holdout_clips if holdout_clips is not None else clips
    held, held_faces = prepare_crops(held_sources, eval_samples, size, seed + 7919, clips=held_clips, channels=channels)
    for what, crops in (("calibration", calib), ("held-out", held)):
        if crops.shape[1] != len(channels):
            raise BadInput(
                f"export: the checkpoint's generator takes {len(channels)} input channels ({', '.join(channels)}); "
                f"the {what} crops have {crops.shape[1]}"
            )
    return Crops(calib, calib_faces, held, held_faces)


def pytorch_reference(model, held: np.ndarray, runs: int) -> tuple[np.ndarray, dict]:
    """The FP32 PyTorch refined crops of the held-out crops (what every target is held to) and its p50 latency."""
    import torch

    with torch.no_grad():
        reference = refined(held, np.stack([model(torch.from_numpy(x[None]))[0].numpy() for x in held]))
        times = []
        x0 = torch.from_numpy(held[:1])
        model(x0)
        for _ in range(runs):
            t = time.perf_counter()
            model(x0)
            times.append((time.perf_counter() - t) * 1000)
    return reference, {"p50": round(float(np.median(times)), 2)}


def reference_row(checkpoint: Path, latency: dict) -> dict:
    return {
        "target": "pytorch",
        "precision": "fp32",
        "bytes": checkpoint.stat().st_size,
        "psnr": 99.0,
        "ssim": 1.0,
        "psnr_worst": 99.0,
        "ssim_worst": 1.0,
        "latency_ms": latency,
        "speedup": None,
        "status": "reference",
    }


def make_contract(model, size: int) -> dict:
    """The generator contract: the input channels and their meaning come from the checkpoint."""
    channels = input_channels(model)
    return {
        "crop_size": size,
        "inputs": [
            {
                "name": "crop",
                "shape": [1, len(channels), size, size],
                "layout": "NCHW",
                "dtype": "float32",
                "range": [0.0, 1.0],
                "channels": channels,
                "colour_order": "RGB",
                "meaning": getattr(model, "input_meaning", DEFAULT_INPUT_MEANING),
            }
        ],
        "outputs": [
            {
                "name": "change",
                "shape": [1, 3, size, size],
                "layout": "NCHW",
                "dtype": "float32",
                "range": [-1.0, 1.0],
                "channels": ["red", "green", "blue"],
                "colour_order": "RGB",
                "meaning": "the change to the crop's RGB (0 outside the repair mask): refined = clip(input RGB + "
                "change, 0, 1)",
            }
        ],
        "alignment": {
            "template": cropping.DEFAULT_TEMPLATE,
            "anchors": "right eye = mean of landmarks 33,133; left eye = mean of 362,263; mouth = mean of 61,291 "
            "(MediaPipe face mesh); similarity transform, least squares, bilinear sampling",
        },
        "paste_back": "add (output - input crop) through the inverse transform, weighted by the frame's repair mask",
    }


@contextlib.contextmanager
def workspace(out: Path) -> Iterator[tuple[Path, Path]]:
    """A work folder and a staging folder beside `out` (same file system: the final rename is atomic),
    both removed at the end whatever happened."""
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export-work-", dir=parent))
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        yield work, staging
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def export_onnx(model, example: np.ndarray, work: Path, log=print) -> Path:
    """ONNX FP32, the model every target starts from."""
    import torch

    onnx_path = work / ONNX_FILE
    log("export: ONNX FP32 (dynamo exporter, opset 18)")
    torch.onnx.export(
        model,
        (torch.from_numpy(example),),
        str(onnx_path),
        dynamo=True,
        opset_version=18,
        external_data=False,
        input_names=["crop"],
        output_names=["change"],
        verbose=False,
    )
    return onnx_path


def validate(backend, held: np.ndarray, reference: np.ndarray) -> dict:
    """Accuracy (mean and worst PSNR/SSIM) of a backend against the FP32 PyTorch outputs."""
    return _accuracy(backend, held, reference)


def benchmark(backends: list, x: np.ndarray, runs: int) -> list[dict]:
    """p50/p95 ms of each backend on one crop, timed in alternating blocks."""
    return _latencies(backends, x, runs)


def export_target(
    target: Target,
    onnx_path: Path,
    model,
    contract: dict,
    work: Path,
    crops: Crops,
    reference: np.ndarray,
    options: dict,
    runs: int,
    log=print,
) -> TargetResult:
    """One target: its FP32 baseline built and validated, then INT8 calibrated and validated, then both
    timed, each run by the device's own backend for it."""
    started = time.time()
    threads = options["threads"]
    fp32_files, fp32_entry = target.baseline(onnx_path, model, contract, work, log)
    fp32_backend = target.backend(fp32_files, fp32_entry, contract, threads)
    fp32 = validate(fp32_backend, crops.held, reference)
    int8_files, entry = target.quantize(fp32_files, crops.calib, work, options, log)
    int8_backend = target.backend(int8_files, entry, contract, threads)
    int8 = validate(int8_backend, crops.held, reference)
    fp32["latency_ms"], int8["latency_ms"] = benchmark([fp32_backend, int8_backend], crops.held[:1], runs)
    return TargetResult(Build(target, fp32_files, int8_files, fp32_entry, entry), fp32, int8, started)


def stage_target(result: TargetResult, staging: Path) -> dict:
    """Copy a passing target's INT8 files into the bundle; its manifest entry."""
    files = []
    for f in result.build.int8_files:
        shutil.copy2(f, staging / f.name)
        files.append(
            {
                "path": f.name,
                "sha256": sha256_file(staging / f.name),
                "bytes": (staging / f.name).stat().st_size,
                "precision": "int8",
            }
        )
    return {
        **result.build.entry,
        "files": files,
        "precision": "int8",
        "accuracy_vs_fp32": {k: result.int8[k] for k in ("psnr", "ssim", "psnr_worst", "ssim_worst")},
        "latency_ms": result.int8["latency_ms"],
        "fp32_latency_ms": result.fp32["latency_ms"],
        "speedup_vs_fp32": round(result.speedup, 2),
        "export_seconds": round(time.time() - result.started, 1),
    }


def write_golden(
    staging: Path, held: np.ndarray, reference: np.ndarray, count: int, runtimes: dict, floor_psnr: float
) -> dict:
    """Golden vectors: a few held-out inputs and the FP32 PyTorch outputs, for the device's health check."""
    n = min(count, len(held))
    golden_in = np.round(held[:n] * 255).astype(np.uint8)
    golden_out = np.round(reference[:n] * 255).astype(np.uint8)
    path = staging / GOLDEN_FILE
    np.savez_compressed(path, inputs=golden_in, expected=golden_out)
    worst = min(r["accuracy_vs_fp32"]["psnr_worst"] for r in runtimes.values())
    return {
        "path": GOLDEN_FILE,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "count": n,
        "min_psnr": round(max(min(worst, floor_psnr) - 5.0, 25.0), 1),
        "expected": "the refined crop of the FP32 PyTorch output (input RGB + change), uint8",
    }


def load_evaluation(checkpoint: Path, log=print) -> dict:
    """The checkpoint's evaluation (beside it, .eval.json) with its visual review signed in."""
    eval_path = checkpoint.with_suffix(".eval.json")
    evaluation = (
        json.loads(eval_path.read_text())
        if eval_path.is_file()
        else {"beats_warp_only": False, "note": "no evaluation found"}
    )
    from tools.review import load_verdict

    review = load_verdict(checkpoint)
    if review is None:
        review = {"use_by_default": False, "reason": "not reviewed: python -m tools.review, then --verdict"}
        log("export: no visual review of this checkpoint: `--backend auto` will keep the warp alone")
    evaluation["visual_review"] = review
    return evaluation


def make_manifest(
    *,
    name: str,
    version: str,
    contract: dict,
    runtimes: dict,
    golden: dict,
    crops: Crops,
    photos,
    seed: int,
    options: dict,
    floor_psnr: float,
    floor_ssim: float,
    rows: list[dict],
    evaluation: dict,
    checkpoint: Path,
    model,
    size: int,
) -> dict:
    """The bundle's manifest: what the device checks and reads before it loads a model."""
    from models.generator import macs

    return {
        "format": FORMAT,
        "name": name,
        "version": version,
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "kind": "generator",
        "contract": contract,
        "runtimes": runtimes,
        "golden": golden,
        "calibration": {
            "samples": len(crops.calib),
            "faces": crops.calib_faces,
            "sources": list(photos),
            "seed": seed,
            "prepared": "device face analysis + renderer: round trips of the photos (models.data) for a still "
            "generator; photos posed by the rig and talking-clip pairs (models.talking) for one that owns the mouth",
            **{target.name: target.calibration(options) for target in TARGETS.values()},
        },
        "validation": {
            "samples": len(crops.held),
            "faces": crops.held_faces,
            "floor": {"psnr": floor_psnr, "ssim": floor_ssim},
            "threads": options["threads"],
            "table": rows,
        },
        "evaluation": evaluation,
        "source": {
            "checkpoint": checkpoint.name,
            "checkpoint_sha256": sha256_file(checkpoint),
            "config": model.config(),
            "gmacs": round(macs(model, size) / 1e9, 3),
            "parameters": int(sum(p.numel() for p in model.parameters())),
        },
    }


def write_manifest(staging: Path, manifest: dict) -> None:
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def sign(staging: Path, signing_key) -> None:
    from tools.keys import sign_bundle

    sign_bundle(staging, signing_key)


def install(staging: Path, out: Path) -> None:
    """Rename the finished bundle over `out`: readers see the old bundle or the new one, never a mix."""
    staging.chmod(0o755)
    for f in staging.iterdir():
        f.chmod(0o644)
    if out.exists():
        old = out.resolve().parent / f".{out.name}.old-{int(time.time())}"
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)


def next_steps(out: Path, key: str | Path | None, version: str) -> list[str]:
    """What to do with the bundle now: sign it (if it is not), check it, roll it out to the fleet.
    The commands are the repository's own (tools/keys.py, `portrait fleet`), with this bundle's path."""
    bundle = shlex.quote(str(out))
    lines = []
    if key is None:
        signing, cert = "keys/sign1.key", "keys/sign1.cert.json"
        lines += [
            "export: next steps: the bundle is unsigned; sign it, for the fleet with a signing key its root",
            "  certified (portrait fleet keys signing --root keys/root.key --out keys/sign1):",
            f"    portrait fleet sign {bundle} --key {signing}",
            "  or, to ship it in device/runtime/bundles/, with a key whose .pub is in device/runtime/keys/:",
            f"    python -m tools.keys sign {bundle} --key ~/.config/portrait/keys/bundle.key",
            f"    python -m tools.keys verify {bundle}",
        ]
    else:
        key = Path(key)
        signing = shlex.quote(str(key))
        cert_path = key.with_name(key.with_suffix("").name + ".cert.json")  # as `fleet keys signing` names it
        pub_path = key.with_suffix(".pub")  # as `tools.keys generate` names it
        cert = shlex.quote(str(cert_path)) if cert_path.is_file() else "SIGNING.cert.json"
        lines.append(f"export: next steps: the bundle is signed with {key}")
        if pub_path.is_file():
            lines.append(f"    python -m tools.keys verify {bundle} --pub {shlex.quote(str(pub_path))}")
        elif not cert_path.is_file():
            lines.append(f"    python -m tools.keys verify {bundle}   (against device/runtime/keys/)")
    lines += [
        "  roll it out, a canary first (the job is signed with the key that signed the bundle; devices take",
        f"  only a version above their own, this is {version}; instead of --group: --device ID... or --fleet):",
        f"    portrait fleet rollout {bundle} --key {signing} --cert {cert} --group GROUP",
        "  and when the rollout is done, clear its retained chunks from the broker:",
        f"    portrait fleet unpublish {bundle}",
    ]
    return lines


# -- the run -----------------------------------------------------------------------------------------


def export(
    checkpoint: str | Path,
    out: str | Path,
    targets: tuple[str, ...] | list[str] = DEFAULT_TARGETS,
    photos: tuple[str, ...] | list[str] = ("skimage:astronaut",),
    holdout: tuple[str, ...] | list[str] | None = None,
    calibration_samples: int = 300,
    eval_samples: int = 16,
    size: int | None = None,
    floor_psnr: float = 35.0,
    floor_ssim: float = 0.98,
    key: str | Path | None = None,
    name: str = "default-generator",
    version: str = "0.1.0",
    runs: int = 40,
    threads: int = 2,
    seed: int = 0,
    golden_count: int = 3,
    reduce_range: bool | None = True,
    log=print,
    clips: list[str] | None = None,
    holdout_clips: list[str] | None = None,
) -> dict:
    """Export `checkpoint` to a signed bundle at `out` (replaced atomically); returns the manifest.

    Raises ExportFailed (nothing written) when a target is below the floor, BadInput for bad arguments.
    `log` gets the export's own lines; the libraries' output is left alone (export.quiet quiets it).
    """
    opt_out_of_telemetry()
    checkpoint, out = Path(checkpoint), Path(out)
    chosen = check_arguments(checkpoint, targets)
    signing_key = load_signing_key(key)
    if signing_key is None:
        log(
            "export: WARNING: no --key given: the bundle will be unsigned and the device will refuse it "
            "until it is signed (the next steps at the end say how)"
        )
    options = {"reduce_range": resolve_reduce_range(reduce_range, log), "threads": threads}
    model, size = load_model(checkpoint, size, threads)
    started = time.time()

    crops = prepare_inputs(
        photos,
        holdout,
        calibration_samples,
        eval_samples,
        size,
        seed,
        input_channels(model),
        clips,
        log,
        holdout_clips,
    )
    reference, reference_latency = pytorch_reference(model, crops.held, runs)
    contract = make_contract(model, size)

    with workspace(out) as (work, staging):
        onnx_path = export_onnx(model, crops.held[:1], work, log)
        rows = [reference_row(checkpoint, reference_latency)]
        runtimes, failures = {}, []
        for target in chosen:
            try:
                result = export_target(target, onnx_path, model, contract, work, crops, reference, options, runs, log)
            except Exception as e:  # a converter crash fails this target, with its reason
                failures.append(f"{target.name}: could not be built ({type(e).__name__}: {e})")
                log(f"export: {target.name}: FAILED to build: {e}")
                continue
            ok = result.passes(floor_psnr, floor_ssim)
            rows += result.rows(ok)
            if not ok:
                failures.append(result.below_floor(floor_psnr, floor_ssim))
                continue
            runtimes[target.name] = stage_target(result, staging)
        log(format_table(rows))
        if failures:
            raise ExportFailed("export failed, no bundle written:\n  " + "\n  ".join(failures))

        golden = write_golden(staging, crops.held, reference, golden_count, runtimes, floor_psnr)
        manifest = make_manifest(
            name=name,
            version=version,
            contract=contract,
            runtimes=runtimes,
            golden=golden,
            crops=crops,
            photos=photos,
            seed=seed,
            options=options,
            floor_psnr=floor_psnr,
            floor_ssim=floor_ssim,
            rows=rows,
            evaluation=load_evaluation(checkpoint, log),
            checkpoint=checkpoint,
            model=model,
            size=size,
        )
        write_manifest(staging, manifest)
        if signing_key is not None:
            sign(staging, signing_key)
        install(staging, out)
    log(f"export: bundle written to {out} in {time.time() - started:.0f} s")
    for line in next_steps(out, key, version):
        log(line)
    return manifest


# -- the command line --------------------------------------------------------------------------------

EPILOG = """\
examples:
  {prog} --key ~/.config/portrait/keys/bundle.key
  {prog} --photos ~/.cache/portrait/train-faces --holdout skimage:astronaut \\
      --out /tmp/bundle --key keys/sign1.key
  {prog} --targets onnxruntime --calibration 50 --eval 4 --out /tmp/bundle     (a quick unsigned try)

The accuracy table and, at the end, the next steps (sign, verify, `portrait fleet rollout`) are printed
with the bundle's path. The converters' own logs, warnings and progress bars show only with --verbose.
Exit codes: 0 written, 1 a target failed (below the floor, or it could not be built: nothing written),
2 bad input (the message names the option or file)."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, written as one would type it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS or "(default" in text:
            return text
        default = action.default
        if isinstance(default, list | tuple):
            shown = " ".join(map(str, default))
        elif isinstance(default, bool):
            shown = "on" if default else "off"
        else:
            shown = "none" if default is None else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value}")
    return value


def _bundle_name(text: str) -> str:
    from device.updates.job import NAME

    if not re.match(NAME, text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a plain name (a letter or digit, then letters, digits, '_', '.', '-'; at most 64): "
            "the devices would refuse the bundle"
        )
    return text


def _semver(text: str) -> str:
    from device.updates.job import SEMVER

    if not SEMVER.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 0.2.0): the devices would refuse the bundle"
        )
    return text


def _prog() -> str:
    """`portrait export` when the portrait command runs us (device/cli.py hands its arguments on)."""
    return "portrait export" if Path(sys.argv[0] if sys.argv else "").name == "portrait" else "python -m export"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    prog = prog or _prog()
    p = argparse.ArgumentParser(
        prog=prog,
        formatter_class=_HelpFormatter,
        allow_abbrev=False,
        description="Export the generator to INT8 model bundles: ONNX FP32, then INT8 for each target, each\n"
        "validated against the FP32 model on held-out crops and timed, written as one bundle folder.",
        epilog=EPILOG.format(prog=prog),
    )
    p.add_argument(
        "--checkpoint",
        metavar="PT",
        default="models/checkpoints/default.pt",
        help="the generator checkpoint to export (python -m models.train writes one)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        default="device/runtime/bundles/default",
        help="the bundle folder, replaced only when every target passed "
        "(default: device/runtime/bundles/default, the bundle the device ships)",
    )
    p.add_argument(
        "--targets",
        nargs="+",
        metavar="TARGET",
        default=list(DEFAULT_TARGETS),
        choices=DEFAULT_TARGETS,
        help=f"the runtimes to build, of: {', '.join(DEFAULT_TARGETS)}",
    )
    p.add_argument(
        "--photos",
        nargs="+",
        metavar="SRC",
        default=["skimage:astronaut"],
        help="calibration photos: files, folders or skimage:NAME (a video: extract frames first)",
    )
    p.add_argument(
        "--holdout",
        nargs="+",
        metavar="SRC",
        default=None,
        help="held-out photos for the table and the floor (default: --photos, other samples of them)",
    )
    p.add_argument(
        "--clips",
        nargs="+",
        metavar="VIDEO",
        default=None,
        help="talking-face videos or folders of them: half the calibration crops of a generator that owns the "
        "mouth come from their frames (default: photos only)",
    )
    p.add_argument(
        "--holdout-clips",
        nargs="+",
        metavar="VIDEO",
        default=None,
        help="talking-face videos for half the held-out crops (default: --clips, other pairs of them)",
    )
    p.add_argument("--calibration", type=_count, metavar="N", default=300, help="calibration crops")
    p.add_argument("--eval", type=_count, metavar="N", default=16, help="held-out crops for the table and the floor")
    p.add_argument(
        "--size",
        type=_count,
        metavar="PX",
        default=None,
        help="crop size, a multiple of 16 for the default generator (default: the size it was trained at)",
    )
    p.add_argument(
        "--floor-psnr",
        type=float,
        metavar="DB",
        default=35.0,
        help="a target fails when its INT8 PSNR vs FP32 on the worst held-out crop is below this",
    )
    p.add_argument(
        "--floor-ssim",
        type=_fraction,
        metavar="S",
        default=0.98,
        help="a target fails when its INT8 SSIM vs FP32 on the worst held-out crop is below this",
    )
    p.add_argument(
        "--key",
        metavar="PEM",
        default=None,
        help="Ed25519 private key that signs the bundle: a fleet signing key (portrait fleet keys "
        "signing) or a bundle key (python -m tools.keys generate) (default: none: the bundle is "
        "unsigned and devices refuse it until it is signed)",
    )
    p.add_argument("--name", type=_bundle_name, default="default-generator", help="the bundle's name")
    p.add_argument(
        "--version",
        type=_semver,
        metavar="X.Y.Z",
        default="0.1.0",
        help="the bundle's semantic version: devices install only a version above their own",
    )
    p.add_argument(
        "--runs", type=_count, metavar="N", default=40, help="timed runs per row (blocks of 20, FP32 and INT8 in turn)"
    )
    p.add_argument("--threads", type=_count, metavar="N", default=2, help="CPU threads for PyTorch and each runtime")
    p.add_argument("--seed", type=int, metavar="N", default=0, help="seed of the calibration and held-out crops")
    p.add_argument(
        "--reduce-range",
        choices=("auto", "on", "off"),
        default="on",
        help="ONNX Runtime 7-bit weights: on runs on every CPU; auto = on only if this machine is "
        "x86 without VNNI (for a bundle that only ever runs on machines like this one)",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="show the libraries' own logs, warnings and progress bars (PyTorch, ONNX Runtime, "
        "OpenVINO, NNCF, TensorFlow Lite/absl)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from export.quiet import third_party_output

    try:
        with third_party_output(args.verbose) as say:
            export(
                args.checkpoint,
                args.out,
                args.targets,
                photos=args.photos,
                holdout=args.holdout,
                clips=args.clips,
                holdout_clips=args.holdout_clips,
                calibration_samples=args.calibration,
                eval_samples=args.eval,
                size=args.size,
                floor_psnr=args.floor_psnr,
                floor_ssim=args.floor_ssim,
                key=args.key,
                name=args.name,
                version=args.version,
                runs=args.runs,
                threads=args.threads,
                seed=args.seed,
                reduce_range={"auto": None, "on": True, "off": False}[args.reduce_range],
                log=say,
            )
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except PortraitError as e:
        print(f"error: {e}", file=sys.stderr)
        if not args.verbose and "could not be built" in str(e):
            print("(--verbose shows what the converters said)", file=sys.stderr)
        return 1
    return 0
