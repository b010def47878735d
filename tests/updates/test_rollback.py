"""`rollback` takes only a signed order that names the device, once, before it expires."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.service.support import REPO
from tests.updates.support import Keyring, SignerFiles, Unit, current_version, to, wait_job
from tools.fleet import make_job, make_rollback


@pytest.fixture
def upgraded(units: Callable[..., Unit], keyring: Keyring, published: Callable[[str], dict[str, Any]]) -> Unit:
    """A device that installed 0.2.0, then 0.3.0: it has a previous version to go back to."""
    unit = units("dev", {"updates": {"probation_s": 0.0}})
    for name in ("v0.2.0", "v0.3.0"):
        envelope = make_job(published(name), keyring.signing, keyring.cert, targets=to(unit))
        unit.device.command("update", envelope)
        wait_job(unit.watcher, unit.id, envelope["job"]["id"], ("SUCCEEDED",), 60)
    assert current_version(unit.root) == "0.3.0"
    return unit


def refused(unit: Unit, payload: dict[str, Any], reason: str) -> None:
    reply = unit.device.command("rollback", payload)
    assert not reply["ok"], reply
    assert reason in reply["error"]["message"], reply["error"]


@pytest.mark.slow
def test_unsigned_rollback_is_refused(upgraded: Unit) -> None:
    refused(upgraded, {"kind": "model"}, "not signed")  # the old, unsigned form
    assert current_version(upgraded.root) == "0.3.0"


def test_rollback_signed_by_an_uncertified_key_is_refused(upgraded: Unit, keyring: Keyring) -> None:
    order = make_rollback("model", keyring.signing, keyring.rogue_cert, targets=to(upgraded))
    refused(upgraded, order, "unknown signing key")
    assert current_version(upgraded.root) == "0.3.0"


@pytest.mark.slow
def test_rollback_changed_after_signing_is_refused(upgraded: Unit, keyring: Keyring) -> None:
    order = make_rollback("model", keyring.signing, keyring.cert, targets={"devices": ["someone-else"]})
    order["order"]["targets"] = to(upgraded)  # redirected at this device after signing
    refused(upgraded, order, "bad signature")
    assert current_version(upgraded.root) == "0.3.0"


def test_rollback_for_another_device_is_refused(upgraded: Unit, keyring: Keyring) -> None:
    order = make_rollback("model", keyring.signing, keyring.cert, targets={"devices": ["someone-else"]})
    refused(upgraded, order, "not for this device")
    assert current_version(upgraded.root) == "0.3.0"


def test_expired_rollback_is_refused(upgraded: Unit, keyring: Keyring) -> None:
    now = time.time()
    order = make_rollback(
        "model", keyring.signing, keyring.cert, targets=to(upgraded), issued=now - 120, expires=now - 60
    )
    refused(upgraded, order, "expired")
    assert current_version(upgraded.root) == "0.3.0"


def test_replayed_rollback_is_refused(upgraded: Unit, keyring: Keyring) -> None:
    order = make_rollback("model", keyring.signing, keyring.cert, targets=to(upgraded))
    reply = upgraded.device.command("rollback", order)
    assert reply["ok"] and reply["restored"]["version"] == "0.2.0", reply
    refused(upgraded, order, "replayed rollback order")


@pytest.mark.slow
def test_fleet_cli_signs_the_rollback_it_sends(upgraded: Unit, signer_files: SignerFiles) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.fleet",
            "--broker",
            f"127.0.0.1:{upgraded.device.port}",
            "rollback",
            "--device",
            upgraded.id,
            "--key",
            str(signer_files.key),
            "--cert",
            str(signer_files.cert),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"version": "0.2.0"' in done.stdout  # the device's reply: what it restored
    assert current_version(upgraded.root) == "0.2.0"
