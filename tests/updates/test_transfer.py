"""Chunked transfer: resumes after a broker restart or a kill, and never hangs: retry budget, deadline, expiry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from device.updates.transfer import chunk_topic
from tests.service.support import Broker, DaemonProcess
from tests.updates.conftest import CHUNK
from tests.updates.support import Keyring, Unit, current_version, job_topic, model_bundle, to, wait_job
from tools.fleet import FleetClient, bundle_info, make_job

SLOW = {"updates": {"rate_bytes_s": 120_000, "window_chunks": 2}}  # ~7 s for the test bundle


def progress(unit: Unit, job_id: str) -> list[dict[str, Any]]:
    with unit.watcher._cond:
        docs = [m.json() for m in unit.watcher.messages if m.topic == job_topic(unit.id, job_id)]
    return [d["progress"] for d in docs if d["state"] == "DOWNLOADING" and d.get("progress")]


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()


@pytest.mark.slow
def test_broker_restart_mid_transfer_resumes(
    units: Callable[..., Unit], own_broker: Broker, keyring: Keyring, bundles: dict[str, Path]
) -> None:
    unit = units("dev", SLOW, port=own_broker.port)
    fleet = FleetClient("127.0.0.1", own_broker.port)
    info, chunks = bundle_info(bundles["v0.2.0"], CHUNK)
    fleet.publish_bundle(info, chunks)
    fleet.close()
    envelope = make_job(info, keyring.signing, keyring.cert, targets=to(unit))
    job_id = envelope["job"]["id"]
    unit.device.command("update", envelope)
    unit.watcher.wait_for(
        lambda m: m.topic == job_topic(unit.id, job_id) and (m.json().get("progress") or {}).get("chunks", 0) >= 6,
        30,
        what="a third done",
    )
    before = progress(unit, job_id)[-1]["chunks"]
    assert before < len(chunks)
    own_broker.restart()  # retained chunks survive (persistence); sessions do not
    wait_job(unit.watcher, unit.id, job_id, ("SUCCEEDED",), 60)
    after = [p["chunks"] for p in progress(unit, job_id)]
    assert after == sorted(after)  # never went back
    assert min(c for c in after if c >= before) >= before
    assert after[-1] == len(chunks)


@pytest.mark.slow
def test_daemon_killed_mid_transfer_resumes(
    units: Callable[..., Unit],
    daemons: Callable[..., DaemonProcess],
    keyring: Keyring,
    published: Callable[[str], dict[str, Any]],
) -> None:
    unit = units("dev", SLOW)
    info = published("v0.2.0")
    envelope = make_job(info, keyring.signing, keyring.cert, targets=to(unit))
    job_id = envelope["job"]["id"]
    unit.device.command("update", envelope)
    unit.watcher.wait_for(
        lambda m: m.topic == job_topic(unit.id, job_id) and (m.json().get("progress") or {}).get("chunks", 0) >= 6,
        30,
        what="a third done",
    )
    unit.proc.kill9()
    had = progress(unit, job_id)[-1]["chunks"]
    unit.watcher.clear()
    daemons(unit.config)
    unit.device.wait_online(60)
    wait_job(unit.watcher, unit.id, job_id, ("SUCCEEDED",), 60)
    resumed = [p for p in progress(unit, job_id) if p["resumed_from"] > 0]
    assert resumed and resumed[0]["resumed_from"] >= had  # the chunks on disk were kept
    assert resumed[-1]["chunks"] == len(info["chunks"])


@pytest.mark.slow
def test_tampered_retained_chunk_fails_the_download(
    units: Callable[..., Unit], fleet: FleetClient, keyring: Keyring, tmp_path: Path
) -> None:
    unit = units("dev", {"updates": {"chunk_retries": 2, "chunk_timeout_s": 1.0}})
    # A bundle of its own, so the tampered chunk sits on a topic no other test reads.
    info, chunks = bundle_info(model_bundle(tmp_path / "bundle", "0.7.0", keyring.signing), CHUNK)
    fleet.publish_bundle(info, chunks)
    try:
        fleet.publish_wait(chunk_topic(info["topic"], 3), bytes(b ^ 0xFF for b in chunks[3]), retain=True)
        envelope = make_job(info, keyring.signing, keyring.cert, targets=to(unit))
        assert unit.device.command("update", envelope)["ok"]
        job = wait_job(unit.watcher, unit.id, envelope["job"]["id"], ("SUCCEEDED", "FAILED", "REJECTED"), 30)
    finally:
        fleet.unpublish(info)
    assert job["state"] == "FAILED"
    assert job["reason"].startswith(
        f"chunk 3 of {len(chunks)}: no good copy after 3 tries (3 copies came with the wrong sha256)"
    )
    assert "updates.chunk_retries is 2" in job["reason"]
    assert current_version(unit.root) is None


@pytest.mark.slow
def test_download_past_its_deadline_fails(
    units: Callable[..., Unit], keyring: Keyring, published: Callable[[str], dict[str, Any]]
) -> None:
    unit = units("dev", {"updates": {**SLOW["updates"], "download_timeout_s": 2.0}})  # ~7 s needed
    envelope = make_job(published("v0.2.0"), keyring.signing, keyring.cert, targets=to(unit))
    assert unit.device.command("update", envelope)["ok"]
    job = wait_job(unit.watcher, unit.id, envelope["job"]["id"], ("SUCCEEDED", "FAILED", "REJECTED"), 30)
    assert job["state"] == "FAILED"
    assert "download did not finish within 2 s" in job["reason"] and "updates.download_timeout_s" in job["reason"]
    assert current_version(unit.root) is None


@pytest.mark.slow
def test_job_that_expires_during_the_download_is_refused(
    units: Callable[..., Unit], keyring: Keyring, published: Callable[[str], dict[str, Any]]
) -> None:
    unit = units("dev", SLOW)  # ~7 s for the download
    envelope = make_job(published("v0.2.0"), keyring.signing, keyring.cert, targets=to(unit), expires_s=3.0)
    assert unit.device.command("update", envelope)["ok"]
    job = wait_job(unit.watcher, unit.id, envelope["job"]["id"], ("SUCCEEDED", "FAILED", "REJECTED"), 30)
    assert job["state"] == "REJECTED"
    assert "job expired at" in job["reason"] and "during the download" in job["reason"]
    assert current_version(unit.root) is None
