"""What `state` reports about the loaded generator bundle."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


def model_info(animator: Any) -> dict[str, Any] | None:
    """Name, version, manifest sha256 and runtime of the loaded generator bundle; None for the warp alone."""
    custom = getattr(animator, "model_info", None)
    if custom is not None:
        return custom() if callable(custom) else custom
    generator = getattr(animator, "generator", None)
    bundle = getattr(generator, "bundle", None)
    if bundle is None:
        return None
    try:
        digest = hashlib.sha256((Path(bundle.path) / "manifest.json").read_bytes()).hexdigest()
    except (OSError, AttributeError, TypeError):
        digest = None
    return {
        "name": getattr(bundle, "name", None),
        "version": getattr(bundle, "version", None),
        "sha256": digest,
        "runtime": getattr(getattr(generator, "backend", None), "name", None),
    }
