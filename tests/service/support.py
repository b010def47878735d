"""Real parts for the service tests: a Mosquitto broker, an MQTT watcher, the daemon as a process."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

REPO = Path(__file__).resolve().parents[2]
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Broker:
    """A real Mosquitto on a free loopback port, with a temporary config; stop/start keep the port."""

    def __init__(self, workdir: Path, extra: str = "", port: int | None = None, anonymous: bool = True) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # As root, mosquitto drops to its `user`: run it as whoever we are, so it can read our files.
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"user {getpass.getuser()}\n"
            f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'true' if anonymous else 'false'}\n"
            "persistence true\n"  # sessions and queued messages survive the restart in the outage test
            f"persistence_location {workdir}/\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            f"{extra}\n"
        )
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            with socket.socket() as sock:
                sock.settimeout(0.2)
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(listening, timeout, what=f"mosquitto on port {self.port}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file, then exits
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool
    props: Any

    def json(self) -> Any:
        return json.loads(self.payload)


class Watcher:
    """A paho subscriber that records what arrives. With `session=True` its subscription survives a
    broker restart (persistent session), so nothing published meanwhile is missed."""

    def __init__(
        self,
        port: int,
        topics: list[str],
        session: bool = False,
        timeout: float = 10.0,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
    ) -> None:
        self.messages: list[Message] = []
        self._cond = threading.Condition()
        client_id = f"watcher-{os.getpid()}-{time.monotonic_ns()}"
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        # Subscribe unless the broker kept our session (then re-subscribing would replay retained messages).
        self.client.on_connect = lambda client, userdata, flags, rc, props: (
            None if flags.session_present else client.subscribe([(t, 1) for t in topics])
        )
        self.client.reconnect_delay_set(0.1, 0.5)
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_file is not None:
            self.client.tls_set(ca_certs=str(ca_file))
        props = Properties(PacketTypes.CONNECT)
        if session:
            props.SessionExpiryInterval = 600
        self.client.connect("127.0.0.1", port, keepalive=10, properties=props)
        self.client.loop_start()
        if not subscribed.wait(timeout):
            raise TimeoutError("watcher did not get its SUBACK")

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Message(msg.topic, msg.payload, msg.retain, msg.properties))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 10.0, what: str = "message") -> Message:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for msg in self.messages:
                    if predicate(msg):
                        return msg
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(m.topic, m.payload[:200]) for m in self.messages[-10:]]
                    raise TimeoutError(f"timed out after {timeout} s waiting for {what}; last seen: {seen}")
                self._cond.wait(left)

    def wait_count(
        self, predicate: Callable[[Message], bool], count: int, timeout: float = 10.0, what: str = "messages"
    ) -> list[Message]:
        """Wait until `count` messages match; returns them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in self.messages if predicate(m)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout} s waiting for {count} {what}; got {len(found)}")
                self._cond.wait(left)

    def clear(self) -> None:
        """Forget what arrived so far: waits then match only what comes next."""
        with self._cond:
            self.messages.clear()

    def events(self, **match: Any) -> list[dict[str, Any]]:
        with self._cond:
            docs = [m.json() for m in self.messages if m.topic.endswith("/events")]
        return [d for d in docs if all(d.get(k) == v for k, v in match.items())]

    def wait_event(self, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        def matches(msg: Message) -> bool:
            if not msg.topic.endswith("/events"):
                return False
            doc = msg.json()
            return all(doc.get(k) == v for k, v in match.items())

        return self.wait_for(matches, timeout, what=f"event {match}").json()

    def close(self) -> None:
        self.client.loop_stop()
        with contextlib.suppress(Exception):
            self.client.disconnect()


def mosquitto_pub(
    port: int,
    topic: str,
    payload: bytes | str,
    response_topic: str | None = None,
    correlation: str | None = None,
) -> None:
    """Publish with the real Mosquitto client (MQTT v5, QoS 1); the payload goes in on stdin."""
    cmd = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-V", "5", "-q", "1", "-t", topic, "-s"]
    if response_topic:
        cmd += ["-D", "publish", "response-topic", response_topic]
    if correlation:
        cmd += ["-D", "publish", "correlation-data", correlation]
    data = payload.encode() if isinstance(payload, str) else payload
    subprocess.run(cmd, input=data, check=True, timeout=15, capture_output=True)


def mosquitto_sub_one(port: int, topic: str, timeout: int = 10) -> str:
    """The first message on a topic (a retained one arrives at once), read by the real Mosquitto client."""
    out = subprocess.run(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-V", "5", "-t", topic, "-C", "1", "-W", str(timeout)],
        capture_output=True,
        text=True,
        timeout=timeout + 5,
    )
    return out.stdout.strip()


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


def toml_dumps(doc: dict[str, Any], prefix: str = "") -> str:
    """Enough TOML for test configs: scalars and lists first, then sub-tables."""
    lines = [f"{k} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    text = "\n".join(lines) + "\n"
    for key, value in doc.items():
        if isinstance(value, dict):
            name = f"{prefix}{key}"
            text += f"\n[{name}]\n" + toml_dumps(value, f"{name}.")
    return text


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class DaemonProcess:
    """`python -m device.service --config FILE` as a child process, its stderr in a log file."""

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log = log
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "device.service", "--config", str(self.config)],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=log,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def cleanup(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)


class Device:
    """Talks to one running daemon the way an operator would: mosquitto_pub in, replies and events out."""

    def __init__(self, port: int, device_id: str, watcher: Watcher) -> None:
        self.port = port
        self.id = device_id
        self.watcher = watcher  # must subscribe to portrait/<id>/# and replies/#

    def topic(self, leaf: str) -> str:
        return f"portrait/{self.id}/{leaf}"

    def command(
        self, verb: str, payload: Any = None, timeout: float = 15.0, group: str | None = None
    ) -> dict[str, Any]:
        """Send a command with a v5 response topic and correlation data; the reply, checked to match."""
        token = uuid.uuid4().hex
        response_topic = f"replies/{token}"
        raw = payload if isinstance(payload, bytes | str) else json.dumps(payload or {})
        topic = f"portrait/group/{group}/cmd/{verb}" if group else self.topic(f"cmd/{verb}")
        mosquitto_pub(self.port, topic, raw, response_topic, token)
        reply = self.watcher.wait_for(lambda m: m.topic == response_topic, timeout, what=f"reply to {verb}")
        assert reply.props.CorrelationData == token.encode()
        return reply.json()

    def wait_online(self, timeout: float = 60.0) -> None:
        """Connected (`online`) and warmed up (`state` says ready): it takes commands from now on."""
        self.watcher.wait_for(
            lambda m: m.topic == self.topic("availability") and m.payload == b"online", timeout, what="online"
        )
        self.watcher.wait_for(
            lambda m: m.topic == self.topic("state") and m.json()["ready"] is True, timeout, what="ready"
        )


def device_watcher(port: int, device_id: str, session: bool = False) -> Watcher:
    return Watcher(port, [f"portrait/{device_id}/#", "replies/#"], session=session)


def base_config(state_dir: Path, port: int, photos: Path) -> dict[str, Any]:
    return {
        "mode": "portrait",
        "device": {"id": f"test-{uuid.uuid4().hex[:8]}", "groups": ["hall"], "state_dir": str(state_dir)},
        "mqtt": {
            "host": "127.0.0.1",
            "port": port,
            "keepalive_s": 5,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
            "stats_interval_s": 1.0,
        },
        "jobs": {"photo_dirs": [str(photos)], "progress_interval_s": 0.1, "queue_size": 10},
        "output": {"fps": 10, "size": 128},
        "portrait": {"photo": str(photos / "astronaut.png")},
        "generator": {"backend": "none"},  # warp only: the service tests are about plumbing, not quality
    }


@contextlib.contextmanager
def serving(config: Path, doc: dict[str, Any], port: int, watcher: Watcher, log: Path) -> Iterator[Device]:
    """A daemon process for `config`, online and ready; it must stop cleanly (exit 0) at the end."""
    proc = DaemonProcess(config, log).start()
    dev = Device(port, doc["device"]["id"], watcher)
    dev.config_path, dev.state_dir, dev.proc = config, Path(doc["device"]["state_dir"]), proc  # type: ignore[attr-defined]
    try:
        dev.wait_online()
        yield dev
        assert proc.terminate() == 0
    finally:
        proc.cleanup()
        watcher.close()
