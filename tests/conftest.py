"""Shared fixtures: the real sample portrait and real face models (installed by `portrait setup`)."""

from __future__ import annotations

import os

# Before numpy loads (see device/__init__.py): one BLAS thread, or it fights the TFLite threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OPENVINO_TELEMETRY_DISABLE", "1")


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def analyzer():
    from device.face.analysis import FaceAnalyzer

    return FaceAnalyzer(threads=2)


@pytest.fixture(scope="session")
def astronaut_face(analyzer, astronaut):
    return analyzer.analyse(astronaut, name="astronaut")


@pytest.fixture(scope="session")
def animator():
    from device.pipeline import Animator

    return Animator(backend="none")


def save_rgb(path: Path, image: np.ndarray, **options) -> Path:
    from PIL import Image

    Image.fromarray(image).save(path, **options)
    return path


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real command line, in a fresh interpreter, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "device.cli", *args], capture_output=True, text=True, timeout=timeout)
