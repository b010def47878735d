"""sd_notify: datagrams to $NOTIFY_SOCKET, path or abstract namespace."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

from device.service.notify import Notifier


def test_sends_to_a_socket_path(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(tmp_path / "notify"))
        server.settimeout(5)
        assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify")}).ready("serving")
        assert server.recv(4096) == b"READY=1\nSTATUS=serving"


def test_sends_to_an_abstract_socket() -> None:
    name = f"portrait-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(5)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).watchdog()
        assert server.recv(4096) == b"WATCHDOG=1"


def test_outside_systemd_it_does_nothing() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and not notifier.stopping()


def test_watchdog_interval_is_half_of_watchdog_sec() -> None:
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval_s == 15.0


def test_watchdog_meant_for_another_process_is_ignored() -> None:
    env = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier(env).watchdog_interval_s is None
