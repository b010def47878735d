"""The daemon's life: SIGTERM, kill -9, broker outages, systemd notifications, capture mode."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.service.support import Broker, DaemonProcess, Device, device_watcher, mosquitto_sub_one

LONG_JOB = {"seconds": 120, "fps": 25, "size": 512}  # minutes of rendering: still running when we act

MakeConfig = Callable[..., tuple[Path, dict[str, Any]]]
StartDaemon = Callable[..., DaemonProcess]


def serve(
    make_config: MakeConfig,
    daemons: StartDaemon,
    broker: Broker,
    changes: dict | None = None,
    env: dict[str, str] | None = None,
    session: bool = False,
) -> tuple[DaemonProcess, Device]:
    path, doc = make_config(changes)
    dev = Device(broker.port, doc["device"]["id"], device_watcher(broker.port, doc["device"]["id"], session))
    proc = daemons(path, env)
    dev.wait_online()
    return proc, dev


def test_sigterm_publishes_offline_and_exits_0(make_config: MakeConfig, daemons: StartDaemon, broker: Broker) -> None:
    proc, dev = serve(make_config, daemons, broker)
    try:
        assert proc.terminate() == 0
        assert mosquitto_sub_one(broker.port, dev.topic("availability")) == "offline"
    finally:
        dev.watcher.close()


def test_sigterm_checkpoints_the_running_job_for_the_next_start(
    make_config: MakeConfig, daemons: StartDaemon, broker: Broker, photos: Path
) -> None:
    proc, dev = serve(make_config, daemons, broker)
    try:
        job_id = dev.command("animate", {"photo": str(photos / "astronaut.png"), **LONG_JOB})["job_id"]
        dev.watcher.wait_event(60, type="job.progress", job_id=job_id)
        assert proc.terminate() == 0
        dev.watcher.wait_event(10, type="job.requeued", job_id=job_id, reason="shutdown")
        dev.watcher.clear()
        daemons(proc.config)
        dev.wait_online()
        # A clean stop does not use up an attempt: it starts again as attempt 1.
        dev.watcher.wait_event(60, type="job.started", job_id=job_id, attempt=1)
        assert dev.command("cancel", {"job_id": job_id})["ok"]
    finally:
        dev.watcher.close()


def test_kill_9_fires_the_last_will_and_the_restart_resumes_the_job(
    make_config: MakeConfig, daemons: StartDaemon, broker: Broker, photos: Path
) -> None:
    proc, dev = serve(make_config, daemons, broker)
    try:
        job_id = dev.command("animate", {"photo": str(photos / "astronaut.png"), **LONG_JOB})["job_id"]
        dev.watcher.wait_event(60, type="job.progress", job_id=job_id)
        proc.kill9()
        dev.watcher.wait_for(lambda m: m.topic == dev.topic("availability") and m.payload == b"offline", 15)
        dev.watcher.clear()
        daemons(proc.config)
        dev.wait_online()
        resumed = dev.watcher.wait_event(30, type="job.resumed", job_id=job_id)
        assert resumed["attempt"] == 2 and "crash" in resumed["reason"]
        dev.watcher.wait_event(60, type="job.started", job_id=job_id, attempt=2)
        assert dev.command("cancel", {"job_id": job_id})["ok"]
    finally:
        dev.watcher.close()


@pytest.mark.slow
def test_events_raised_during_a_broker_outage_arrive_in_order_once(
    make_config: MakeConfig, daemons: StartDaemon, broker: Broker, photos: Path
) -> None:
    proc, dev = serve(make_config, daemons, broker, session=True)  # the watcher's session outlives the outage
    try:
        job_id = dev.command("animate", {"photo": str(photos / "astronaut.png"), **LONG_JOB})["job_id"]
        dev.watcher.wait_event(60, type="job.progress", job_id=job_id)
        broker.stop()
        down_at = time.time()
        time.sleep(2.0)  # the render goes on; its progress events pile up in the outbox
        broker.start()
        up_at = time.time()
        # The daemon's second `online` (the first came at start): it is back and subscribed.
        dev.watcher.wait_count(
            lambda m: m.topic == dev.topic("availability") and m.payload == b"online" and not m.retain,
            2,
            30,
            what="online after the outage",
        )
        assert dev.command("cancel", {"job_id": job_id})["ok"]
        dev.watcher.wait_event(30, type="job.cancelled", job_id=job_id)
        time.sleep(0.5)  # anything repeated would arrive right behind
        events = dev.watcher.events()
        seqs = [e["seq"] for e in events]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "events lost, repeated or out of order"
        raised_offline = [e for e in events if down_at < e["ts"] < up_at]
        assert len(raised_offline) >= 3, "the test needs events raised while the broker was down"
        assert proc.alive()
    finally:
        if broker.proc is None or broker.proc.poll() is not None:
            broker.start()  # the session broker must outlive this test even if it failed mid-outage
        dev.watcher.close()


def test_systemd_hears_ready_after_warm_up_then_watchdog_then_stopping(
    make_config: MakeConfig, daemons: StartDaemon, broker: Broker, tmp_path: Path
) -> None:
    path, _ = make_config()
    address = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(address))
        server.settimeout(30)
        proc = daemons(path, {"NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "1000000"})
        received = [server.recv(4096).decode() for _ in range(3)]
        assert received[0] == "STATUS=loading models"
        assert received[1].startswith("READY=1")
        assert received[2] == "WATCHDOG=1"
        proc.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while "STOPPING=1" not in seen and time.monotonic() < deadline:
            seen.append(server.recv(4096).decode())  # bounded by the socket timeout
        assert "STOPPING=1" in seen
        assert proc.wait(30) == 0


def test_capture_command_animates_a_camera_photo(
    make_config: MakeConfig, daemons: StartDaemon, broker: Broker, photos: Path, tmp_path: Path
) -> None:
    camera = {"type": "file", "path": str(photos / "astronaut.png")}
    _, dev = serve(make_config, daemons, broker, {"mode": "capture", "camera": camera})
    try:
        reply = dev.command("capture")
        assert reply["ok"], reply
        accepted = dev.watcher.wait_event(10, type="job.accepted", job_id=reply["job_id"])
        assert accepted["priority"] == "kiosk"
        media = tmp_path / "state" / "media"
        assert f"{reply['job_id']}.png" in [p.name for p in media.iterdir()]  # the visitor's photo, kept aside
    finally:
        dev.watcher.close()


def test_mode_this_build_cannot_run_is_a_config_error(make_config: MakeConfig, daemons: StartDaemon) -> None:
    path, _ = make_config({"mode": "capture"})  # capture mode, but no [camera]
    proc = daemons(path)
    assert proc.wait(60) == 2
    assert "mode: capture mode needs a camera" in proc.log_text()
