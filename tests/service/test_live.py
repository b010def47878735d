"""The live stage: the mirror follows a performer from a (file) camera in real time, and the
portrait looks for visitors and speaks what it is told, frame by frame."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device.config import AppConfig, Script
from device.face import topology as topo
from device.motion.params import FaceParams
from device.service.live import LiveRenderer
from device.service.modes import StageHooks
from device.service.stats import FrameMetrics
from tests.service.support import wait_until

FRAMES = 40


@pytest.fixture(scope="module")
def animator():
    from device.pipeline import Animator

    return Animator(backend="none")


@pytest.fixture(scope="module")
def performer(tmp_path_factory, animator):
    """A performer video: the astronaut opening and closing her mouth, with a known jaw track."""
    from skimage import data

    from device.outputs.video import VideoWriter
    from device.render.renderer import Renderer

    image = np.ascontiguousarray(data.astronaut())
    renderer = Renderer(image, animator.analyzer.analyse(image), close_mouth_at_rest=True)
    jaw = np.clip(np.sin(np.arange(FRAMES) / FRAMES * 4 * np.pi), 0, None)
    path = tmp_path_factory.mktemp("performer") / "performer.mp4"
    with VideoWriter(path, 25, 512, 512, crf=16) as writer:
        for value in jaw:
            writer.write(renderer.render(FaceParams(jaw_open=float(value))))
    return path, jaw


class Recorder:
    def __init__(self) -> None:
        self.metrics = FrameMetrics()
        self.faces: list[bool] = []
        self.events: list[tuple[str, dict]] = []
        self.frames: list[np.ndarray] = []
        self.lock = threading.Lock()

    def hooks(self, animator: Any = None) -> StageHooks:
        return StageHooks(
            metrics=self.metrics,
            face_seen=self.faces.append,
            emit=lambda k, d: self.events.append((k, d)),
            renderer=lambda: animator,
        )

    def frame(self, frame: np.ndarray) -> None:
        with self.lock:
            self.frames.append(frame)


def config(tmp_path: Path, photo: Path, camera: dict, mode: str, display: str = "off") -> AppConfig:
    return AppConfig.model_validate({
        "mode": mode,
        "device": {"id": "live-test", "state_dir": str(tmp_path / "state")},
        "mqtt": {"enabled": False},
        "output": {"fps": 25, "size": 256, "display": display},
        "portrait": {"photo": str(photo)},
        "camera": camera,
    })  # fmt: skip


def test_mirror_follows_the_performer(tmp_path, animator, performer, astronaut) -> None:
    from PIL import Image

    video, jaw = performer
    photo = tmp_path / "portrait.png"
    Image.fromarray(astronaut).save(photo)
    recorder = Recorder()
    stage = LiveRenderer()
    stage.frame_listeners.append(recorder.frame)
    stage.start(
        "mirror",
        config(tmp_path, photo, {"type": "file", "path": str(video), "loop": False}, "mirror"),
        recorder.hooks(animator),
    )
    try:
        wait_until(lambda: len(recorder.frames) >= FRAMES, timeout=60, what="mirrored frames")
    finally:
        stage.stop()
    assert sum(recorder.faces[:FRAMES]) >= FRAMES - 2
    openings = []
    for frame in recorder.frames[:FRAMES]:
        landmarks = animator.analyzer.track(frame, None)
        openings.append(topo.mouth_opening(landmarks) if landmarks is not None else np.nan)
    openings = np.array(openings)
    valid = ~np.isnan(openings)
    assert valid.sum() >= FRAMES - 4
    assert np.corrcoef(openings[valid], jaw[valid])[0, 1] > 0.6
    assert recorder.metrics.snapshot()["fps"] > 0
    assert len(stage.latencies_ms) >= FRAMES


@pytest.mark.slow
def test_portrait_sees_the_visitor_and_speaks(tmp_path, animator, astronaut) -> None:
    from PIL import Image

    photo = tmp_path / "portrait.png"
    Image.fromarray(astronaut).save(photo)
    recorder = Recorder()
    stage = LiveRenderer()
    stage.frame_listeners.append(recorder.frame)
    # The "camera" sees a visitor: the astronaut photo again.
    camera = {"type": "file", "path": str(photo), "fps": 25}
    stage.start("portrait", config(tmp_path, photo, camera, "portrait"), recorder.hooks(animator))
    try:
        wait_until(lambda: len(recorder.faces) >= 5, timeout=30, what="camera frames")
        assert all(recorder.faces)
        before = len(recorder.frames)
        stage.play(Script(text="Hello there, welcome to the museum."))
        wait_until(lambda: any(kind == "script.done" for kind, _ in recorder.events), timeout=30, what="script done")
        spoken = recorder.frames[before:]
    finally:
        stage.stop()
    openings = [
        topo.mouth_opening(lm) for lm in (animator.analyzer.track(f, None) for f in spoken[::2]) if lm is not None
    ]
    assert max(openings) > 0.2 and min(openings) < 0.12
    assert any(kind == "script.speaking" for kind, _ in recorder.events)


def test_stop_returns_promptly(tmp_path, animator, astronaut) -> None:
    from PIL import Image

    photo = tmp_path / "portrait.png"
    Image.fromarray(astronaut).save(photo)
    recorder = Recorder()
    stage = LiveRenderer()
    stage.frame_listeners.append(recorder.frame)
    camera = {"type": "file", "path": str(photo)}
    stage.start("portrait", config(tmp_path, photo, camera, "portrait"), recorder.hooks(animator))
    wait_until(lambda: len(recorder.frames) >= 3, timeout=30, what="frames")
    started = time.monotonic()
    stage.stop()
    assert time.monotonic() - started < 2.0
    count = len(recorder.frames)
    time.sleep(0.2)
    assert len(recorder.frames) == count


def test_daemon_switches_to_mirror_over_mqtt(broker, make_config, daemons, performer) -> None:
    from tests.service.support import Device, device_watcher

    video, _ = performer
    path, doc = make_config({"camera": {"type": "file", "path": str(video), "fps": 25}})
    watcher = device_watcher(broker.port, doc["device"]["id"])
    try:
        daemons(path)
        device = Device(broker.port, doc["device"]["id"], watcher)
        device.wait_online()
        reply = device.command("mode", {"mode": "mirror"})
        assert reply["ok"] is True, reply
        stats = watcher.wait_for(
            lambda m: m.topic == device.topic("stats") and (m.json().get("fps") or 0) > 5, 30, what="mirror fps"
        ).json()
        assert stats["frame_ms"]["p50"] > 0
    finally:
        watcher.close()
