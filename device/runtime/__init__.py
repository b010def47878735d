"""Generator runtimes: one backend per runtime behind one small interface (see DESIGN 4.2, 4.3).

The trained generator and its backends arrive with the export toolchain; until a model bundle is
installed, `load_generator` returns None and frames render with the warp alone.
"""

from __future__ import annotations

from device.errors import BadInput

BACKENDS = ("auto", "none", "onnxruntime", "openvino", "tflite")


def load_generator(backend: str = "auto"):  # -> GeneratorStage | None
    if backend not in BACKENDS:
        raise BadInput(f"--backend {backend}: unknown; choose one of {', '.join(BACKENDS)}")
    if backend in ("auto", "none"):
        return None
    raise BadInput(f"--backend {backend}: no generator model bundle is installed yet; use --backend none (warp only)")


def installed_backends() -> list[str]:
    """Generator backends usable now (none until a model bundle is installed)."""
    return []
