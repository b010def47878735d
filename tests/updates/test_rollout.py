"""Staged rollouts to several daemons, each its own process, over a real broker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.updates.support import Keyring, Unit, current_version, installed, last_state, wait_job
from tools.fleet import FleetClient, make_job, rollout, status_table


def test_rollout_to_three_devices_switches_all(units: Callable[..., Unit], fleet: FleetClient,
                                               published: Callable[[str], dict[str, Any]], keyring: Keyring) -> None:
    devices = [units(f"dev{i}") for i in range(3)]
    info = published("v0.2.0")
    envelope = make_job(info, keyring.signing, keyring.cert, rollout="r1")
    report = rollout(fleet, envelope, [d.id for d in devices], canary=1, timeout_s=90, log=lambda *_: None)
    assert report["aborted"] is None
    assert report["results"] == {d.id: "SUCCEEDED" for d in devices}
    for dev in devices:
        dev.watcher.wait_for(lambda m, d=dev: m.topic.endswith(f"{d.id}/state") and installed(m.json()) == "0.2.0",
                             15, what="state with the new model")
        assert current_version(dev.root) == "0.2.0"
        job = wait_job(dev.watcher, dev.id, envelope["job"]["id"], ("SUCCEEDED",))
        assert job["result"]["health"]["backend"] == "onnxruntime"
        assert job["result"]["health"]["golden_psnr"] >= 30
    table = status_table(fleet)  # the operator's live view
    for dev in devices:
        row = next(line for line in table.splitlines() if line.startswith(dev.id))
        assert "online" in row and "0.2.0" in row and "SUCCEEDED" in row


def test_canary_failure_aborts_rollout_rest_untouched(units: Callable[..., Unit], fleet: FleetClient,
                                                      published: Callable[[str], dict[str, Any]],
                                                      keyring: Keyring) -> None:
    devices = [units(f"dev{i}") for i in range(3)]
    info = published("broken")  # golden vectors off: the canary's health check fails
    envelope = make_job(info, keyring.signing, keyring.cert)
    report = rollout(fleet, envelope, [d.id for d in devices], canary=1, timeout_s=90, log=lambda *_: None)
    assert report["aborted"]
    assert report["results"] == {devices[0].id: "FAILED"}
    assert report["untouched"] == [devices[1].id, devices[2].id]
    for dev in devices[1:]:
        assert not any("/jobs/" in m.topic for m in dev.watcher.messages)  # never even got the job
        assert installed(last_state(dev.watcher, dev.id)) == "0.1.0"
        assert current_version(dev.root) is None
