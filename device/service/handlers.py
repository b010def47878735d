"""What each command does, given the parts it needs (never the whole daemon); `routes()` is the one table."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from device.config import AppConfig, ConfigError, ConfigStore, Script
from device.errors import CommandError
from device.service.commands import (
    AnimateCommand,
    CancelCommand,
    CaptureCommand,
    Command,
    ConfigCommand,
    ModeCommand,
    RollbackCommand,
    SayCommand,
    StatusCommand,
    UpdateCommand,
)
from device.service.jobs import JobState, UnknownJob
from device.service.modes import ModeController, ModeUnavailable
from device.service.router import Reply, Route
from device.service.runner import JobRunner


class UpdatesPort(Protocol):
    def submit(self, envelope: dict[str, Any]) -> dict[str, Any]: ...

    def rollback_command(self, command: RollbackCommand) -> dict[str, Any]: ...


@dataclass
class CommandHandlers:
    store: ConfigStore
    runner: JobRunner
    modes: ModeController
    updates: UpdatesPort
    config: Callable[[], AppConfig]
    apply_config: Callable[[AppConfig, list[str]], None]  # adopt a changed config in every part
    emit: Callable[[str, dict[str, Any]], Any]
    state: Callable[[], dict[str, Any]]
    last_stats: Callable[[], dict[str, Any] | None]
    grab_frame: Callable[[], Any]  # an RGB camera frame, or raises CommandError

    def routes(self) -> dict[str, Route]:
        return {verb: Route(model, getattr(self, handler)) for verb, (model, handler) in COMMANDS.items()}

    def animate(self, cmd: AnimateCommand) -> Reply:
        payload = {
            "photo": cmd.photo,
            "text": cmd.text,
            "audio": cmd.audio,
            "transcript": cmd.transcript,
            "lang": cmd.lang,
            "voice": cmd.voice,
            "fps": cmd.fps,
            "size": cmd.size,
            "seconds": cmd.seconds,
        }
        photo_bytes = cmd.photo_bytes() if cmd.photo_b64 is not None else None
        # Photo bytes come from a visitor's device: they and the clip fall under the retention.
        visitor = photo_bytes is not None
        return self.runner.accept(payload, cmd.priority, cmd.job_id, visitor=visitor, photo_bytes=photo_bytes)

    def say(self, cmd: SayCommand) -> Reply:
        script = Script(
            text=cmd.text,
            audio=Path(cmd.audio) if cmd.audio else None,
            transcript=cmd.transcript,
            lang=cmd.lang,
            voice=cmd.voice,
        )
        try:
            return self.modes.say(script)
        except ModeUnavailable as exc:
            raise CommandError("mode", str(exc)) from None

    def say_as_clip(self, script: Script) -> Reply:
        """Without a live stage, `say` renders the portrait speaking into a clip."""
        photo = self.config().portrait.photo
        if photo is None:
            raise CommandError("portrait.photo", "portrait mode has no photo configured")
        payload = {
            "photo": str(photo),
            "text": script.text,
            "audio": str(script.audio) if script.audio else None,
            "transcript": script.transcript,
            "lang": script.lang,
            "voice": script.voice,
        }
        return self.runner.accept(payload, "interactive", None, visitor=False)

    def capture(self, cmd: CaptureCommand, source: str = "command") -> Reply:
        """Take the camera's photo and queue its clip; the outcome is an event either way, so that a
        press of Home Assistant's button (which reads no reply) shows its result."""
        try:
            result = self._capture(cmd)
        except CommandError as exc:
            self.emit("capture.refused", {"source": source, "field": exc.field, "reason": exc.message})
            raise
        self.emit("capture.accepted", {"source": source, "job_id": result.get("job_id")})
        return result

    def _capture(self, cmd: CaptureCommand) -> Reply:
        config = self.config()
        if self.modes.mode != "capture":
            raise CommandError("mode", f"capture needs capture mode; the device is in {self.modes.mode} mode")
        if config.camera is None:
            raise CommandError("camera", "no camera configured")
        frame = self.grab_frame()
        import cv2  # only here: the daemon itself does not need OpenCV to start

        ok, encoded = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if not ok:
            raise CommandError("camera", "could not encode the captured frame")
        line = config.capture.line
        payload = {
            "text": cmd.text or line.text,
            "audio": str(line.audio) if (line.audio and not cmd.text) else None,
            "transcript": None if cmd.text else line.transcript,
            "lang": cmd.lang or line.lang,
            "voice": cmd.voice or line.voice,
        }
        return self.runner.accept(payload, "kiosk", None, visitor=True, photo_bytes=encoded.tobytes())

    def capture_by_key(self) -> Reply:
        """A local trigger (the kiosk's key) takes a photo exactly as the `capture` command does."""
        result = self.capture(CaptureCommand(), source="key")
        self.emit("capture.triggered", {"source": "key", **result})
        return result

    def mode(self, cmd: ModeCommand) -> Reply:
        return self._change({"mode": cmd.mode}, dry_run=False, field="mode")

    def change_config(self, cmd: ConfigCommand) -> Reply:
        return self._change(cmd.set, dry_run=cmd.dry_run, field="set")

    def _change(self, changes: dict[str, Any], dry_run: bool, field: str) -> Reply:
        try:
            new, keys = self.store.check_change(changes)
            if new.mode != self.modes.mode:
                self.modes.check(new.mode, new)
        except ConfigError as exc:
            raise CommandError(f"{field}.{exc.key}" if field == "set" else field, exc.detail) from None
        except ModeUnavailable as exc:
            raise CommandError(field if field == "mode" else "set.mode", str(exc)) from None
        if dry_run or not keys:
            return {"changed": keys, "revision": self.config().revision(), "dry_run": dry_run}
        previous_mode = self.modes.mode
        new, keys = self.store.apply(changes)
        self.apply_config(new, keys)
        self.emit("config.changed", {"revision": new.revision(), "changed": keys})
        if new.mode != previous_mode:
            self.emit("mode.changed", {"mode": new.mode, "previous": previous_mode})
        return {"changed": keys, "revision": new.revision(), "mode": new.mode}

    def status(self, cmd: StatusCommand) -> Reply:
        queue = self.runner.queue
        if cmd.job_id is not None:
            try:
                return {"job": queue.get(cmd.job_id).summary()}
            except UnknownJob:
                raise CommandError("job_id", f"no job {cmd.job_id}") from None
        current = self.runner.current
        portrait = self.config().portrait
        return {
            "state": self.state(),
            "queue": {
                "depth": queue.depth(),
                "size": queue.max_size,
                "running": current.id if current else None,
                "waiting": [j.id for j in queue.jobs(JobState.QUEUED)],
            },
            "stats": self.last_stats(),  # the latest sample: sampling here would skew the CPU window
            "portrait": {
                "photo": str(portrait.photo) if portrait.photo else None,
                "playlist": [s.text or str(s.audio) for s in portrait.playlist],
            },
            "ts": round(time.time(), 3),
        }

    def cancel(self, cmd: CancelCommand) -> Reply:
        return self.runner.cancel(cmd.job_id)

    def update(self, cmd: UpdateCommand) -> Reply:
        return self.updates.submit(cmd.model_dump(exclude={"request_id", "sent"}, exclude_none=True))

    def rollback(self, cmd: RollbackCommand) -> Reply:
        return self.updates.rollback_command(cmd)


# Every verb the device answers, in one place: its payload model and the CommandHandlers method that runs it.
COMMANDS: dict[str, tuple[type[Command], str]] = {
    "animate": (AnimateCommand, "animate"),
    "say": (SayCommand, "say"),
    "capture": (CaptureCommand, "capture"),
    "mode": (ModeCommand, "mode"),
    "config": (ConfigCommand, "change_config"),
    "status": (StatusCommand, "status"),
    "cancel": (CancelCommand, "cancel"),
    "update": (UpdateCommand, "update"),
    "rollback": (RollbackCommand, "rollback"),
}
