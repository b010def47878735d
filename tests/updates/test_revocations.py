"""Revocation lists published retained on portrait/fleet/revocations reach running devices."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from device.updates import keys as chain
from tests.service.support import REPO, Broker, wait_until
from tests.updates.support import Keyring, Unit, current_version, installed, to, wait_job
from tools.fleet import FleetClient, make_job

TOPIC = "portrait/fleet/revocations"


@pytest.fixture
def revocations_topic(fleet: FleetClient) -> Iterator[str]:
    """The shared retained topic, cleared afterwards so that no other test's devices see our lists."""
    yield TOPIC
    fleet.publish_wait(TOPIC, b"", retain=True)


def stored_list(state_dir: Path) -> dict[str, Any] | None:
    """The list the device adopted and persisted (<state>/updates/revocations.json)."""
    try:
        path = state_dir / "updates" / "revocations.json"
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@pytest.mark.slow
def test_published_revocation_list_reaches_device_forged_one_ignored(
    units: Callable[..., Unit],
    fleet: FleetClient,
    broker: Broker,
    keyring: Keyring,
    tmp_path: Path,
    published: Callable[[str], dict[str, Any]],
    revocations_topic: str,
) -> None:
    unit = units("dev")
    state = tmp_path / "dev" / "state"
    other_id = chain.key_id(keyring.other.public_key())
    signing_id = chain.key_id(keyring.signing.public_key())

    # A forged list (signed by a key that is not the root), with a high serial, revoking both keys.
    forged = chain.revocation_list(chain.Ed25519PrivateKey.generate(), [signing_id, other_id], serial=100)
    fleet.publish_wait(revocations_topic, json.dumps(forged), retain=True)
    wait_until(lambda: "revocation list refused" in unit.proc.log_text(), 15, what="the forged list refused")
    assert stored_list(state) is None

    # The operator revokes the other key with the real root, published retained (serial 0: had the
    # forged serial 100 been adopted, this one would be ignored as older).
    root_key = tmp_path / "keys" / "root.key"
    chain.write_private(root_key, keyring.root)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.fleet",
            "--broker",
            f"127.0.0.1:{broker.port}",
            "keys",
            "revoke",
            other_id,
            "--root",
            str(root_key),
            "--list",
            str(tmp_path / "keys" / "revocations.json"),
            "--publish",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=60,
    )
    doc = wait_until(
        lambda: (d := stored_list(state)) and d["body"]["serial"] == 0 and d,
        15,
        what="the device to adopt the root-signed list",
    )
    assert doc["body"]["revoked"] == [other_id]

    # A later job signed by the revoked key, with no list of its own: refused, naming the key.
    envelope = make_job(published("other-signer"), keyring.other, keyring.other_cert, targets=to(unit))
    reply = unit.device.command("update", envelope)
    assert not reply["ok"]
    assert f"signing key {other_id} is revoked" in reply["error"]["message"]
    job = wait_job(unit.watcher, unit.id, envelope["job"]["id"], ("REJECTED",), 10)
    assert f"signing key {other_id} is revoked" in job["reason"]
    assert current_version(unit.root) is None

    # The key the forged list named still works.
    envelope = make_job(published("v0.2.0"), keyring.signing, keyring.cert, targets=to(unit))
    assert unit.device.command("update", envelope)["ok"]
    wait_job(unit.watcher, unit.id, envelope["job"]["id"], ("SUCCEEDED",), 60)
    assert installed(unit.device.command("status")["state"]) == "0.2.0"
