"""Modes (portrait, capture, mirror), the portrait playlist and its schedule, and the plug for the
live renderer.

The live render loop (camera -> face -> render -> display) is a `LiveStage` that the renderer
provides; the daemon drives it. Without one, the daemon still serves jobs: `say` renders the portrait
speaking to a clip, `capture` grabs a photo and renders it; the schedule and mirror need the stage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from device.config import AppConfig, Mode, PortraitSection, Script
from device.logs import kv
from device.service.stats import FrameMetrics

log = logging.getLogger(__name__)

STAGE_KEYS = ("portrait.", "mirror.", "capture.", "output.")  # settings the live stage reads


@dataclass
class StageHooks:
    """What the daemon gives the live stage."""

    metrics: FrameMetrics  # record_frame(frame_ms, generator_ms) per displayed frame; record_dropped()
    face_seen: Callable[[bool], None]  # once per camera frame: is a visitor's face in view?
    emit: Callable[[str, dict[str, Any]], Any]  # an event, e.g. ("warning", {"message": ...})
    renderer: Callable[[], Any] = lambda: None  # the loaded Animator (its analyzer and generator), if any
    capture: Callable[[], Any] | None = None  # the kiosk's key: capture and animate, as the command does


class LiveStage(Protocol):
    """The live render loop on the kiosk screen. It runs its own thread; these calls must return fast."""

    def start(self, mode: Mode, config: AppConfig, hooks: StageHooks) -> None:
        """Begin (or switch to) a mode: idle the portrait, or mirror the visitor."""

    def play(self, script: Script) -> None:
        """Portrait mode: speak this script now, then idle again."""

    def stop(self) -> None:
        """Stop rendering and release the camera and the screen."""


class ModeUnavailable(Exception):
    pass


class PlaylistScheduler:
    """Which script plays next, and when: on a fixed interval, or when a visitor has been in view."""

    def __init__(self, section: PortraitSection, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.playlist = list(section.playlist)
        self.interval_s = section.schedule_interval_s
        self.visitor_frames = section.visitor_frames
        self.cooldown_s = section.visitor_cooldown_s
        self.index = 0
        self.last_play = now
        self.last_visitor = float("-inf")
        self.face_run = 0
        self.absent_run = 0
        self.armed = True  # re-armed once the visitor has left, so one visitor triggers one script
        self.visitor_pending = False

    def face_seen(self, present: bool, now: float | None = None) -> bool:
        """Feed one camera frame; True when this frame makes a visitor (N frames in a row)."""
        now = time.monotonic() if now is None else now
        if not present:
            self.face_run = 0
            self.absent_run += 1
            if self.absent_run >= max(self.visitor_frames, 1):
                self.armed = True
            return False
        self.absent_run = 0
        self.face_run += 1
        if (
            self.visitor_frames > 0
            and self.armed
            and self.face_run >= self.visitor_frames
            and now - self.last_visitor >= self.cooldown_s
        ):
            self.armed = False
            self.last_visitor = now
            self.visitor_pending = True
            return True
        return False

    def due(self, now: float | None = None) -> tuple[Script, str] | None:
        """(script, 'visitor' | 'schedule') when one should start now; the schedule restarts from it."""
        now = time.monotonic() if now is None else now
        if not self.playlist:
            self.visitor_pending = False
            return None
        if self.visitor_pending:
            trigger = "visitor"
        elif self.interval_s > 0 and now - self.last_play >= self.interval_s:
            trigger = "schedule"
        else:
            return None
        self.visitor_pending = False
        self.last_play = now
        script = self.playlist[self.index % len(self.playlist)]
        self.index += 1
        return script, trigger

    def played(self, now: float | None = None) -> None:
        """A script was started by command: the schedule counts from it."""
        self.last_play = time.monotonic() if now is None else now


class ModeController:
    def __init__(
        self,
        config: AppConfig,
        stage: LiveStage | None,
        hooks: StageHooks,
        render_clip: Callable[[Script], dict[str, Any]],
    ) -> None:
        self.config = config
        self.stage = stage
        self.hooks = hooks
        self.render_clip = render_clip  # no live stage: render the portrait speaking to a clip (a job)
        self.mode: Mode = config.mode
        self._lock = threading.Lock()
        self.scheduler = PlaylistScheduler(config.portrait)

    def check(self, mode: Mode, config: AppConfig | None = None) -> None:
        """Raise ModeUnavailable if this build or config cannot run the mode."""
        config = config or self.config
        if mode == "mirror" and self.stage is None:
            raise ModeUnavailable("mirror mode needs the live renderer, which is not plugged into this daemon")
        if mode in ("capture", "mirror") and config.camera is None:
            raise ModeUnavailable(f"{mode} mode needs a camera: add a [camera] table to the config")
        if mode == "mirror" and (config.mirror.photo or config.portrait.photo) is None:
            raise ModeUnavailable("mirror mode needs mirror.photo or portrait.photo")

    def start(self) -> None:
        if self.stage is not None:
            self.stage.start(self.mode, self.config, self.hooks)

    def stop(self) -> None:
        if self.stage is not None:
            self.stage.stop()

    def set_mode(self, mode: Mode) -> Mode:
        """Switch modes; returns the previous one."""
        self.check(mode)
        with self._lock:
            previous, self.mode = self.mode, mode
        if mode != previous and self.stage is not None:
            self.stage.start(mode, self.config, self.hooks)
        log.info("mode changed", extra=kv(mode=mode, previous=previous))
        return previous

    def apply_config(self, config: AppConfig, changed: list[str]) -> None:
        """Hot-apply a changed config: a new playlist starts afresh; the stage restarts only if its
        own settings changed (a jobs setting must not interrupt the portrait mid-sentence)."""
        with self._lock:
            self.config = config
            if any(key.startswith("portrait.") for key in changed):
                self.scheduler = PlaylistScheduler(config.portrait)
        if config.mode != self.mode:
            self.set_mode(config.mode)
        elif self.stage is not None and any(key.startswith(STAGE_KEYS) for key in changed):
            self.stage.start(self.mode, config, self.hooks)

    def face_seen(self, present: bool) -> None:
        """From the live stage, per camera frame."""
        with self._lock:
            visitor = self.mode == "portrait" and self.scheduler.face_seen(present)
        if visitor:
            self.hooks.emit("visitor.seen", {"mode": self.mode})

    def say(self, script: Script) -> dict[str, Any]:
        if self.mode != "portrait":
            raise ModeUnavailable(f"say is for portrait mode; the device is in {self.mode} mode")
        with self._lock:
            self.scheduler.played()
        if self.stage is not None and getattr(self.stage, "live_output", True):
            self.stage.play(script)
            return {"played": "live"}
        return self.render_clip(script)

    def tick(self, now: float | None = None) -> None:
        """From the main loop: start the next playlist script when it is due (live stage only)."""
        if self.mode != "portrait" or self.stage is None or not getattr(self.stage, "live_output", True):
            return
        with self._lock:
            due = self.scheduler.due(now)
        if due is not None:
            script, trigger = due
            self.stage.play(script)
            self.hooks.emit("script.started", {"trigger": trigger, "text": script.text, "lang": script.lang})
