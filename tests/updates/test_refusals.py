"""Every refusal: the reply and jobs/<job_id> give the reason, and nothing changes on the device."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from device.updates import keys as chain
from tests.updates.support import Keyring, Unit, current_version, installed, wait_job
from tools.fleet import make_job


def refused(unit: Unit, envelope: dict[str, Any], reason: str, timeout: float = 30.0) -> dict[str, Any]:
    reply = unit.device.command("update", envelope, timeout=timeout)
    job_id = envelope["job"]["id"]
    if reply["ok"]:  # refused after the download (hash, size): the job topic tells
        job = wait_job(unit.watcher, unit.id, job_id, ("REJECTED", "FAILED", "SUCCEEDED"), timeout)
        message = job["reason"]
    else:
        message = reply["error"]["message"]
        job = wait_job(unit.watcher, unit.id, job_id, ("REJECTED",), 10) if "replayed" not in reason else {}
    assert reason in message, message
    if job:
        assert job["state"] == "REJECTED" and reason in job["reason"]
    unchanged(unit)
    return job


def unchanged(unit: Unit) -> None:
    assert current_version(unit.root) is None
    assert not list((unit.root / "bundles" / "versions").iterdir())
    assert installed(unit.device.command("status")["state"]) == "0.1.0"  # still the default bundle


@pytest.fixture
def dev(units: Callable[..., Unit]) -> Unit:
    return units("dev")


def test_bad_signature(dev: Unit, published: Callable[[str], dict[str, Any]], keyring: Keyring) -> None:
    envelope = make_job(published("v0.2.0"), keyring.signing, keyring.cert)
    envelope["job"]["version"] = "0.2.1"  # changed after signing
    refused(dev, envelope, "bad signature")


def test_unknown_signing_key(dev: Unit, published: Callable[[str], dict[str, Any]], keyring: Keyring) -> None:
    envelope = make_job(published("v0.2.0"), keyring.signing, keyring.rogue_cert)
    refused(dev, envelope, "unknown signing key")


def test_revoked_signing_key(dev: Unit, published: Callable[[str], dict[str, Any]], keyring: Keyring) -> None:
    revocations = chain.revocation_list(keyring.root, [chain.key_id(keyring.other.public_key())], serial=1)
    envelope = make_job(published("other-signer"), keyring.other, keyring.other_cert, revocations=revocations)
    refused(dev, envelope, "is revoked")


def test_wrong_hash(dev: Unit, published: Callable[[str], dict[str, Any]], keyring: Keyring) -> None:
    envelope = make_job(published("v0.2.0"), keyring.signing, keyring.cert, sha256="ab" * 32)
    refused(dev, envelope, "sha256 mismatch")


def test_wrong_size(dev: Unit, published: Callable[[str], dict[str, Any]], keyring: Keyring) -> None:
    info = published("v0.2.0")
    envelope = make_job(info, keyring.signing, keyring.cert, size=info["size"] - 1)
    refused(dev, envelope, "size mismatch")


def test_older_or_equal_version(dev: Unit, published: Callable[[str], dict[str, Any]], keyring: Keyring) -> None:
    info = {**published("v0.2.0"), "version": "0.1.0"}  # the installed default is 0.1.0
    refused(dev, make_job(info, keyring.signing, keyring.cert), "anti-rollback")


def test_expired_job(dev: Unit, published: Callable[[str], dict[str, Any]], keyring: Keyring) -> None:
    envelope = make_job(published("v0.2.0"), keyring.signing, keyring.cert, expires=time.time() - 1)
    refused(dev, envelope, "expired")


def test_other_device_kind(dev: Unit, published: Callable[[str], dict[str, Any]], keyring: Keyring) -> None:
    envelope = make_job(published("v0.2.0"), keyring.signing, keyring.cert, device_kinds=["jetson-orin"])
    refused(dev, envelope, "device kinds")


def test_replayed_job_id(dev: Unit, published: Callable[[str], dict[str, Any]], keyring: Keyring) -> None:
    envelope = make_job(published("v0.2.0"), keyring.signing, keyring.cert, expires=time.time() - 1)
    refused(dev, envelope, "expired")
    refused(dev, envelope, "replayed job id")
    # The retained record still says what happened the first time.
    assert wait_job(dev.watcher, dev.id, envelope["job"]["id"], ("REJECTED",))["reason"].startswith("job expired")


def test_bundle_over_the_size_limit(units: Callable[..., Unit], published: Callable[[str], dict[str, Any]],
                                    keyring: Keyring) -> None:
    unit = units("small", {"updates": {"max_bundle_bytes": 100_000}})
    refused(unit, make_job(published("v0.2.0"), keyring.signing, keyring.cert), "over the limit")


def test_bundle_larger_than_free_disk(units: Callable[..., Unit], published: Callable[[str], dict[str, Any]],
                                      keyring: Keyring, tmp_path: Path) -> None:
    import shutil

    free = shutil.disk_usage(tmp_path).free
    unit = units("full", {"updates": {"min_free_bytes": 10 * free}})  # more than the disk has
    refused(unit, make_job(published("v0.2.0"), keyring.signing, keyring.cert), "not enough disk")
