"""Every refusal: the reply and jobs/<job_id> give the reason, and nothing changes on the device."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from device.updates import keys as chain
from device.updates.job import make_envelope
from tests.updates.conftest import CHUNK
from tests.updates.support import Keyring, Unit, current_version, installed, model_bundle, to, wait_job
from tools.fleet import FleetClient, bundle_info, make_job


def refused(unit: Unit, envelope: dict[str, Any], reason: str, timeout: float = 30.0) -> dict[str, Any]:
    reply = unit.device.command("update", envelope, timeout=timeout)
    job_id = envelope["job"]["id"]
    if reply["ok"]:  # refused after the download (hash, size): the job topic tells
        job = wait_job(unit.watcher, unit.id, job_id, ("REJECTED", "FAILED", "SUCCEEDED"), timeout)
        message = job["reason"]
        assert message is not None, f"not refused: {job}"
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
    envelope = make_job(published("v0.2.0"), keyring.signing, keyring.cert, targets=to(dev))
    envelope["job"]["version"] = "0.2.1"  # changed after signing
    refused(dev, envelope, "bad signature")


def test_unknown_signing_key(dev: Unit, published: Callable[[str], dict[str, Any]], keyring: Keyring) -> None:
    envelope = make_job(published("v0.2.0"), keyring.signing, keyring.rogue_cert, targets=to(dev))
    refused(dev, envelope, "unknown signing key")


def test_revoked_signing_key(dev: Unit, published: Callable[[str], dict[str, Any]], keyring: Keyring) -> None:
    revocations = chain.revocation_list(keyring.root, [chain.key_id(keyring.other.public_key())], serial=1)
    envelope = make_job(
        published("other-signer"), keyring.other, keyring.other_cert, revocations=revocations, targets=to(dev)
    )
    refused(dev, envelope, "is revoked")


def test_wrong_hash(dev: Unit, published: Callable[[str], dict[str, Any]], keyring: Keyring) -> None:
    envelope = make_job(published("v0.2.0"), keyring.signing, keyring.cert, sha256="ab" * 32, targets=to(dev))
    refused(dev, envelope, "sha256 mismatch")


def test_wrong_size(dev: Unit, published: Callable[[str], dict[str, Any]], keyring: Keyring) -> None:
    info = published("v0.2.0")
    envelope = make_job(info, keyring.signing, keyring.cert, size=info["size"] - 1, targets=to(dev))
    refused(dev, envelope, "size mismatch")


def test_older_or_equal_version(dev: Unit, published: Callable[[str], dict[str, Any]], keyring: Keyring) -> None:
    info = {**published("v0.2.0"), "version": "0.1.0"}  # the installed default is 0.1.0
    refused(dev, make_job(info, keyring.signing, keyring.cert, targets=to(dev)), "anti-rollback")


def test_expired_job(dev: Unit, published: Callable[[str], dict[str, Any]], keyring: Keyring) -> None:
    envelope = make_job(published("v0.2.0"), keyring.signing, keyring.cert, expires=time.time() - 1, targets=to(dev))
    refused(dev, envelope, "expired")


def test_other_device_kind(dev: Unit, published: Callable[[str], dict[str, Any]], keyring: Keyring) -> None:
    envelope = make_job(
        published("v0.2.0"), keyring.signing, keyring.cert, device_kinds=["jetson-orin"], targets=to(dev)
    )
    refused(dev, envelope, "device kinds")


def test_replayed_job_id(dev: Unit, published: Callable[[str], dict[str, Any]], keyring: Keyring) -> None:
    envelope = make_job(published("v0.2.0"), keyring.signing, keyring.cert, expires=time.time() - 1, targets=to(dev))
    refused(dev, envelope, "expired")
    refused(dev, envelope, "replayed job id")
    # The retained record still says what happened the first time.
    assert wait_job(dev.watcher, dev.id, envelope["job"]["id"], ("REJECTED",))["reason"].startswith("job expired")


def test_bundle_over_the_size_limit(
    units: Callable[..., Unit], published: Callable[[str], dict[str, Any]], keyring: Keyring
) -> None:
    unit = units("small", {"updates": {"max_bundle_bytes": 100_000}})
    refused(unit, make_job(published("v0.2.0"), keyring.signing, keyring.cert, targets=to(unit)), "over the limit")


def test_bundle_larger_than_free_disk(
    units: Callable[..., Unit], published: Callable[[str], dict[str, Any]], keyring: Keyring, tmp_path: Path
) -> None:
    import shutil

    free = shutil.disk_usage(tmp_path).free
    unit = units("full", {"updates": {"min_free_bytes": 10 * free}})  # more than the disk has
    refused(unit, make_job(published("v0.2.0"), keyring.signing, keyring.cert, targets=to(unit)), "not enough disk")


def test_bundle_name_that_climbs_out_of_the_slot(
    dev: Unit, fleet: FleetClient, keyring: Keyring, tmp_path: Path
) -> None:
    """Signed, hash right, named `../../../../escape`: the versions/ folder is four levels under tmp_path."""
    bundle = model_bundle(tmp_path / "source", "0.5.0", keyring.signing, name="../../../../escape")
    info, chunks = bundle_info(bundle, CHUNK)
    fleet.publish_bundle(info, chunks)
    try:
        envelope = make_job(info, keyring.signing, keyring.cert, targets=to(dev), job_id=f"climb-{time.time_ns()}")
        refused(dev, envelope, "job name: String should match")
    finally:
        fleet.unpublish(info)
    assert not list(tmp_path.glob("escape*"))


def test_job_for_another_group(
    units: Callable[..., Unit], published: Callable[[str], dict[str, Any]], keyring: Keyring
) -> None:
    unit = units("dev", {"device": {"groups": ["lobby"]}})
    envelope = make_job(published("v0.2.0"), keyring.signing, keyring.cert, targets={"groups": ["gallery"]})
    refused(unit, envelope, "not for this device: it is for groups ['gallery']; this is")


def test_job_that_names_no_targets(dev: Unit, published: Callable[[str], dict[str, Any]], keyring: Keyring) -> None:
    envelope = make_job(published("v0.2.0"), keyring.signing, keyring.cert, targets=to(dev))
    job = {k: v for k, v in envelope["job"].items() if k != "targets"}  # the old, unbound form, signed
    refused(dev, make_envelope(job, keyring.signing, keyring.cert), "job targets: Field required")
