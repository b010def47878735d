"""The daemon as a process on a real broker: topics, replies, commands, bad inputs, jobs.

One daemon serves this whole module (starting one costs seconds); tests that stop, kill or reconfigure
a daemon live in test_lifecycle.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.support import (
    Broker,
    Device,
    base_config,
    device_watcher,
    merge,
    mosquitto_pub,
    mosquitto_sub_one,
    serving,
    toml_dumps,
)

LONG_JOB = {"seconds": 120, "fps": 25, "size": 512}  # minutes of rendering: still running when we act


@pytest.fixture(scope="module")
def device(broker: Broker, photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Device]:
    tmp = tmp_path_factory.mktemp("served")
    doc = merge(base_config(tmp / "state", broker.port, photos), {"mqtt": {"homeassistant": {"discovery": True}}})
    config = tmp / "portrait.toml"
    config.write_text(toml_dumps(doc))
    watcher = device_watcher(broker.port, doc["device"]["id"])
    with serving(config, doc, broker.port, watcher, tmp / "daemon.log") as dev:
        yield dev


def events_for(dev: Device, job_id: str) -> list[str]:
    return [e["type"] for e in dev.watcher.events(job_id=job_id)]


def test_availability_is_retained_online(device: Device) -> None:
    assert mosquitto_sub_one(device.port, device.topic("availability")) == "online"


def test_state_is_retained_json(device: Device) -> None:
    state = json.loads(mosquitto_sub_one(device.port, device.topic("state")))
    assert state["ready"] is True and state["mode"] == "portrait"
    assert {"app_version", "model", "content_version", "config_revision"} <= state.keys()


def test_status_reply_goes_to_the_response_topic_with_correlation_data(device: Device) -> None:
    reply = device.command("status")  # Device.command checks the correlation data came back
    assert reply["ok"] is True and reply["queue"]["size"] == 10
    assert reply["state"]["device"] == device.id


def test_reply_without_response_topic_goes_to_the_reply_topic(device: Device) -> None:
    mosquitto_pub(device.port, device.topic("cmd/status"), '{"request_id": "plain-v3-client"}')
    reply = device.watcher.wait_for(
        lambda m: m.topic == device.topic("reply") and m.json().get("request_id") == "plain-v3-client"
    )
    assert reply.json()["ok"] is True


def test_group_command_is_answered(device: Device) -> None:
    assert device.command("status", group="hall")["state"]["device"] == device.id


def test_stats_are_published_periodically(device: Device) -> None:
    stats = device.watcher.wait_for(lambda m: m.topic == device.topic("stats"), 10).json()
    expected = {
        "fps",
        "frame_ms",
        "generator_ms",
        "queue_depth",
        "cpu_percent",
        "rss_bytes",
        "temperature_c",
        "disk_free_bytes",
        "dropped_frames",
    }
    assert expected <= stats.keys() and stats["rss_bytes"] > 0


def test_home_assistant_discovery_is_retained(device: Device) -> None:
    node = "portrait_" + device.id.replace("-", "_")
    button = json.loads(mosquitto_sub_one(device.port, f"homeassistant/button/{node}/capture/config"))
    sensor = json.loads(mosquitto_sub_one(device.port, f"homeassistant/sensor/{node}/fps/config"))
    assert button["command_topic"] == device.topic("cmd/capture")
    assert sensor["state_topic"] == device.topic("stats")


BAD_INPUTS = [
    pytest.param("animate", b"{not json", "payload", id="non-json"),
    pytest.param("animate", {"photo": "PHOTO", "fps": "fast"}, "fps", id="wrong-type"),
    pytest.param("explode", {}, "verb", id="unknown-verb"),
    pytest.param("status", b'{"pad": "' + b"x" * 7_000_000 + b'"}', "payload", id="oversized"),
    pytest.param("animate", {"photo": "/etc/hostname"}, "photo", id="outside-allowed-folders"),
    pytest.param("animate", {"photo": "PHOTO", "colour": "red"}, "colour", id="unknown-field"),
    pytest.param("cancel", {"job_id": "no-such-job"}, "job_id", id="unknown-job"),
]


@pytest.mark.parametrize(("verb", "payload", "field"), BAD_INPUTS)
def test_bad_input_gets_an_error_reply_and_changes_nothing(
    device: Device, photos: Path, verb: str, payload: bytes | dict, field: str
) -> None:
    if isinstance(payload, dict):
        payload = {k: str(photos / "astronaut.png") if v == "PHOTO" else v for k, v in payload.items()}
    before = device.command("status")
    reply = device.command(verb, payload)
    assert reply["ok"] is False and reply["error"]["field"] == field and reply["error"]["message"]
    after = device.command("status")  # still answering
    assert after["queue"] == before["queue"]
    assert after["state"]["config_revision"] == before["state"]["config_revision"]


def test_animate_job_reports_its_events_and_saves_the_clip(device: Device, photos: Path) -> None:
    reply = device.command("animate", {"photo": str(photos / "astronaut.png"), "seconds": 1})
    assert reply["ok"] is True and reply["state"] == "QUEUED"
    done = device.watcher.wait_event(60, type="job.done", job_id=reply["job_id"])
    kinds = events_for(device, reply["job_id"])
    assert kinds[:2] == ["job.accepted", "job.started"] and kinds[-1] == "job.done"
    assert "job.progress" in kinds
    assert done["frames"] == 10 and Path(done["clip"]).stat().st_size > 0


def test_photo_without_a_face_fails_the_job_as_bad_input(device: Device, photos: Path) -> None:
    reply = device.command("animate", {"photo": str(photos / "grey.png"), "seconds": 1})
    failed = device.watcher.wait_event(60, type="job.failed", job_id=reply["job_id"])
    assert failed["error"] == "bad_input" and failed["reason"]
    assert device.command("status")["ok"] is True


def test_repeated_job_id_runs_once(device: Device, photos: Path) -> None:
    command = {"photo": str(photos / "astronaut.png"), "seconds": 1, "job_id": "once-only"}
    first = device.command("animate", command)
    second = device.command("animate", command)  # e.g. a QoS 1 redelivery
    assert first["ok"] and second["duplicate"] is True and second["job_id"] == "once-only"
    device.watcher.wait_event(60, type="job.done", job_id="once-only")
    assert events_for(device, "once-only").count("job.accepted") == 1


def test_cancel_stops_a_running_job(device: Device, photos: Path) -> None:
    job_id = device.command("animate", {"photo": str(photos / "astronaut.png"), **LONG_JOB})["job_id"]
    device.watcher.wait_event(60, type="job.progress", job_id=job_id)
    reply = device.command("cancel", {"job_id": job_id})
    assert reply["ok"] and reply["cancel_requested"] is True
    device.watcher.wait_event(30, type="job.cancelled", job_id=job_id)
    assert device.command("status", {"job_id": job_id})["job"]["state"] == "CANCELLED"


def test_mirror_mode_without_the_live_renderer_is_refused(device: Device) -> None:
    reply = device.command("mode", {"mode": "mirror"})
    assert reply["ok"] is False and reply["error"]["field"] == "mode"
    assert device.command("status")["state"]["mode"] == "portrait"


def test_invalid_config_change_names_the_key(device: Device) -> None:
    reply = device.command("config", {"set": {"jobs": {"queue_size": "lots"}}})
    assert reply["ok"] is False and reply["error"]["field"] == "set.jobs.queue_size"


def test_config_dry_run_changes_nothing(device: Device) -> None:
    reply = device.command("config", {"set": {"portrait": {"schedule_interval_s": 60.0}}, "dry_run": True})
    assert reply["ok"] and reply["changed"] == ["portrait.schedule_interval_s"] and reply["dry_run"] is True
    assert not (device.state_dir / "config.override.json").exists()  # type: ignore[attr-defined]


def test_config_change_is_applied_and_persisted(device: Device) -> None:
    revision = device.command("status")["state"]["config_revision"]
    reply = device.command("config", {"set": {"portrait": {"visitor_cooldown_s": 12.0}}})
    assert reply["ok"] and reply["changed"] == ["portrait.visitor_cooldown_s"]
    override = json.loads((device.state_dir / "config.override.json").read_text())  # type: ignore[attr-defined]
    assert override == {"portrait": {"visitor_cooldown_s": 12.0}}
    state = json.loads(mosquitto_sub_one(device.port, device.topic("state")))
    assert state["config_revision"] == reply["revision"] != revision
    device.watcher.wait_event(10, type="config.changed", revision=reply["revision"])


def test_events_carry_increasing_sequence_numbers(device: Device) -> None:
    time.sleep(0.2)  # let any event in flight land
    seqs = [e["seq"] for e in device.watcher.events()]
    assert seqs == sorted(set(seqs)) and len(seqs) > 3
