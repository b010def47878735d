"""What a client on the broker can and cannot do to the device, in process (no broker): remote config
is an allow-list, payloads are bounded before they are decoded, and every command gets an answer."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from device.config import ConfigStore, remote_settable
from device.errors import BadInput
from device.face.photo import load_photo
from device.service.daemon import Daemon
from device.service.router import CommandInbox
from tests.service.support import toml_dumps

DEVICE = "remote-test"


@pytest.fixture
def daemon(tmp_path: Path, photos: Path) -> Iterator[Daemon]:
    doc = {
        "device": {"id": DEVICE, "state_dir": str(tmp_path / "state")},
        "mqtt": {"enabled": False},
        "jobs": {"photo_dirs": [str(photos)], "audio_dirs": [str(tmp_path / "audio")]},
        "output": {"size": 128, "fps": 10},
        "generator": {"backend": "none"},
    }
    (tmp_path / "audio").mkdir()
    path = tmp_path / "portrait.toml"
    path.write_text(toml_dumps(doc))
    daemon = Daemon(ConfigStore(path))
    yield daemon
    daemon.queue.close()
    daemon.outbox.close()


def command(daemon: Daemon, verb: str, payload: Any) -> dict[str, Any]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return daemon.handle_command(f"portrait/{DEVICE}/cmd/{verb}", raw)


def png_bomb(width: int, height: int) -> bytes:
    """A real PNG of one-bit pixels: small on disk, width*height pixels once decoded."""
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


# -- remote config: an allow-list -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"mqtt": {"port": 1884, "username": "x", "password_file": "/etc/shadow"}}, "mqtt.port"),
        ({"mqtt": {"host": "evil.example"}}, "mqtt.host"),
        ({"mqtt": {"tls": {"enabled": False}}}, "mqtt.tls.enabled"),
        ({"jobs": {"photo_dirs": ["/"]}}, "jobs.photo_dirs"),
        ({"jobs": {"audio_dirs": ["/etc"]}}, "jobs.audio_dirs"),
        ({"output": {"clips_dir": "/tmp/elsewhere"}}, "output.clips_dir"),
        ({"updates": {"max_bundle_bytes": 10**12}}, "updates.max_bundle_bytes"),
        ({"updates": {"min_free_bytes": 0}}, "updates.min_free_bytes"),
        ({"updates": {"root_key": "/tmp/attacker.pem"}}, "updates.root_key"),
        ({"device": {"id": "someone-else"}}, "device.id"),
        ({"device": {"state_dir": "/"}}, "device.state_dir"),
        ({"generator": {"backend": "onnxruntime"}}, "generator.backend"),
        ({"camera": {"type": "file", "path": "/etc/passwd"}}, "camera.type"),
        ({"portrait": {"photo": "/etc/passwd"}}, "portrait.photo"),
        ({"jobs": {"retention_hours": 10**6}}, "jobs.retention_hours"),
    ],
)
def test_remote_config_cannot_touch_broker_paths_keys_or_policy(
    daemon: Daemon, changes: dict[str, Any], key: str
) -> None:
    before = daemon.config.revision()
    reply = command(daemon, "config", {"set": changes})
    assert reply["ok"] is False and reply["error"]["field"] == f"set.{key}"
    assert "only in the local config file" in reply["error"]["message"]
    assert daemon.config.revision() == before
    assert not (daemon.config.device.state_dir / "config.override.json").exists()


def test_a_forbidden_key_beside_allowed_ones_refuses_the_whole_change(daemon: Daemon) -> None:
    reply = command(daemon, "config", {"set": {"mode": "capture", "mqtt": {"port": 1884}}})
    assert reply["ok"] is False and reply["error"]["field"] == "set.mqtt.port"
    assert daemon.config.mode == "portrait"


def test_remote_config_changes_content_schedule_and_display(daemon: Daemon) -> None:
    changes = {
        "portrait": {"playlist": [{"text": "Welcome to the museum."}], "schedule_interval_s": 60.0},
        "output": {"display": "off", "fps": 20},
    }
    reply = command(daemon, "config", {"set": changes})
    assert reply["ok"], reply
    assert daemon.config.portrait.playlist[0].text == "Welcome to the museum." and daemon.config.output.fps == 20


def test_a_remote_playlist_may_only_name_audio_in_the_audio_folders(daemon: Daemon, tmp_path: Path) -> None:
    outside = {"portrait": {"playlist": [{"audio": "/etc/passwd"}]}}
    reply = command(daemon, "config", {"set": outside})
    assert reply["ok"] is False and reply["error"]["field"] == "set.portrait.playlist.0.audio"
    inside = tmp_path / "audio" / "hello.wav"
    inside.write_bytes(b"RIFF")
    assert command(daemon, "config", {"set": {"portrait": {"playlist": [{"audio": str(inside)}]}}})["ok"]


def test_an_override_file_holding_locked_keys_is_ignored_at_start(tmp_path: Path, photos: Path) -> None:
    """An override written by an older release that accepted any key must not keep the takeover alive."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "config.override.json").write_text(json.dumps({"mqtt": {"port": 1884}, "mode": "capture"}))
    path = tmp_path / "portrait.toml"
    path.write_text(toml_dumps({"device": {"id": DEVICE, "state_dir": str(state)}, "mqtt": {"port": 1883}}))
    store = ConfigStore(path)
    assert store.config.mqtt.port == 1883 and store.config.mode == "portrait"
    assert store.override_error is not None and "mqtt.port" in store.override_error


def test_the_allow_list_is_what_the_docs_promise() -> None:
    for key in ("mode", "portrait.playlist", "portrait.schedule_interval_s", "capture.line.text", "output.display"):
        assert remote_settable(key), key
    for key in ("mqtt.port", "mqtt.password_file", "jobs.photo_dirs", "updates.root_key", "device.state_dir"):
        assert not remote_settable(key), key


# -- decompression bombs: dimensions checked from the header --------------------------------------


def test_an_inline_decompression_bomb_is_refused_before_decoding(daemon: Daemon) -> None:
    bomb = png_bomb(15000, 15000)
    assert len(bomb) < 200_000  # the attack: small on the wire, 225 megapixels decoded
    reply = command(daemon, "animate", {"photo_b64": base64.b64encode(bomb).decode(), "text": "hi"})
    assert reply["ok"] is False and reply["error"]["field"] == "photo_b64"
    assert "15000x15000" in reply["error"]["message"] and "jobs.max_photo_pixels" in reply["error"]["message"]
    assert daemon.queue.depth() == 0


def test_a_bomb_in_the_photo_folder_is_refused_by_the_command(daemon: Daemon, photos: Path) -> None:
    path = photos / "bomb.png"
    path.write_bytes(png_bomb(9000, 9000))
    try:
        reply = command(daemon, "animate", {"photo": str(path), "text": "hi"})
    finally:
        path.unlink()
    assert reply["ok"] is False and reply["error"]["field"] == "photo" and "81 megapixels" in reply["error"]["message"]


def test_load_photo_refuses_a_bomb_file_by_its_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bomb(9000, 9000))
    with pytest.raises(BadInput, match=r"bomb.png: 9000x9000 is 81 megapixels, over the limit of 40"):
        load_photo(path)
    with pytest.raises(BadInput, match="over the limit of 1"):
        load_photo(path, max_pixels=1_000_000)


# -- payload bounds -------------------------------------------------------------------------------


def test_deeply_nested_json_is_bad_input_not_an_internal_error(daemon: Daemon) -> None:
    payload = b'{"set": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    reply = command(daemon, "config", payload)
    assert reply["ok"] is False and reply["error"] == {"field": "payload", "message": "nests deeper than 16 levels"}


def test_brackets_inside_strings_do_not_count_as_nesting(daemon: Daemon) -> None:
    reply = command(daemon, "status", {"request_id": "r1", "job_id": "no-such-job", "sent": None})
    assert reply["error"]["field"] == "job_id" and reply["request_id"] == "r1"
    reply = command(daemon, "animate", {"photo": "/nowhere.png", "text": "[[[[{{{{" * 10})
    assert reply["error"]["field"] == "photo"  # got past the nesting bound to the field checks


def test_a_huge_request_id_is_refused_and_not_echoed(daemon: Daemon) -> None:
    reply = command(daemon, "status", {"request_id": "x" * 100_000})
    assert reply["ok"] is False and reply["error"]["field"] == "request_id" and "request_id" not in reply
    assert len(json.dumps(reply)) < 1000


def test_a_bad_command_with_a_huge_request_id_does_not_echo_it(daemon: Daemon) -> None:
    reply = command(daemon, "status", {"request_id": "x" * 100_000, "verbose": True})
    assert reply["ok"] is False and "request_id" not in reply


def test_a_stale_command_is_refused(daemon: Daemon) -> None:
    reply = command(daemon, "status", {"sent": time.time() - 7200})
    assert reply["ok"] is False and reply["error"]["field"] == "sent" and "stale" in reply["error"]["message"]
    assert command(daemon, "status", {"sent": time.time() - 5})["ok"]


def test_plaintext_without_credentials_is_warned_about_in_state(tmp_path: Path) -> None:
    path = tmp_path / "portrait.toml"
    path.write_text(toml_dumps({"device": {"id": DEVICE, "state_dir": str(tmp_path / "s")}, "mqtt": {"port": 1883}}))
    daemon = Daemon(ConfigStore(path))
    try:
        warnings = daemon.state_doc()["security_warnings"]
    finally:
        daemon.queue.close()
        daemon.outbox.close()
    assert any("plaintext" in w for w in warnings) and any("no credentials" in w for w in warnings)


# -- the inbox: every command gets an answer ------------------------------------------------------


def test_a_full_inbox_answers_busy_instead_of_dropping() -> None:
    replies: list[dict[str, Any]] = []
    acks: list[int] = []
    release = threading.Event()

    def slow(topic: str, payload: bytes) -> dict[str, Any]:
        release.wait(5)
        return {"ok": True}

    inbox = CommandInbox(slow, lambda props, reply: replies.append(reply), max_commands=5)
    stop = threading.Event()
    thread = threading.Thread(target=inbox.serve, args=(stop,), daemon=True)
    thread.start()
    for i in range(50):
        inbox.offer(
            "portrait/d/cmd/status", json.dumps({"request_id": f"r{i}"}).encode(), None, lambda i=i: acks.append(i)
        )
    busy = [r for r in replies if r.get("busy")]
    assert len(busy) >= 44 and all(r["ok"] is False and r["request_id"].startswith("r") for r in busy)
    release.set()
    deadline = time.monotonic() + 10
    while len(replies) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(5)
    assert len(replies) == 50 and sorted(acks) == list(range(50))  # every command answered, every one acked


def test_the_inbox_bounds_bytes_as_well_as_count() -> None:
    replies: list[dict[str, Any]] = []
    inbox = CommandInbox(
        lambda t, p: {"ok": True}, lambda props, reply: replies.append(reply), max_commands=100, max_bytes=10_000
    )
    assert inbox.offer("portrait/d/cmd/animate", b"x" * 6000, None)
    assert not inbox.offer("portrait/d/cmd/animate", b"x" * 6000, None)
    assert replies and replies[0]["busy"] is True and inbox.depth() == 1
