"""Install, health check, power cuts at each step, probation, rollback."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from device.runtime.bundle import Bundle
from device.updates.manager import FAULT_ENV, STEPS
from tests.service.support import REPO, DaemonProcess
from tests.updates.support import Keyring, SignerFiles, Unit, current_version, installed, to, wait_job
from tools.fleet import make_job


def test_failed_health_check_keeps_the_old_version(
    units: Callable[..., Unit], keyring: Keyring, published: Callable[[str], dict[str, Any]]
) -> None:
    unit = units("dev")
    envelope = make_job(published("broken"), keyring.signing, keyring.cert, targets=to(unit))
    assert unit.device.command("update", envelope)["ok"]
    job = wait_job(unit.watcher, unit.id, envelope["job"]["id"], ("FAILED", "SUCCEEDED"), 60)
    assert job["state"] == "FAILED" and "golden vectors" in job["reason"]
    assert current_version(unit.root) is None
    assert not list((unit.root / "bundles" / "versions").iterdir())
    assert installed(unit.device.command("status")["state"]) == "0.1.0"


@pytest.mark.slow
@pytest.mark.parametrize("step", STEPS)
def test_power_cut_at_each_install_step_comes_back_working(
    step: str,
    units: Callable[..., Unit],
    daemons: Callable[..., DaemonProcess],
    keyring: Keyring,
    published: Callable[[str], dict[str, Any]],
) -> None:
    unit = units("dev", env={FAULT_ENV: step})
    envelope = make_job(published("v0.2.0"), keyring.signing, keyring.cert, targets=to(unit))
    unit.device.command("update", envelope)
    assert unit.proc.wait(60) == -9  # SIGKILL at that step
    # Right after the cut: the old or the new version, complete.
    assert current_version(unit.root) in (None, "0.2.0")
    unit.watcher.clear()
    daemons(unit.config)
    unit.device.wait_online(60)
    job = wait_job(unit.watcher, unit.id, envelope["job"]["id"], ("SUCCEEDED",), 60)
    assert job["state"] == "SUCCEEDED"
    current = (unit.root / "bundles" / "current").resolve()
    bundle = Bundle(current, keys=[keyring.signing.public_key()])  # signed, complete, files intact
    assert bundle.version == "0.2.0" and bundle.files("onnxruntime")


@pytest.mark.slow
def test_crash_loop_in_probation_rolls_back(
    units: Callable[..., Unit],
    daemons: Callable[..., DaemonProcess],
    keyring: Keyring,
    published: Callable[[str], dict[str, Any]],
) -> None:
    unit = units("dev", {"updates": {"probation_s": 120.0, "max_restarts": 2}})
    envelope = make_job(published("v0.2.0"), keyring.signing, keyring.cert, targets=to(unit))
    unit.device.command("update", envelope)
    wait_job(unit.watcher, unit.id, envelope["job"]["id"], ("SUCCEEDED",), 60)
    proc = unit.proc
    for _ in range(2):  # the new version "crashes" twice within the probation window
        proc.kill9()
        unit.watcher.clear()
        proc = daemons(unit.config)
        unit.device.wait_online(60)
    job = wait_job(unit.watcher, unit.id, envelope["job"]["id"], ("ROLLED_BACK",), 30)
    assert "crash loop" in job["reason"]
    assert installed(unit.device.command("status")["state"]) == "0.1.0"


@pytest.mark.slow
def test_operator_rollback_of_a_group(
    units: Callable[..., Unit], keyring: Keyring, signer_files: SignerFiles, published: Callable[[str], dict[str, Any]]
) -> None:
    group = f"g{uuid.uuid4().hex[:6]}"
    unit = units("dev", {"device": {"groups": [group]}, "updates": {"probation_s": 0.0}})
    for name in ("v0.2.0", "v0.3.0"):
        envelope = make_job(published(name), keyring.signing, keyring.cert, targets=to(unit))
        unit.device.command("update", envelope)
        wait_job(unit.watcher, unit.id, envelope["job"]["id"], ("SUCCEEDED",), 60)
    # The operator's CLI signs the order with the fleet signing key; the group gets it.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.fleet",
            "--broker",
            f"127.0.0.1:{unit.device.port}",
            "rollback",
            "--group",
            group,
            "--kind",
            "model",
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
    assert done.returncode == 0, done.stderr
    job = wait_job(unit.watcher, unit.id, envelope["job"]["id"], ("ROLLED_BACK",), 20)
    assert "rolled back by the operator" in job["reason"]
    assert current_version(unit.root) == "0.2.0"


@pytest.mark.slow
def test_watchdog_in_probation_rolls_back(
    units: Callable[..., Unit], keyring: Keyring, tmp_path, photos, published: Callable[[str], dict[str, Any]]
) -> None:
    """A job that hangs past its timeout (+ grace) starves the watchdog; within probation that rolls back."""
    import wave

    import numpy as np

    from device.motion.tts import synthesize

    # A long recording without transcript: phone recognition runs for seconds before the first frame,
    # far past a 0.2 s job timeout, while the main loop checks health every second.
    speech = synthesize(" ".join(["I was painted a long time ago, and I have stories to tell you."] * 8))
    recording = tmp_path / "long.wav"
    with wave.open(str(recording), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(speech.sample_rate)
        handle.writeframes((np.clip(speech.audio, -1, 1) * 32767).astype(np.int16).tobytes())
    unit = units(
        "dev",
        {
            "updates": {"probation_s": 300.0},
            "jobs": {"timeout_s": 0.2, "hung_grace_s": 0.0, "audio_dirs": [str(tmp_path)]},
        },
    )
    envelope = make_job(published("v0.2.0"), keyring.signing, keyring.cert, targets=to(unit))
    unit.device.command("update", envelope)
    wait_job(unit.watcher, unit.id, envelope["job"]["id"], ("SUCCEEDED",), 60)
    assert installed(unit.device.command("status")["state"]) == "0.2.0"
    reply = unit.device.command("animate", {"photo": str(photos / "astronaut.png"), "audio": str(recording)})
    assert reply["ok"], reply
    job = wait_job(unit.watcher, unit.id, envelope["job"]["id"], ("ROLLED_BACK",), 60)
    assert "watchdog" in job["reason"]
    assert installed(unit.device.command("status")["state"]) == "0.1.0"
    assert current_version(unit.root) == "0.1.0"


def test_older_job_admitted_behind_a_newer_one_is_refused_at_install(
    units: Callable[..., Unit],
    keyring: Keyring,
    published: Callable[[str], dict[str, Any]],
) -> None:
    unit = units("dev")
    newer = make_job(published("v0.3.0"), keyring.signing, keyring.cert, targets=to(unit))
    older = make_job(published("v0.2.0"), keyring.signing, keyring.cert, targets=to(unit))
    # Both are newer than the 0.1.0 installed when they arrive, so both are admitted.
    assert unit.device.command("update", newer)["ok"]
    assert unit.device.command("update", older)["ok"]
    assert (
        wait_job(unit.watcher, unit.id, newer["job"]["id"], ("SUCCEEDED", "FAILED", "REJECTED"))["state"] == "SUCCEEDED"
    )
    job = wait_job(unit.watcher, unit.id, older["job"]["id"], ("SUCCEEDED", "FAILED", "REJECTED"), 60)
    assert job["state"] == "REJECTED"
    assert job["reason"] == "anti-rollback: version 0.2.0 is not newer than the installed model 0.3.0"
    assert current_version(unit.root) == "0.3.0"
