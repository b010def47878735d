"""Generator runtimes: one backend per runtime behind one small interface (base.Backend, which reads
its tensor contract from the bundle manifest), each an optional import, Frigate-detector-plugin style.

`load_generator(backend)` opens the installed model bundle (signature and file hashes verified), loads
its model on the chosen runtime, checks the shapes against the manifest's contract, warms up with the
golden vectors, and returns the renderer's generator stage. "none" is the warp alone; "auto" is the
fastest installed runtime the bundle has a model for (by the latency measured at export), or the
warp alone when no bundle is installed or the bundle's generator does not beat the warp on held-out faces.

Adding a runtime: write `device/runtime/<name>.py` with a `Backend` subclass and its settings model
(`config_model`, a `BackendConfig`), and add one line to `_MODULES`. The daemon config's
`generator.backend` choices and its `generator.<name>` table, and the CLI's `--backend` choices, follow.
"""

from __future__ import annotations

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
        backend = candidates[0]
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
