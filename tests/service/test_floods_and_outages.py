"""The daemon under a command flood, across its own downtime, and on a full disk: nothing is lost and
every command gets an answer. Real daemon processes on a real Mosquitto broker."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.service.router import FAULT_ENV
from tests.service.support import (
    Broker,
    DaemonProcess,
    Device,
    base_config,
    device_watcher,
    mosquitto_pub,
    toml_dumps,
    wait_until,
)

MakeConfig = Callable[..., tuple[Path, dict[str, Any]]]
StartDaemon = Callable[..., DaemonProcess]


@pytest.fixture
def device_for(make_config: MakeConfig, broker: Broker) -> Iterator[Callable[..., tuple[Path, dict[str, Any], Device]]]:
    """A config and a Device (with its watcher) to talk to the daemon that will run it."""
    watchers = []

    def make(changes: dict[str, Any] | None = None) -> tuple[Path, dict[str, Any], Device]:
        config, doc = make_config(changes)
        watcher = device_watcher(broker.port, doc["device"]["id"])
        watchers.append(watcher)
        return config, doc, Device(broker.port, doc["device"]["id"], watcher)

    yield make
    for watcher in watchers:
        watcher.close()


def publisher(port: int) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"flood-{time.monotonic_ns()}", protocol=paho.MQTTv5)
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


DeviceFor = Callable[..., tuple[Path, dict[str, Any], Device]]


@pytest.fixture
def flood_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker that queues a thousand replies for a slow subscriber instead of dropping them (Mosquitto
    keeps 1000 by default), so what the test counts is what the daemon answered."""
    broker = Broker(tmp_path / "flood-broker", extra="max_queued_messages 100000")
    broker.start()
    yield broker
    broker.stop()


@pytest.mark.slow
def test_a_flood_of_commands_gets_one_answer_each(
    flood_broker: Broker, daemons: StartDaemon, tmp_path: Path, photos: Path
) -> None:
    doc = base_config(tmp_path / "state", flood_broker.port, photos)
    config = tmp_path / "flood.toml"
    config.write_text(toml_dumps(doc))
    watcher = device_watcher(flood_broker.port, doc["device"]["id"])
    device = Device(flood_broker.port, doc["device"]["id"], watcher)
    try:
        daemons(config)
        device.wait_online()
        client = publisher(flood_broker.port)
        count, replies_to = 1000, f"replies/flood-{device.id}"
        for i in range(count):
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = replies_to
            props.CorrelationData = str(i).encode()
            client.publish(device.topic("cmd/status"), json.dumps({"request_id": f"r{i}"}), qos=1, properties=props)
        replies = watcher.wait_count(lambda m: m.topic == replies_to, count, timeout=180, what="replies to the flood")
        client.loop_stop()
        client.disconnect()
        assert {m.props.CorrelationData for m in replies} == {str(i).encode() for i in range(count)}  # one each
        busy = [m.json() for m in replies if m.json().get("busy")]
        assert all(r["ok"] is False and "busy" in r["error"]["message"] for r in busy)
        assert device.command("status")["ok"] is True  # still responsive afterwards
    finally:
        watcher.close()


def test_commands_sent_while_the_daemon_is_down_arrive_when_it_returns(
    device_for: DeviceFor, daemons: StartDaemon, broker: Broker
) -> None:
    config, _, device = device_for()
    first = daemons(config)
    device.wait_online()
    assert first.terminate() == 0
    device.watcher.clear()
    change = {"set": {"portrait": {"visitor_cooldown_s": 7.0}}, "request_id": "while-away"}
    mosquitto_pub(broker.port, device.topic("cmd/config"), json.dumps(change), "replies/away", "c1")
    daemons(config)
    reply = device.watcher.wait_for(lambda m: m.topic == "replies/away", 60, what="the reply after the restart")
    assert reply.json()["ok"] is True and reply.json()["request_id"] == "while-away"
    assert reply.json()["changed"] == ["portrait.visitor_cooldown_s"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 16 MB filesystem (tmpfs) that the test can fill up."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Write one file until the filesystem says it is full."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for chunk in (1 << 20, 4096):  # megabytes, then the last partial blocks
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return filler


@pytest.mark.slow
def test_a_full_disk_loses_no_job_and_no_event(
    device_for: DeviceFor, daemons: StartDaemon, small_disk: Path, tmp_path: Path
) -> None:
    clips = tmp_path / "clips"  # the clip itself goes elsewhere: this test is about the state folder
    config, doc, device = device_for(
        {"device": {"state_dir": str(small_disk / "state")}, "output": {"clips_dir": str(clips)}}
    )
    daemons(config)
    watcher = device.watcher
    filler: Path | None = None
    try:
        device.wait_online()
        photo = str(Path(doc["jobs"]["photo_dirs"][0]) / "astronaut.png")
        reply = device.command("animate", {"photo": photo, "seconds": 6, "fps": 10, "job_id": "full-disk-1"})
        assert reply["ok"], reply
        watcher.wait_event(60, type="job.started", job_id="full-disk-1")
        filler = fill(small_disk)
        # Refused while full, with a reason: an answer, and nothing half-stored.
        refused = device.command("animate", {"photo": photo, "seconds": 1, "job_id": "full-disk-2"})
        assert refused["ok"] is False and refused["error"]["field"] == "storage", refused
        sick = watcher.wait_for(
            lambda m: m.topic == device.topic("state") and m.json()["health"]["storage_error"] is not None,
            60,
            what="state reporting the full disk",
        )
        assert sick.json()["health"]["ok"] is False
        time.sleep(2.0)  # the job finishes rendering meanwhile; recording it must wait for space
        filler.unlink()
        filler = None
        done = watcher.wait_event(60, type="job.done", job_id="full-disk-1")
        assert Path(done["clip"]).is_file()
        assert device.command("status", {"job_id": "full-disk-1"})["job"]["state"] == "DONE"
        watcher.wait_for(
            lambda m: m.topic == device.topic("state") and m.json()["health"]["ok"] is True,
            60,
            what="state healthy again",
        )
        # The worker and the event sender are alive: the next job runs and reports.
        assert device.command("animate", {"photo": photo, "seconds": 1, "job_id": "full-disk-3"})["ok"]
        watcher.wait_event(60, type="job.done", job_id="full-disk-3")
        seqs = [e["seq"] for e in watcher.events()]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # in order, none twice
    finally:
        if filler is not None:
            filler.unlink(missing_ok=True)


def test_health_covers_every_thread(device_for: DeviceFor, daemons: StartDaemon) -> None:
    """The watchdog vouches for every thread, the outbox sender and the updater included."""
    config, _, device = device_for()
    daemons(config)
    device.wait_online()
    health = device.command("status")["state"]["health"]
    assert health["ok"] is True and set(health["threads"]) == {"worker", "commands", "outbox", "updates"}
    assert all(health["threads"].values())


def test_a_command_caught_by_a_crash_before_its_answer_is_delivered_again(
    device_for: DeviceFor, daemons: StartDaemon, broker: Broker
) -> None:
    """Commands are acknowledged to the broker only once answered: a crash in between loses none."""
    config, _, device = device_for()
    first = daemons(config, env={FAULT_ENV: "before_reply"})
    device.wait_online()
    mosquitto_pub(
        broker.port, device.topic("cmd/status"), json.dumps({"request_id": "in-flight"}), "replies/in-flight", "c2"
    )
    wait_until(lambda: not first.alive(), 30, what="the injected crash")
    assert not [m for m in device.watcher.messages if m.topic == "replies/in-flight"]  # it died unanswered
    daemons(config)
    reply = device.watcher.wait_for(lambda m: m.topic == "replies/in-flight", 60, what="the redelivered command")
    assert reply.json()["ok"] is True and reply.json()["request_id"] == "in-flight"
