"""Fixtures for the service tests: one real Mosquitto for the session, configs, daemon processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.service.support import Broker, DaemonProcess, base_config, merge, toml_dumps


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
