"""Commands in: one routing table (verb -> payload model -> handler), and a bounded inbox in front of it.

Every command gets an answer. The network thread only offers a command to the inbox; when the inbox is
full (by count or by bytes) the command is answered `busy` at once instead of being dropped, so a
flood costs the device a small reply per message and never its memory or its other work.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from device.errors import CommandError
from device.logs import kv
from device.service.commands import (
    MAX_NESTING,
    Command,
    CommandContext,
    echoable_request_id,
    nesting_depth,
    parse_payload,
)

log = logging.getLogger("portrait.commands")

# Fault injection for the crash tests: SIGKILL ourselves after handling a command, before its answer.
FAULT_ENV = "PORTRAIT_COMMAND_FAULT"

Reply = dict[str, Any]
Handler = Callable[[Any], Reply]


@dataclass(frozen=True)
class Route:
    """One verb: the model its payload must satisfy, and what runs it."""

    model: type[Command]
    handler: Handler


class CommandRouter:
    def __init__(self, routes: dict[str, Route], context: Callable[[], CommandContext]) -> None:
        self.routes = routes
        self.context = context

    @property
    def verbs(self) -> list[str]:
        return sorted(self.routes)

    def parse(self, verb: str, payload: bytes) -> Command:
        route = self.routes.get(verb)
        if route is None:
            raise CommandError("verb", f"unknown verb {verb[:64]!r}; known: {', '.join(self.verbs)}")
        return parse_payload(route.model, payload, self.context())

    def handle(self, topic: str, payload: bytes) -> Reply:
        """Validate and run one command; the reply says what happened or which field is wrong."""
        verb = topic.rsplit("/", 1)[-1]
        request_id = None
        try:
            command = self.parse(verb, payload)
            request_id = command.request_id
            reply: Reply = {"ok": True, "verb": verb, **self.routes[verb].handler(command)}
        except CommandError as exc:
            request_id = request_id or exc.request_id
            log.warning("command refused", extra=kv(verb=verb[:64], field=exc.field, error=exc.message[:200]))
            reply = {"ok": False, "verb": verb, "error": exc.reply()}
        except Exception as exc:
            log.exception("command failed", extra=kv(verb=verb))
            reply = {"ok": False, "verb": verb, "error": {"field": None, "message": f"internal error: {exc}"}}
        if request_id is not None:
            reply["request_id"] = request_id
        return reply


def busy_reply(topic: str, payload: bytes, waiting: int) -> Reply:
    """The answer to a command the inbox has no room for; it still carries the request id if cheap to find."""
    verb = topic.rsplit("/", 1)[-1]
    reply: Reply = {
        "ok": False,
        "verb": verb,
        "busy": True,
        "error": {"field": None, "message": f"busy: {waiting} commands waiting; try again shortly"},
    }
    if len(payload) <= 4096 and nesting_depth(payload) <= MAX_NESTING:
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            doc = None
        request_id = echoable_request_id(doc.get("request_id")) if isinstance(doc, dict) else None
        if request_id is not None:
            reply["request_id"] = request_id
    return reply


class CommandInbox:
    """Between paho's network thread and the command thread: bounded, and never silent."""

    def __init__(
        self,
        handle: Callable[[str, bytes], Reply],
        reply: Callable[[Any, Reply], None],
        max_commands: int = 100,
        max_bytes: int = 16_000_000,
    ) -> None:
        self.handle = handle
        self.reply = reply
        self.max_commands = max_commands
        self.max_bytes = max_bytes
        self._items: collections.deque[tuple[str, bytes, Any, Callable[[], None]]] = collections.deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self.answered_busy = 0

    def depth(self) -> int:
        with self._cond:
            return len(self._items)

    def offer(self, topic: str, payload: bytes, props: Any, ack: Callable[[], None] = lambda: None) -> bool:
        """Queue a command for the command thread, or answer it `busy` now. Never blocks.

        `ack` tells the broker the command is dealt with: after its reply, so one that a crash caught
        waiting here is delivered again."""
        with self._cond:
            fits = len(self._items) < self.max_commands and self._bytes + len(payload) <= self.max_bytes
            if fits:
                self._items.append((topic, payload, props, ack))
                self._bytes += len(payload)
                self._cond.notify()
            waiting = len(self._items)
        if not fits:
            self.answered_busy += 1
            self.reply(props, busy_reply(topic, payload, waiting))
            ack()
        return fits

    def next(self, timeout: float) -> tuple[str, bytes, Any, Callable[[], None]] | None:
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            self._bytes -= len(item[1])
            return item

    def serve(self, stop: threading.Event) -> None:
        """The command thread: answer each command in turn until stopped."""
        while not stop.is_set():
            item = self.next(0.5)
            if item is None:
                continue
            topic, payload, props, ack = item
            reply = self.handle(topic, payload)
            if os.environ.get(FAULT_ENV) == "before_reply":
                log.warning("fault injection: SIGKILL", extra=kv(topic=topic))
                os.kill(os.getpid(), signal.SIGKILL)
            try:
                self.reply(props, reply)
            except Exception:
                log.exception("reply not sent", extra=kv(topic=topic))
            ack()
