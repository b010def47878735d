"""Portrait mode's playlist: on a schedule, or once per visitor who stays in view."""

from __future__ import annotations

import time

import pytest

from device.config import AppConfig, PortraitSection, Script
from device.service.modes import ModeController, ModeUnavailable, PlaylistScheduler, StageHooks
from device.service.stats import FrameMetrics

PLAYLIST = [Script(text="one"), Script(text="two")]


def scheduler(**options: object) -> PlaylistScheduler:
    section = PortraitSection(playlist=PLAYLIST, **options)  # type: ignore[arg-type]
    return PlaylistScheduler(section, now=0.0)


def test_schedule_plays_the_playlist_in_turn() -> None:
    s = scheduler(schedule_interval_s=10, visitor_frames=0)
    assert s.due(5.0) is None
    assert s.due(10.0) == (PLAYLIST[0], "schedule")
    assert s.due(15.0) is None
    assert s.due(20.0) == (PLAYLIST[1], "schedule")
    assert s.due(30.0) == (PLAYLIST[0], "schedule")


def test_visitor_in_view_for_n_frames_triggers_once() -> None:
    s = scheduler(schedule_interval_s=0, visitor_frames=3, visitor_cooldown_s=0)
    assert [s.face_seen(True, 1.0) for _ in range(5)] == [False, False, True, False, False]
    assert s.due(1.0) == (PLAYLIST[0], "visitor")
    assert s.due(2.0) is None  # the same visitor, still standing there


def test_next_visitor_triggers_after_the_last_one_left() -> None:
    s = scheduler(schedule_interval_s=0, visitor_frames=2, visitor_cooldown_s=0)
    for _ in range(2):
        s.face_seen(True, 1.0)
    for _ in range(2):
        s.face_seen(False, 2.0)
    assert [s.face_seen(True, 3.0) for _ in range(2)] == [False, True]


def test_cooldown_ignores_a_quick_return() -> None:
    s = scheduler(schedule_interval_s=0, visitor_frames=1, visitor_cooldown_s=30)
    assert s.face_seen(True, 0.0)
    s.face_seen(False, 1.0)
    assert not s.face_seen(True, 10.0)
    s.face_seen(False, 11.0)
    assert s.face_seen(True, 31.0)


def test_flickering_detection_does_not_count() -> None:
    s = scheduler(schedule_interval_s=0, visitor_frames=3)
    for present in (True, True, False, True, True, False):
        assert not s.face_seen(present, 0.0)


def test_empty_playlist_never_plays() -> None:
    s = PlaylistScheduler(PortraitSection(schedule_interval_s=1), now=0.0)
    assert s.due(100.0) is None


class RecordingStage:
    """Stands in for the live renderer (not part of this package): records what the daemon asks of it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def start(self, mode: str, config: AppConfig, hooks: StageHooks) -> None:
        self.calls.append(("start", mode))

    def play(self, script: Script) -> None:
        self.calls.append(("play", script.text))

    def stop(self) -> None:
        self.calls.append(("stop", None))


def controller(stage: RecordingStage | None, **config: object) -> tuple[ModeController, list]:
    events: list = []
    hooks = StageHooks(
        metrics=FrameMetrics(), face_seen=lambda present: None, emit=lambda kind, data: events.append((kind, data))
    )
    app = AppConfig.model_validate(config)
    return ModeController(app, stage, hooks, render_clip=lambda script: {"job_id": "clip"}), events


def test_say_plays_live_when_a_stage_is_plugged() -> None:
    stage = RecordingStage()
    modes, _ = controller(stage)
    assert modes.say(Script(text="hello")) == {"played": "live"}
    assert stage.calls == [("play", "hello")]


def test_say_renders_a_clip_without_a_stage() -> None:
    modes, _ = controller(None)
    assert modes.say(Script(text="hello")) == {"job_id": "clip"}


def test_due_script_is_played_on_the_stage() -> None:
    stage = RecordingStage()
    modes, events = controller(stage, portrait={"playlist": [{"text": "one"}], "schedule_interval_s": 5})
    modes.tick(now=time.monotonic() + 6)
    assert stage.calls == [("play", "one")]
    assert events[0][0] == "script.started" and events[0][1]["trigger"] == "schedule"


def test_visitor_is_reported_as_an_event() -> None:
    modes, events = controller(RecordingStage(), portrait={"visitor_frames": 2, "playlist": [{"text": "hi"}]})
    for _ in range(2):
        modes.face_seen(True)
    assert events == [("visitor.seen", {"mode": "portrait"})]


def test_mirror_needs_the_live_stage() -> None:
    modes, _ = controller(None, camera={"type": "file", "path": "/tmp/x.png"}, portrait={"photo": "/tmp/p.png"})
    with pytest.raises(ModeUnavailable, match="live renderer"):
        modes.set_mode("mirror")


def test_switching_mode_restarts_the_stage_in_that_mode() -> None:
    stage = RecordingStage()
    modes, _ = controller(stage, camera={"type": "file", "path": "/tmp/x.png"}, portrait={"photo": "/tmp/p.png"})
    assert modes.set_mode("mirror") == "portrait"
    assert stage.calls == [("start", "mirror")]


def test_unrelated_config_change_leaves_the_stage_alone() -> None:
    stage = RecordingStage()
    modes, _ = controller(stage)
    modes.apply_config(AppConfig.model_validate({"jobs": {"queue_size": 3}}), ["jobs.queue_size"])
    assert stage.calls == []
