"""Shared fixtures: the real sample portrait and face models (installed by `portrait setup`), tiny talking
clips made here, and a real Mosquitto broker with daemon processes (the service and update tests)."""

from __future__ import annotations

import os

# Before numpy loads (see device/__init__.py): one BLAS thread, or it fights the TFLite threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.service.support import Broker, DaemonProcess, base_config, merge, toml_dumps

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


@pytest.fixture(scope="session")
def talking_clips(tmp_path_factory, astronaut) -> Path:
    """A folder of two tiny talking clips made here (tests never read ../shared): the sample portrait
    rendered by the device opening and closing its mouth and blinking, and its mirror image as a
    second "person" to hold out."""
    import cv2

    from device.motion.params import FaceParams
    from device.outputs.video import VideoWriter
    from device.render.renderer import Renderer

    folder = tmp_path_factory.mktemp("talking")
    # 640 px: the sample face is 94 px wide at 512, under the pair tool's 96 px minimum.
    portrait = cv2.resize(astronaut, (640, 640), interpolation=cv2.INTER_CUBIC)
    from device.face.analysis import FaceAnalyzer

    renderer = Renderer(portrait, FaceAnalyzer().analyse(portrait))
    frames = []
    for i in range(12):
        jaw = max(0.0, float(np.sin(np.pi * i / 6)))
        blink = 1.0 if i == 7 else 0.0
        frames.append(renderer.render(FaceParams(jaw_open=jaw, blink_left=blink, blink_right=blink)))
    for name, flip in (("speaker", False), ("mirrored", True)):
        with VideoWriter(folder / f"{name}.mp4", 25, 640, 640, crf=16) as writer:
            for frame in frames:
                writer.write(np.ascontiguousarray(frame[:, ::-1]) if flip else frame)
    return folder


# --- a real Mosquitto broker and daemon processes (the service and update tests) ----------------------


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = Broker(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The allowed photo folder: the astronaut (a face) and a grey card (no face)."""
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(np.ascontiguousarray(data.astronaut())).save(folder / "astronaut.png")
    Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(folder / "grey.png")
    return folder


@pytest.fixture
def make_config(tmp_path: Path, broker: Broker, photos: Path) -> Callable[..., tuple[Path, dict[str, Any]]]:
    """Write a daemon config (the base above with changes merged in); returns (path, the dict)."""

    def make(changes: dict[str, Any] | None = None, name: str = "portrait.toml") -> tuple[Path, dict[str, Any]]:
        doc = merge(base_config(tmp_path / "state", broker.port, photos), changes or {})
        path = tmp_path / name
        path.write_text(toml_dumps(doc))
        return path, doc

    return make


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Start daemon processes; any still running at the end of the test is killed."""
    started: list[DaemonProcess] = []

    def start(config: Path, env: dict[str, str] | None = None) -> DaemonProcess:
        proc = DaemonProcess(config, tmp_path / f"daemon-{len(started)}.log", env).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.cleanup()
