"""Home Assistant as its users see the device: the discovery configs read back from a real Mosquitto,
and every entity driven the way Home Assistant drives it (plain option strings, an empty button press),
against one daemon with a file camera that shows a face, then no face, in turn."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from device.service.mqtt import CAPTURE_STATES, JOB_STATES, SNAPSHOT_MAX_BYTES
from tests.service.support import (
    Broker,
    Device,
    Message,
    Watcher,
    base_config,
    device_watcher,
    merge,
    mosquitto_pub,
    mosquitto_sub_one,
    serving,
    toml_dumps,
    wait_until,
)

HA = "homeassistant"
STATS_KEYS = [
    "fps",
    "frame_ms_p95",
    "generator_ms_p95",
    "queue_depth",
    "cpu_percent",
    "rss_bytes",
    "temperature_c",
    "disk_free_bytes",
    "dropped_frames",
]
ENTITIES = {  # component/key -> what it is
    **{f"sensor/{key}": "stats" for key in STATS_KEYS},
    "sensor/job": "job",
    "sensor/last_capture": "capture",
    "button/capture": "capture button",
    "select/mode": "mode",
    "image/snapshot": "snapshot",
    "binary_sensor/visitor": "visitor",
}


@pytest.fixture(scope="module")
def camera_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file camera: a second of a face, then a second of a grey wall, looping (at 10 fps)."""
    from skimage import data

    folder = tmp_path_factory.mktemp("camera")
    face = cv2.resize(cv2.cvtColor(np.ascontiguousarray(data.astronaut()), cv2.COLOR_RGB2BGR), (256, 256))
    cv2.imwrite(str(folder / "a00.png"), face)
    cv2.imwrite(str(folder / "b00.png"), np.full((256, 256, 3), 128, np.uint8))
    for i in range(1, 10):
        os.link(folder / "a00.png", folder / f"a{i:02d}.png")
        os.link(folder / "b00.png", folder / f"b{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def device(
    broker: Broker, photos: Path, camera_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Device]:
    tmp = tmp_path_factory.mktemp("ha")
    doc = merge(
        base_config(tmp / "state", broker.port, photos),
        {
            "mqtt": {"homeassistant": {"discovery": True}},
            "camera": {"type": "file", "path": str(camera_folder), "fps": 10.0},
            "portrait": {"visitor_frames": 3},
            "capture": {"line": {"text": "Hi."}},
        },
    )
    config = tmp / "portrait.toml"
    config.write_text(toml_dumps(doc))
    watcher = Watcher(broker.port, [f"portrait/{doc['device']['id']}/#", "replies/#", f"{HA}/#"])
    with serving(config, doc, broker.port, watcher, tmp / "daemon.log") as dev:
        yield dev


def node(dev: Device) -> str:
    return "portrait_" + dev.id.replace("-", "_")


def configs(dev: Device, count: int = len(ENTITIES)) -> dict[str, dict[str, Any]]:
    """The retained discovery configs, "component/key" -> config, as Home Assistant starting reads them."""
    fresh = Watcher(dev.port, [f"{HA}/+/{node(dev)}/+/config"])
    try:
        fresh.wait_count(lambda m: bool(m.payload), count, what="discovery configs")
        time.sleep(0.3)  # any config beyond the expected ones would arrive with them
        found = [m for m in fresh.messages if m.payload]
    finally:
        fresh.close()
    assert all(m.retain for m in found)
    return {"/".join(m.topic.split("/")[1:4:2]): m.json() for m in found}


def after(dev: Device, start: int, predicate: Any, timeout: float, what: str) -> Message:
    """The first message since the watcher had `start` messages that matches."""
    return wait_until(lambda: next((m for m in dev.watcher.messages[start:] if predicate(m)), None), timeout, what=what)


def retained(dev: Device, topic: str) -> bytes:
    """The retained message on a topic, as a subscriber arriving now gets it."""
    fresh = Watcher(dev.port, [topic])
    try:
        return fresh.wait_for(lambda m: m.topic == topic and m.retain, 10, what=f"retained {topic}").payload
    finally:
        fresh.close()


def reply_to(dev: Device, since: int, verb: str) -> dict[str, Any]:
    """A reply on portrait/<id>/reply (where a command without a response topic, as HA sends, is answered)."""
    return after(
        dev, since, lambda m: m.topic == dev.topic("reply") and m.json()["verb"] == verb, 15, f"reply to {verb}"
    ).json()


def render(template: str, payload: bytes) -> str:
    """A value_template as Home Assistant renders it (Jinja2 with `value_json`)."""
    import jinja2  # Home Assistant's template engine (installed with the dev extras)

    return jinja2.Environment().from_string(template).render(value_json=json.loads(payload))


def test_discovery_declares_every_entity_with_device_origin_and_availability(device: Device) -> None:
    found = configs(device)
    assert set(found) == set(ENTITIES)
    unique_ids = [config["unique_id"] for config in found.values()]
    assert len(set(unique_ids)) == len(unique_ids) and all(u.startswith(node(device)) for u in unique_ids)
    for key, config in found.items():
        assert config["availability_topic"] == device.topic("availability"), key
        assert config["device"]["identifiers"] == [node(device)], key
        assert config["origin"]["name"] == "talking-portrait" and config["origin"]["sw_version"], key
        topics = [
            config[k] for k in ("state_topic", "command_topic", "image_topic", "json_attributes_topic") if k in config
        ]
        assert topics and all(t.startswith(f"portrait/{device.id}/") for t in topics), key
    for key in STATS_KEYS:
        assert found[f"sensor/{key}"]["entity_category"] == "diagnostic"
        assert found[f"sensor/{key}"]["state_topic"] == device.topic("stats")
    assert "entity_category" not in found["sensor/job"]  # what the device does, not its health
    assert found["select/mode"]["options"] == ["portrait", "capture", "mirror"]  # camera + live stage + photo
    assert found["select/mode"]["command_topic"] == device.topic("cmd/mode")
    assert found["image/snapshot"]["content_type"] == "image/jpeg"
    assert found["sensor/job"]["options"] == list(JOB_STATES)
    assert found["sensor/last_capture"]["options"] == list(CAPTURE_STATES)


def test_state_topics_are_retained_so_sensors_survive_a_home_assistant_restart(device: Device) -> None:
    found = configs(device)
    stats = retained(device, device.topic("stats"))
    for key in STATS_KEYS:
        value = render(found[f"sensor/{key}"]["value_template"], stats)
        assert value == "None" or float(value) >= 0, (key, value)  # "None" is how HA hears "unknown"
    state = retained(device, device.topic("state"))
    assert render(found["select/mode"]["value_template"], state) in found["select/mode"]["options"]
    job = retained(device, device.topic("job"))
    assert render(found["sensor/job"]["value_template"], job) in JOB_STATES
    assert retained(device, device.topic("visitor")) in (b"ON", b"OFF")


@pytest.mark.slow
def test_visitor_binary_sensor_follows_the_face_in_front_of_the_camera(device: Device) -> None:
    topic = configs(device)["binary_sensor/visitor"]["state_topic"]
    start = len(device.watcher.messages)

    on = after(device, start, lambda m: m.topic == topic and m.payload == b"ON", 20, "visitor ON")
    later = device.watcher.messages.index(on)
    after(device, later, lambda m: m.topic == topic and m.payload == b"OFF", 20, "visitor OFF after ON")
    assert retained(device, topic) in (b"ON", b"OFF")


def test_capture_button_refused_in_portrait_mode_reports_why(device: Device) -> None:
    button = configs(device)["button/capture"]
    capture_topic = configs(device)["sensor/last_capture"]["state_topic"]
    assert device.command("mode", {"mode": "portrait"})["ok"] is True
    start = len(device.watcher.messages)
    mosquitto_pub(device.port, button["command_topic"], button["payload_press"])  # as Home Assistant presses it
    report = after(device, start, lambda m: m.topic == capture_topic, 15, "capture report").json()
    assert report["state"] == "refused" and report["field"] == "mode" and "capture mode" in report["reason"]
    assert reply_to(device, start, "capture")["ok"] is False


def test_select_sends_a_plain_string_that_switches_the_mode(device: Device) -> None:
    select = configs(device)["select/mode"]
    assert device.command("mode", {"mode": "portrait"})["ok"] is True
    start = len(device.watcher.messages)
    mosquitto_pub(device.port, select["command_topic"], "capture")  # no JSON: what HA's select publishes
    assert reply_to(device, start, "mode")["ok"] is True
    wait_until(
        lambda: render(select["value_template"], retained(device, select["state_topic"])) == "capture",
        10,
        what="state.mode == capture",
    )

    start = len(device.watcher.messages)
    mosquitto_pub(device.port, select["command_topic"], "disco")
    refused = reply_to(device, start, "mode")
    assert refused["ok"] is False and refused["error"]["field"] == "mode"
    assert json.loads(retained(device, device.topic("state")))["mode"] == "capture"  # nothing changed


@pytest.mark.slow
def test_capture_button_in_capture_mode_reports_the_job_it_made(device: Device) -> None:
    button = configs(device)["button/capture"]
    capture_topic = configs(device)["sensor/last_capture"]["state_topic"]
    assert device.command("mode", {"mode": "capture"})["ok"] is True
    start = len(device.watcher.messages)
    mosquitto_pub(device.port, button["command_topic"], button["payload_press"])
    final = after(
        device,
        start,
        lambda m: m.topic == capture_topic and m.json()["state"] in ("done", "failed"),
        90,
        "capture outcome",
    ).json()
    job_id = final["job_id"]
    # The camera shows a face or a wall at the moment of capture: either way the report says how it ended.
    event = device.watcher.wait_event(10, job_id=job_id, type=f"job.{final['state']}")
    assert final.get("reason") == event.get("reason") and final["source"] == "command"
    assert json.loads(retained(device, capture_topic))["job_id"] == job_id
    device.command("mode", {"mode": "portrait"})


@pytest.mark.slow
def test_snapshot_of_the_last_clip_is_a_bounded_jpeg_of_its_frame(device: Device, photos: Path) -> None:
    image_topic = configs(device)["image/snapshot"]["image_topic"]
    job_topic = configs(device)["sensor/job"]["state_topic"]
    start = len(device.watcher.messages)
    job_id = device.command("animate", {"photo": str(photos / "astronaut.png"), "seconds": 1})["job_id"]
    done = device.watcher.wait_event(60, type="job.done", job_id=job_id)
    snapshot = after(device, start, lambda m: m.topic == image_topic, 15, "snapshot").payload
    assert snapshot[:3] == b"\xff\xd8\xff" and len(snapshot) <= SNAPSHOT_MAX_BYTES
    picture = cv2.imdecode(np.frombuffer(snapshot, np.uint8), cv2.IMREAD_COLOR)
    from device.media.video import read_frames

    frames = list(read_frames(done["clip"]))
    assert picture.shape == frames[0].shape  # 128x128: small clips are not scaled
    difference = [float(np.abs(picture[..., ::-1].astype(int) - f.astype(int)).mean()) for f in frames]
    assert min(difference) < 4.0  # it is one of the clip's frames (JPEG costs a little)
    assert retained(device, image_topic) == snapshot

    states = [m.json() for m in device.watcher.messages[start:] if m.topic == job_topic]
    mine = [s["state"] for s in states if s["job_id"] == job_id]
    assert mine[0] in ("queued", "running") and "running" in mine and mine[-1] == "done"
    assert json.loads(retained(device, job_topic)) == states[-1]


BAD_SPEECH = [
    pytest.param("animate", {"photo": "PHOTO", "text": "Hallo", "lang": "xx-nowhere"}, "lang", id="animate-lang"),
    pytest.param("animate", {"photo": "PHOTO", "text": "Hallo", "lang": "dee"}, "lang", id="animate-lang-typo"),
    pytest.param("say", {"text": "Hallo", "lang": "zz"}, "lang", id="say-lang"),
    pytest.param("capture", {"text": "Hallo", "lang": "qq"}, "lang", id="capture-lang"),
    pytest.param("animate", {"photo": "PHOTO", "text": "Hallo", "voice": "robot9"}, "voice", id="animate-voice"),
]


@pytest.mark.parametrize(("verb", "payload", "field"), BAD_SPEECH)
def test_a_language_espeak_lacks_is_refused_at_once_not_failed_as_a_job(
    device: Device, photos: Path, verb: str, payload: dict[str, Any], field: str
) -> None:
    payload = {k: str(photos / "astronaut.png") if v == "PHOTO" else v for k, v in payload.items()}
    before = device.command("status")["queue"]
    start = len(device.watcher.messages)
    began = time.monotonic()
    reply = device.command(verb, payload)
    assert time.monotonic() - began < 5.0
    assert reply["ok"] is False and reply["error"]["field"] == field
    assert "eSpeak NG" in reply["error"]["message"] and repr(payload[field]) in reply["error"]["message"]
    assert device.command("status")["queue"] == before
    accepted = [
        m for m in device.watcher.messages[start:] if m.topic.endswith("/events") and m.json()["type"] == "job.accepted"
    ]
    assert accepted == []


def test_a_known_language_is_accepted(device: Device, photos: Path) -> None:
    reply = device.command("animate", {"photo": str(photos / "astronaut.png"), "text": "Hallo.", "lang": "de"})
    assert reply["ok"] is True
    device.watcher.wait_event(60, type="job.done", job_id=reply["job_id"])


def test_turning_discovery_off_removes_the_entities_and_on_brings_them_back(device: Device) -> None:
    topic = f"{HA}/select/{node(device)}/mode/config"
    start = len(device.watcher.messages)
    assert device.command("config", {"set": {"mqtt": {"homeassistant": {"discovery": False}}}})["ok"] is True
    after(device, start, lambda m: m.topic == topic and m.payload == b"", 10, "empty config (entity removed)")
    assert mosquitto_sub_one(device.port, topic, timeout=1) == ""  # nothing retained for a newcomer
    assert device.command("config", {"set": {"mqtt": {"homeassistant": {"discovery": True}}}})["ok"] is True
    assert set(configs(device)) == set(ENTITIES)


def test_without_a_camera_there_is_no_visitor_sensor(make_config, daemons, broker: Broker) -> None:
    path, doc = make_config({"mqtt": {"homeassistant": {"discovery": True}}})
    dev = Device(broker.port, doc["device"]["id"], device_watcher(broker.port, doc["device"]["id"]))
    try:
        daemons(path)
        dev.wait_online()
        found = configs(dev, len(ENTITIES) - 1)
        assert set(found) == set(ENTITIES) - {"binary_sensor/visitor"}
        assert found["select/mode"]["options"] == ["portrait"]  # capture and mirror need a camera: not offered
    finally:
        dev.watcher.close()


def test_job_and_visitor_topics_follow_events_in_any_thread_order(broker: Broker) -> None:
    """The status topics on their own, on the real broker: a job never shows an older state than it has
    reached, a second job waits its turn, and the visitor sensor ignores a one-frame flicker."""
    import uuid

    from device.config import MqttSection
    from device.service.mqtt import MqttLink, StatusTopics, Topics

    topics = Topics("portrait", f"unit-{uuid.uuid4().hex[:8]}")
    link = MqttLink(
        MqttSection(host="127.0.0.1", port=broker.port, session_expiry_s=0),
        topics,
        on_message=lambda topic, payload, props, ack: ack(),
    )
    status = StatusTopics(topics, visitor_frames=lambda: 3, snapshot_expiry_s=lambda clip: None, camera=True)
    status.link = link
    link.start()
    watcher = Watcher(broker.port, [f"portrait/{topics.device_id}/#"])
    try:
        wait_until(link.connected.is_set, 10, what="connected")
        status.publish_all()

        def job(**expected: Any) -> dict[str, Any]:
            """The job topic once its latest message (in publish order) says `expected`."""

            def latest() -> dict[str, Any] | None:
                docs = [m.json() for m in watcher.messages if m.topic == topics.job]
                return docs[-1] if docs and all(docs[-1].get(k) == v for k, v in expected.items()) else None

            return wait_until(latest, 10, what=f"job topic {expected}")

        job(state="idle")
        status.on_event("job.started", {"job_id": "a", "attempt": 1})
        status.on_event("job.accepted", {"job_id": "a"})  # the command thread, later than the worker
        status.on_event("job.accepted", {"job_id": "b"})  # a second job: waits behind the first
        status.on_event("job.progress", {"job_id": "a", "done": 5, "total": 10})
        assert job(progress=50.0) | {"ts": 0} == {"state": "running", "job_id": "a", "progress": 50.0, "ts": 0}
        assert [d["state"] for d in (m.json() for m in watcher.messages if m.topic == topics.job)] == [
            "idle",
            "running",
            "running",
        ]  # neither late `accepted` was shown
        status.on_event("job.done", {"job_id": "a", "frames": 10, "seconds": 1.0})
        assert job(state="done")["frames"] == 10
        status.on_event("job.started", {"job_id": "b", "attempt": 1})
        status.on_event("job.failed", {"job_id": "b", "error": "bad_input", "reason": "photo: no face found"})
        assert job(job_id="b", state="failed")["reason"] == "photo: no face found"
        assert json.loads(retained_from(broker, topics.job))["state"] == "failed"
        assert retained_from(broker, topics.visitor) == b"OFF"

        visitor = [m.payload for m in watcher.messages if m.topic == topics.visitor]
        for present in (True, True, False, True, True, True, False, True, False, False, False):
            status.face_seen(present)
        time.sleep(0.5)
        visitor = [m.payload for m in watcher.messages if m.topic == topics.visitor][len(visitor) :]
        assert visitor == [b"ON", b"OFF"]  # 3 in a row each way; the single frames between change nothing
    finally:
        watcher.close()
        link.stop()


def retained_from(broker: Broker, topic: str) -> bytes:
    fresh = Watcher(broker.port, [topic])
    try:
        return fresh.wait_for(lambda m: m.topic == topic and m.retain, 10, what=f"retained {topic}").payload
    finally:
        fresh.close()
