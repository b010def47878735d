"""End to end: `mosquitto_pub` an animate command to the daemon process; the job's events arrive and
the clip on disk decodes. Uses the real renderer (device.pipeline.Animator) with the best installed
generator runtime."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import device.pipeline
from tests.service.support import Broker, DaemonProcess, Device, device_watcher, mosquitto_pub

pytestmark = pytest.mark.skipif(
    not hasattr(device.pipeline, "Animator"), reason="device.pipeline.Animator (the renderer) has not landed yet"
)


def serve_real(
    make_config: Callable[..., tuple[Path, dict[str, Any]]], daemons: Callable[..., DaemonProcess], broker: Broker
) -> Device:
    path, doc = make_config({"generator": {"backend": "auto"}, "output": {"size": 256, "fps": 25}})
    dev = Device(broker.port, doc["device"]["id"], device_watcher(broker.port, doc["device"]["id"]))
    daemons(path)
    dev.wait_online()
    return dev


def animate_and_wait(dev: Device, command: dict[str, Any]) -> dict[str, Any]:
    """Publish with the real mosquitto_pub (no response topic: the events tell the story)."""
    mosquitto_pub(dev.port, dev.topic("cmd/animate"), json.dumps(command))
    accepted = dev.watcher.wait_event(30, type="job.accepted")
    dev.watcher.wait_event(120, type="job.progress", job_id=accepted["job_id"])
    return dev.watcher.wait_for(
        lambda m: (
            m.topic.endswith("/events")
            and m.json().get("job_id") == accepted["job_id"]
            and m.json()["type"] in ("job.done", "job.failed")
        ),
        180,
        what="job end",
    ).json()


def decoded_frames(path: Path) -> tuple[int, int]:
    import av

    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
        audio = len(container.streams.audio)
    return frames, audio


def test_animate_command_renders_a_clip_that_decodes(
    make_config: Any, daemons: Any, broker: Broker, photos: Path
) -> None:
    dev = serve_real(make_config, daemons, broker)
    try:
        end = animate_and_wait(dev, {"photo": str(photos / "astronaut.png"), "seconds": 1.0})
        assert end["type"] == "job.done", end
        assert end["frames"] == 25 and end["render_fps"] > 0
        assert decoded_frames(Path(end["clip"]))[0] == 25
    finally:
        dev.watcher.close()


@pytest.mark.skipif(importlib.util.find_spec("device.motion.tts") is None, reason="TTS (device.motion.tts) not landed")
def test_animate_command_with_text_has_speech(make_config: Any, daemons: Any, broker: Broker, photos: Path) -> None:
    dev = serve_real(make_config, daemons, broker)
    try:
        end = animate_and_wait(dev, {"photo": str(photos / "astronaut.png"), "text": "Hello from the portrait."})
        assert end["type"] == "job.done", end
        frames, audio_streams = decoded_frames(Path(end["clip"]))
        assert frames == end["frames"] and audio_streams == 1
    finally:
        dev.watcher.close()
