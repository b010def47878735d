"""Fixtures for the update tests: keys, test bundles and devices with an updater (the broker and
daemon fixtures are the root conftest's)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.support import Broker, DaemonProcess, Device, device_watcher
from tests.updates.support import Keyring, SignerFiles, Unit, make_keyring, model_bundle, signer_files
from tools.fleet import FleetClient, bundle_info

CHUNK = 32 * 1024  # ~20 chunks for a test bundle: enough to interrupt a transfer in the middle


@pytest.fixture(scope="session")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return make_keyring(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session", name="signer_files")
def signer_files_fixture(tmp_path_factory: pytest.TempPathFactory, keyring: Keyring) -> SignerFiles:
    return signer_files(tmp_path_factory.mktemp("operator"), keyring)


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory, keyring: Keyring) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bundles")
    return {
        "v0.2.0": model_bundle(folder / "v0.2.0", "0.2.0", keyring.signing),
        "v0.3.0": model_bundle(folder / "v0.3.0", "0.3.0", keyring.signing),
        "broken": model_bundle(folder / "broken", "0.9.0", keyring.signing, broken_golden=True),
        "other-signer": model_bundle(folder / "other", "0.4.0", keyring.other),
    }


@pytest.fixture
def fleet(broker: Broker) -> Iterator[FleetClient]:
    client = FleetClient("127.0.0.1", broker.port)
    yield client
    client.close()


@pytest.fixture
def published(fleet: FleetClient, bundles: dict[str, Path]) -> Callable[[str], dict[str, Any]]:
    def publish(name: str) -> dict[str, Any]:
        info, chunks = bundle_info(bundles[name], CHUNK)
        fleet.publish_bundle(info, chunks)
        return info

    return publish


@pytest.fixture
def units(
    tmp_path: Path,
    make_config: Callable[..., Any],
    daemons: Callable[..., DaemonProcess],
    broker: Broker,
    keyring: Keyring,
) -> Iterator[Callable[..., Unit]]:
    """Start devices with an updater: start(name, changes=..., env=...)."""
    watchers = []

    def start(
        name: str, changes: dict[str, Any] | None = None, env: dict[str, str] | None = None, port: int | None = None
    ) -> Unit:
        root = tmp_path / name / "assets"
        doc = {
            "device": {
                "id": f"{name}-{uuid.uuid4().hex[:6]}",
                "kind": "pi5",
                "state_dir": str(tmp_path / name / "state"),
            },
            "updates": {
                "root_key": str(keyring.root_pub),
                "root": str(root),
                "probation_s": 2.0,
                "chunk_timeout_s": 2.0,
                "window_chunks": 4,
                "latency_budget_ms": 2000.0,
            },
        }
        for key, value in (changes or {}).items():
            doc[key] = {**doc.get(key, {}), **value}
        if port is not None:
            doc["mqtt"] = {"port": port}
        config, full = make_config(doc, name=f"{name}.toml")
        device_id = full["device"]["id"]
        watcher = device_watcher(port or broker.port, device_id, session=True)
        watchers.append(watcher)
        proc = daemons(config, env)
        dev = Device(port or broker.port, device_id, watcher)
        dev.wait_online(60)
        return Unit(proc, config, device_id, root, dev, watcher)

    yield start
    for watcher in watchers:
        watcher.close()
