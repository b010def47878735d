"""`portrait fleet` as an operator types it: help on everything, broker options on either side of the
subcommand, clear exit-2 errors for a broker that cannot be reached or refuses us, `status` (table
with stats, and --json), and `rollback` reporting each device's answer, an unknown device and an
offline one. Real Mosquitto brokers and real daemons throughout."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from device.fleet import build_parser, make_job
from tests.service.support import REPO, Broker, free_port
from tests.updates.support import SignerFiles, Unit, current_version, to, wait_job

PASSWORD = "operator-secret-42"


def fleet_cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """The real command line in a fresh interpreter, as the operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "device.cli", "fleet", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def signed(files: SignerFiles) -> list[str]:
    return ["--key", str(files.key), "--cert", str(files.cert)]


def _parsers(parser: argparse.ArgumentParser, path: str = "portrait fleet") -> Iterator[tuple[str, Any]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_subcommand_and_option_has_help() -> None:
    undocumented = []
    for path, parser in _parsers(build_parser()):
        assert parser.prog == path  # the usage line says `portrait fleet ...`, not `python -m tools.fleet`
        assert parser.description, f"{path}: no description"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                undocumented += [f"{path} {c.dest}" for c in action._choices_actions if not c.help]
            elif not action.help:
                undocumented.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert undocumented == []


def test_help_from_the_portrait_command() -> None:
    done = fleet_cli("rollback", "--help", timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: portrait fleet rollback")
    assert "python -m tools.fleet" not in done.stdout
    for option in (
        "--device ID",
        "--group GROUP",
        "--key SIGNING.key",
        "--broker HOST[:PORT]",
        "--password-file",
        "--ca-file",
        "--wait S",
    ):
        assert option in done.stdout


@pytest.mark.parametrize("before", [True, False], ids=["broker-before", "broker-after"])
def test_an_unreachable_broker_is_a_clear_exit_2(before: bool) -> None:
    port = free_port()  # nothing listens there
    broker = ["--broker", f"127.0.0.1:{port}"]
    done = fleet_cli(*([*broker, "status"] if before else ["status", *broker]), timeout=30)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"cannot reach the MQTT broker at 127.0.0.1:{port}" in done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr


def test_bad_local_inputs_are_named_before_any_broker_is_tried(tmp_path: Path) -> None:
    done = fleet_cli(
        "rollback",
        "--device",
        "kiosk-01",
        "--key",
        str(tmp_path / "missing.key"),
        "--cert",
        str(tmp_path / "c.json"),
        "--broker",
        f"127.0.0.1:{free_port()}",
        timeout=30,
    )
    assert done.returncode == 2
    assert f"--key {tmp_path / 'missing.key'}: cannot read it" in done.stderr
    done = fleet_cli("status", "--broker", "localhost:http", timeout=30)
    assert done.returncode == 2 and "--broker 'localhost:http': the port must be a number" in done.stderr


@pytest.fixture(scope="module")
def auth_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    folder = tmp_path_factory.mktemp("fleet-auth-broker")
    passwords = folder / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "operator", PASSWORD], check=True, timeout=30)
    broker = Broker(folder, extra=f"password_file {passwords}\n", anonymous=False)
    broker.start()
    yield broker
    broker.stop()


def test_credentials_after_the_subcommand(auth_broker: Broker, tmp_path: Path) -> None:
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    right.write_text(PASSWORD + "\n")
    wrong.write_text("guess\n")
    address = f"127.0.0.1:{auth_broker.port}"
    done = fleet_cli("status", "--json", "--broker", address, "--username", "operator", "--password-file", str(right))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["broker"] == address
    done = fleet_cli("--broker", address, "status", "--username", "operator", "--password-file", str(wrong))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"the MQTT broker at {address} refused the connection" in done.stderr
    assert "guess" not in done.stderr


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Path, Path]]:
    from tests.service.test_mqtt_security import make_ca, make_server_cert

    folder = tmp_path_factory.mktemp("fleet-pki")
    ca, ca_key, ca_path = make_ca(folder, "fleet-ca")
    _, _, wrong_path = make_ca(folder, "other-ca")
    cert, key = make_server_cert(folder, ca, ca_key)
    broker = Broker(
        tmp_path_factory.mktemp("fleet-tls-broker"), extra=f"cafile {ca_path}\ncertfile {cert}\nkeyfile {key}\n"
    )
    broker.start()
    yield broker, ca_path, wrong_path
    broker.stop()


@pytest.mark.slow
def test_tls_after_the_subcommand(tls_broker: tuple[Broker, Path, Path]) -> None:
    broker, ca, wrong_ca = tls_broker
    address = f"127.0.0.1:{broker.port}"
    done = fleet_cli("status", "--json", "--broker", address, "--ca-file", str(ca))
    assert done.returncode == 0, done.stderr
    done = fleet_cli("status", "--broker", address, "--ca-file", str(wrong_ca))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"TLS handshake with the MQTT broker at {address} failed" in done.stderr
    done = fleet_cli("status", "--broker", address, "--connect-timeout", "3")  # a TLS port, spoken to in plain
    assert done.returncode == 2 and address in done.stderr, done.stdout + done.stderr


@pytest.mark.slow
def test_status_shows_stats_once_and_as_json(units: Callable[..., Unit], broker: Broker) -> None:
    # Stats every hour: the only sample is the one taken at start, long before the CLI subscribes, so
    # what the one-shot view shows it must have asked the device for.
    unit = units("dev", {"mqtt": {"stats_interval_s": 3600.0}})
    done = fleet_cli("--broker", "127.0.0.1:1", "status", "--json", "--broker", f"127.0.0.1:{broker.port}")
    assert done.returncode == 0, done.stderr  # the option after the subcommand wins
    doc = json.loads(done.stdout)["devices"][unit.id]
    assert doc["availability"] == "online" and doc["state"]["ready"] is True
    assert doc["stats"]["rss_bytes"] > 10 * 2**20 and doc["stats"]["cpu_percent"] >= 0
    done = fleet_cli("status", "--broker", f"127.0.0.1:{broker.port}")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[:2] == ["device", "avail"] and "mem" in header and "fps" in header
    row = next(r for r in rows if r.startswith(unit.id))
    assert "online" in row.split()
    assert float(row[header.index("mem MB") :].split()[0]) > 10  # the columns are aligned under the header


@pytest.mark.slow
def test_rollback_of_an_unknown_device_is_exit_2(broker: Broker, signer_files: SignerFiles) -> None:
    missing = f"nosuch-{uuid.uuid4().hex[:6]}"
    done = fleet_cli("rollback", "--device", missing, *signed(signer_files), "--broker", f"127.0.0.1:{broker.port}")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"no device '{missing}' on the broker at 127.0.0.1:{broker.port}" in done.stderr
    done = fleet_cli("rollback", "--group", missing, *signed(signer_files), "--broker", f"127.0.0.1:{broker.port}")
    assert done.returncode == 2 and f"is in group '{missing}'" in done.stderr


@pytest.mark.slow
def test_rollback_reports_a_refusal_then_an_offline_device(
    units: Callable[..., Unit], broker: Broker, signer_files: SignerFiles
) -> None:
    unit = units("dev")  # nothing installed yet: nothing to go back to
    address = ["--broker", f"127.0.0.1:{broker.port}"]
    done = fleet_cli("rollback", "--device", unit.id, *signed(signer_files), *address)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "refused:" in done.stdout and '"ok": false' in done.stdout  # the device's own answer, in full
    assert unit.proc.terminate() == 0  # a clean stop publishes `offline`
    done = fleet_cli("rollback", "--device", unit.id, *signed(signer_files), *address)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"offline: {unit.id}: the order waits on the broker" in done.stdout


@pytest.mark.slow
def test_rollback_reports_what_the_device_restored(
    units: Callable[..., Unit], keyring: Any, signer_files: SignerFiles, published: Callable[[str], dict[str, Any]]
) -> None:
    unit = units("dev", {"updates": {"probation_s": 0.0}})
    for name in ("v0.2.0", "v0.3.0"):
        envelope = make_job(published(name), keyring.signing, keyring.cert, targets=to(unit))
        unit.device.command("update", envelope)
        wait_job(unit.watcher, unit.id, envelope["job"]["id"], ("SUCCEEDED",), 60)
    done = fleet_cli(
        "rollback",
        "--device",
        unit.id,
        "--kind",
        "model",
        *signed(signer_files),
        "--broker",
        f"127.0.0.1:{unit.device.port}",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rolled back: model is now" in done.stdout and "0.2.0" in done.stdout.splitlines()[1]
    assert current_version(unit.root) == "0.2.0"
