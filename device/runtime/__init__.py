"""Generator runtimes: one backend per runtime behind one small interface (base.Backend, which reads
its tensor contract from the bundle manifest), each an optional import, Frigate-detector-plugin style.

`load_generator(backend)` opens the installed model bundle (signature and file hashes verified), loads
its model on the chosen runtime, checks the shapes against the manifest's contract, warms up with the
golden vectors, and returns the renderer's generator stage. "none" is the warp alone; "auto" is the
runtime that runs the bundle fastest on this very device (each installed runtime timed once at first
load, the result cached per bundle, CPU and thread count: the export machine's latencies need not hold
here), or the warp alone when no bundle is installed or the bundle's generator does not beat the warp
on held-out faces.

Adding a runtime: write `device/runtime/<name>.py` with a `Backend` subclass and its settings model
(`config_model`, a `BackendConfig`), and add one line to `_MODULES`. The daemon config's
`generator.backend` choices and its `generator.<name>` table, and the CLI's `--backend` choices, follow.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device.errors import BadInput

if TYPE_CHECKING:
    from device.runtime.base import Backend, BackendConfig

# The one registry of generator runtimes (runtime name -> its plugin module and Backend class): the config's
# choices and per-runtime settings, the CLI's choices and the bench derive from it. A plugin module imports
# its runtime only when a model loads, so importing it (for its settings model) is cheap.
_MODULES = {
    "onnxruntime": ("device.runtime.onnxruntime", "OnnxRuntimeBackend"),
    "openvino": ("device.runtime.openvino", "OpenVinoBackend"),
    "tflite": ("device.runtime.tflite", "TfliteBackend"),
}
RUNTIMES = tuple(_MODULES)
BACKENDS = ("auto", "none", *RUNTIMES)
# The signed default bundle ships inside the package (package data), so a wheel install has it too.
DEFAULT_BUNDLE = Path(__file__).resolve().with_name("bundles") / "default"


def backend_class(name: str) -> type[Backend]:
    module, cls = _MODULES[name]
    return getattr(importlib.import_module(module), cls)


def config_models() -> dict[str, type[BackendConfig]]:
    """Each runtime's settings model (what `generator.<runtime>` in the daemon config takes)."""
    return {name: backend_class(name).config_model for name in RUNTIMES}


def runtime_status() -> dict[str, bool]:
    """Which runtimes are importable here (a missing one is reported, not fatal)."""
    return {name: backend_class(name).available() for name in _MODULES}


def bundle_path() -> Path | None:
    """The installed bundle: $PORTRAIT_BUNDLE, else the asset cache's, else the default one this package ships."""
    env = os.environ.get("PORTRAIT_BUNDLE")
    if env:
        return Path(env)
    from device.assets import assets_dir

    for candidate in (assets_dir() / "bundles" / "current", DEFAULT_BUNDLE):
        if (candidate / "manifest.json").is_file():
            return candidate
    return None


def _open_bundle(path: Path | None = None, keys: list | None = None):
    from device.runtime.bundle import Bundle

    path = path or bundle_path()
    return None if path is None else Bundle(path, keys=keys)


def installed_backends(bundle=None) -> list[str]:
    """Generator backends usable now: importable here and present in the installed bundle, fastest first."""
    try:
        bundle = bundle or _open_bundle()
    except BadInput:
        return []
    if bundle is None:
        return []
    status = runtime_status()
    names = [n for n in bundle.runtimes if status.get(n)]
    return sorted(names, key=lambda n: bundle.runtime(n).get("latency_ms", {}).get("p50", float("inf")))


def load_generator(
    backend: str = "auto",
    bundle: str | Path | None = None,
    threads: int | None = None,
    device: str | None = None,
    keys: list | None = None,
    options: Mapping[str, BackendConfig | Mapping[str, Any]] | None = None,
):
    """The generator stage on `backend` (GeneratorStage), or None for the warp alone.

    `options`: settings per runtime ({"openvino": {"device": "GPU"}}, as the config's `generator.<runtime>`
    tables hold them); the runtime that loads (the one "auto" picks, too) gets its own. `threads` and
    `device`, when given, override them."""
    if backend not in BACKENDS:
        raise BadInput(f"--backend {backend}: unknown; choose one of {', '.join(BACKENDS)}")
    if backend == "none":
        return None
    if backend == "auto" and importlib.util.find_spec("cryptography") is None:
        warnings.warn("no generator: bundles cannot be verified without the cryptography package", stacklevel=2)
        return None
    opened = _open_bundle(Path(bundle) if bundle else None, keys)
    if opened is None:
        if backend == "auto":
            return None
        raise BadInput(f"--backend {backend}: no generator model bundle is installed; use --backend none (warp only)")
    if backend == "auto":
        if not opened.use_by_default:
            return None  # the bundle's own evaluation says the warp alone looks better
        candidates = installed_backends(opened)
        if not candidates:
            return None
        return fastest_here(opened, candidates, threads, device, options)
    return _stage(opened, backend, threads, device, options)


def _stage(opened, backend: str, threads, device, options):
    cls = backend_class(backend)
    if not cls.available():
        raise BadInput(
            f"--backend {backend}: the {backend} runtime is not installed (pip install {backend}"
            f"{' / ai-edge-litert' if backend == 'tflite' else ''})"
        )
    entry = opened.runtime(backend)
    from device.runtime.stage import BundleGenerator

    config = (options or {}).get(backend)
    stage = BundleGenerator(
        opened, cls(opened.files(backend), entry, opened.contract, threads=threads, device=device, config=config)
    )
    stage.health_check()  # warm-up with the golden vectors
    return stage


CALIBRATION_RUNS = 10


def speed_cache_path() -> Path:
    from device.assets import assets_dir

    return assets_dir() / "runtime-speed.json"


def _speed_key(opened, threads: int | None) -> str:
    """What the measured order depends on: this bundle (its manifest), this CPU and the thread count."""
    import hashlib
    import platform

    manifest = hashlib.sha256((opened.path / "manifest.json").read_bytes()).hexdigest()[:16]
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{opened.name}-{opened.version}-{manifest}|{cpu}|{os.cpu_count()} cpus|threads={threads}"


def fastest_here(opened, candidates: list[str], threads=None, device=None, options=None):
    """The stage on the runtime that runs `opened` fastest on this device. The first load times each
    candidate (golden-vector warm-up, then CALIBRATION_RUNS runs) and caches the p50s; later loads read
    the cache and build only the winner."""
    import json

    from device.files import atomic_write

    path, key = speed_cache_path(), _speed_key(opened, threads)
    try:
        cache = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        cache = {}  # a damaged cache is measured again
    known = cache.get(key, {})
    if all(name in known for name in candidates):
        return _stage(opened, min(candidates, key=lambda n: known[n]), threads, device, options)
    timed, stages = {}, {}
    for name in candidates:
        try:
            stages[name] = _stage(opened, name, threads, device, options)
        except BadInput:
            continue  # a runtime that cannot run this bundle here is not a candidate
        timed[name] = round(stages[name].latency_ms(CALIBRATION_RUNS), 3)
    if not timed:
        return None
    cache[key] = timed
    with contextlib.suppress(OSError):  # a read-only cache only means measuring again next time
        atomic_write(path, (json.dumps(cache, indent=2, sort_keys=True) + "\n").encode())
    return stages[min(timed, key=timed.get)]
