"""The kiosk screen for real: the daemon opens its window on an X server (Xvfb), and a key press on
the kiosk keyboard in capture mode takes the visitor's photo, as the MQTT `capture` command does."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.service.support import Device, device_watcher, wait_until

pytestmark = pytest.mark.skipif(
    not (shutil.which("Xvfb") and shutil.which("xdotool")), reason="needs Xvfb and xdotool (make test installs them)"
)


@pytest.fixture
def x_display() -> Iterator[str]:
    for number in range(90, 110):
        if not os.path.exists(f"/tmp/.X11-unix/X{number}") and not os.path.exists(f"/tmp/.X{number}-lock"):
            break
    display = f":{number}"
    server = subprocess.Popen(["Xvfb", display, "-screen", "0", "800x600x24"], stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: os.path.exists(f"/tmp/.X11-unix/X{number}"), 10, what="Xvfb")
        yield display
    finally:
        server.terminate()
        server.wait(10)


def portrait_window(display: str) -> str | None:
    result = subprocess.run(
        ["xdotool", "search", "--name", "^portrait$"],
        capture_output=True,
        text=True,
        env={**os.environ, "DISPLAY": display},
    )
    ids = result.stdout.split()
    return ids[0] if ids else None


@pytest.mark.slow
def test_key_press_on_the_kiosk_captures(broker, make_config, daemons, photos, x_display) -> None:
    visitor = photos / "astronaut.png"
    path, doc = make_config(
        {
            "mode": "capture",
            "camera": {"type": "file", "path": str(visitor), "fps": 10},
            "output": {"display": "window", "size": 128, "fps": 10},
        }
    )
    watcher = device_watcher(broker.port, doc["device"]["id"])
    try:
        proc = daemons(path, env={"DISPLAY": x_display})
        device = Device(broker.port, doc["device"]["id"], watcher)
        device.wait_online()
        window = wait_until(lambda: portrait_window(x_display), 30, what="the kiosk window")
        time.sleep(0.5)  # let the preview loop poll the keyboard
        subprocess.run(
            ["xdotool", "key", "--window", window, "space"], env={**os.environ, "DISPLAY": x_display}, check=True
        )
        triggered = watcher.wait_for(
            lambda m: m.topic == device.topic("events") and m.json().get("type") == "capture.triggered",
            30,
            what="capture.triggered",
        ).json()
        job_id = triggered["job_id"]
        done = watcher.wait_for(
            lambda m: (
                m.topic == device.topic("events")
                and m.json().get("job_id") == job_id
                and m.json().get("type") in ("job.done", "job.failed")
            ),
            60,
            what="the visitor's clip",
        ).json()
        assert done["type"] == "job.done", done
        assert triggered["source"] == "key" and proc.alive()
        # Then the visitor's clip plays on the kiosk screen, and the preview comes back.
        shown = watcher.wait_for(
            lambda m: m.topic == device.topic("events") and m.json().get("type") == "clip.shown", 60, what="clip.shown"
        ).json()
        assert shown["clip"] == f"{job_id}.mp4" and shown["frames"] == done["frames"]
    finally:
        watcher.close()
