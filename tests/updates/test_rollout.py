"""Staged rollouts to several daemons, each its own process, over a real broker."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.service.support import REPO, Broker
from tests.updates.support import Keyring, SignerFiles, Unit, current_version, installed, last_state, to, wait_job
from tools.fleet import FleetClient, make_job, rollout, status_table


@pytest.mark.slow
def test_rollout_to_three_devices_switches_all(
    units: Callable[..., Unit], fleet: FleetClient, published: Callable[[str], dict[str, Any]], keyring: Keyring
) -> None:
    devices = [units(f"dev{i}") for i in range(3)]
    info = published("v0.2.0")
    envelope = make_job(info, keyring.signing, keyring.cert, rollout="r1", targets=to(*devices))
    report = rollout(fleet, envelope, [d.id for d in devices], canary=1, timeout_s=90, log=lambda *_: None)
    assert report["aborted"] is None
    assert report["results"] == {d.id: "SUCCEEDED" for d in devices}
    for dev in devices:
        dev.watcher.wait_for(
            lambda m, d=dev: m.topic.endswith(f"{d.id}/state") and installed(m.json()) == "0.2.0",
            15,
            what="state with the new model",
        )
        assert current_version(dev.root) == "0.2.0"
        job = wait_job(dev.watcher, dev.id, envelope["job"]["id"], ("SUCCEEDED",))
        assert job["result"]["health"]["backend"] == "onnxruntime"
        assert job["result"]["health"]["golden_psnr"] >= 30
    table = status_table(fleet)  # the operator's live view
    for dev in devices:
        row = next(line for line in table.splitlines() if line.startswith(dev.id))
        assert "online" in row and "0.2.0" in row and "SUCCEEDED" in row


def test_canary_failure_aborts_rollout_rest_untouched(
    units: Callable[..., Unit], fleet: FleetClient, published: Callable[[str], dict[str, Any]], keyring: Keyring
) -> None:
    devices = [units(f"dev{i}") for i in range(3)]
    info = published("broken")  # golden vectors off: the canary's health check fails
    envelope = make_job(info, keyring.signing, keyring.cert, targets=to(*devices))
    report = rollout(fleet, envelope, [d.id for d in devices], canary=1, timeout_s=90, log=lambda *_: None)
    assert report["aborted"]
    assert report["results"] == {devices[0].id: "FAILED"}
    assert report["untouched"] == [devices[1].id, devices[2].id]
    for dev in devices[1:]:
        assert not any("/jobs/" in m.topic for m in dev.watcher.messages)  # never even got the job
        assert installed(last_state(dev.watcher, dev.id)) == "0.1.0"
        assert current_version(dev.root) is None


def test_rollout_job_replayed_to_a_device_it_does_not_name_is_refused(
    units: Callable[..., Unit],
    fleet: FleetClient,
    published: Callable[[str], dict[str, Any]],
    keyring: Keyring,
) -> None:
    canary, other = units("dev0"), units("dev1")
    envelope = make_job(published("broken"), keyring.signing, keyring.cert, targets=to(canary))
    report = rollout(fleet, envelope, [canary.id], canary=1, timeout_s=90, log=lambda *_: None)
    assert report["aborted"]
    # Anyone on the broker can resend the signed envelope to the rest of the fleet.
    reply = other.device.command("update", envelope)
    assert not reply["ok"]
    assert f"not for this device: it is for devices ['{canary.id}']" in reply["error"]["message"]
    job = wait_job(other.watcher, other.id, envelope["job"]["id"], ("REJECTED",), 10)
    assert "not for this device" in job["reason"]
    assert current_version(other.root) is None


def test_rollout_to_a_group_installs_on_its_members(
    units: Callable[..., Unit], fleet: FleetClient, published: Callable[[str], dict[str, Any]], keyring: Keyring
) -> None:
    group = f"g{uuid.uuid4().hex[:6]}"
    member = units("dev", {"device": {"groups": ["lobby", group]}})
    envelope = make_job(published("v0.2.0"), keyring.signing, keyring.cert, targets={"groups": [group]})
    report = rollout(fleet, envelope, [member.id], timeout_s=90, log=lambda *_: None)
    assert report["results"] == {member.id: "SUCCEEDED"}
    assert current_version(member.root) == "0.2.0"


@pytest.mark.slow
def test_fleet_cli_rollout_signs_the_devices_it_picked(
    units: Callable[..., Unit], broker: Broker, bundles: dict[str, Path], signer_files: SignerFiles, tmp_path: Path
) -> None:
    unit = units("dev")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.fleet",
            "--broker",
            f"127.0.0.1:{broker.port}",
            "rollout",
            str(bundles["v0.2.0"]),
            "--key",
            str(signer_files.key),
            "--cert",
            str(signer_files.cert),
            "--device",
            unit.id,
            "--timeout",
            "90",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = json.loads(done.stdout[done.stdout.index("{\n") :])["job_id"]  # the report, after the wave lines
    record = json.loads((tmp_path / "dev" / "state" / "updates" / "jobs" / f"{job_id}.json").read_text())
    assert record["state"] == "SUCCEEDED"
    assert record["job"]["targets"] == {"devices": [unit.id]}  # what the device checked, under the signature
