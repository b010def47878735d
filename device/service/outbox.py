"""Events wait on disk until the broker has acknowledged them, and go out in the order raised.

Each event is a row in SQLite with a sequence number that keeps growing across restarts (it is also
in the event's JSON as `seq`). The sender hands the oldest row to the MQTT client, waits for its PUBACK,
and only then deletes it and moves to the next: one in flight at a time keeps the order strict. While
the broker is away, rows pile up (bounded: past `max_events` the oldest are dropped and counted).

Exactly once from the device's side: a row is deleted only after its PUBACK, and paho re-sends an
unacknowledged message itself after a reconnect, so the sender never publishes a row twice in one run.
Only a crash between the PUBACK and the delete can repeat one event on the next start; consumers that
care drop repeats by `seq`.
"""

from __future__ import annotations

import collections
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from device.logs import kv

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so seq orders events across restarts
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass
class Pending:
    seq: int
    topic: str
    payload: bytes
    retain: bool


class Outbox:
    def __init__(self, path: Path, max_events: int = 10_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.max_events = max_events
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash; only a power cut may lose the last events.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self.wakeup = threading.Event()
        self._spilled: collections.deque[tuple[str, Callable[[int], bytes] | bytes, bool]] = collections.deque()
        self.storage_error: str | None = None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, topic: str, build: Callable[[int], bytes] | bytes, retain: bool = False) -> int | None:
        """Store one message; `build(seq)` makes the payload when it must carry its own sequence number.

        When the disk is full the message waits in memory (bounded like the table, in order) and is
        stored by the next `add` or `flush` that finds space: the sequence number (returned here, or
        None while it waits) is given when it is stored, so `seq` still orders events."""
        with self._lock:
            self._spilled.append((topic, build, retain))
            dropped = 0
            while len(self._spilled) > self.max_events:
                self._spilled.popleft()
                dropped += 1
            seq = self._store_spilled()
        if dropped:
            log.warning("outbox full in memory: oldest events dropped", extra=kv(dropped=dropped))
        self.wakeup.set()
        return seq

    def flush(self) -> bool:
        """Store the messages waiting in memory; True when none is left waiting."""
        with self._lock:
            if self._spilled:
                self._store_spilled()
            return not self._spilled

    @property
    def waiting_in_memory(self) -> int:
        return len(self._spilled)

    def _store_spilled(self) -> int | None:
        seq = None
        while self._spilled:
            topic, build, retain = self._spilled[0]
            try:
                seq = self._insert(topic, build, retain)
            except sqlite3.OperationalError as exc:
                if self.storage_error is None:
                    log.error("outbox cannot store events; keeping them in memory", extra=kv(error=str(exc)))
                self.storage_error = str(exc)
                return None
            self._spilled.popleft()
            if self.storage_error is not None:
                log.warning("outbox storing events again", extra=kv(waiting=len(self._spilled)))
                self.storage_error = None
        return seq

    def _insert(self, topic: str, build: Callable[[int], bytes] | bytes, retain: bool) -> int:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            cursor = self._db.execute(
                "INSERT INTO outbox (topic, payload, retain, created) VALUES (?, ?, ?, ?)",
                (topic, b"", int(retain), time.time()),
            )
            seq = cursor.lastrowid
            assert seq is not None
            payload = build(seq) if callable(build) else build
            self._db.execute("UPDATE outbox SET payload = ? WHERE seq = ?", (payload, seq))
            dropped = self._trim()
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        if dropped:
            log.warning("outbox full: oldest events dropped", extra=kv(dropped=dropped, kept=self.max_events))
        return seq

    def _trim(self) -> int:
        count = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        excess = count - self.max_events
        if excess <= 0:
            return 0
        self._db.execute("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)", (excess,))
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES ('dropped', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
            (excess,),
        )
        return excess

    def peek(self) -> Pending | None:
        with self._lock:
            row = self._db.execute("SELECT seq, topic, payload, retain FROM outbox ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else Pending(row[0], row[1], bytes(row[2]), bool(row[3]))

    def ack(self, seq: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def depth(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    @property
    def dropped(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()
        return row[0] if row else 0


class Publisher(Protocol):
    """What the sender needs from the MQTT link."""

    connected: threading.Event

    def publish_tracked(self, topic: str, payload: bytes, retain: bool = False) -> Any: ...


def event_payload(seq: int, device_id: str, event_type: str, data: dict[str, Any], ts: float | None = None) -> bytes:
    """One event's JSON; `ts` is when it was raised (it may be stored later, after a full disk)."""
    return json.dumps(
        {
            "seq": seq,
            "ts": round(time.time() if ts is None else ts, 3),
            "device": device_id,
            "type": event_type,
            **data,
        },
        default=str,
    ).encode()


class OutboxSender(threading.Thread):
    """Drains the outbox into the MQTT client, one message in flight, oldest first."""

    # A message neither acknowledged nor lost after this long on a live connection is sent again:
    # a stuck queue is worse than a rare duplicate.
    resend_after_s = 120.0

    def __init__(self, outbox: Outbox, link: Publisher) -> None:
        super().__init__(name="outbox", daemon=True)
        self.outbox = outbox
        self.link = link
        self.stop_event = threading.Event()
        self.sent = 0
        self._delivered = 0  # the newest seq the broker acknowledged in this run

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        self.outbox.wakeup.set()
        self.join(timeout)

    def drain(self, timeout: float) -> bool:
        """Wait (bounded) until every stored event is acknowledged; True if the outbox emptied."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.outbox.depth() == 0:
                return True
            if not self.link.connected.is_set():
                return False
            time.sleep(0.05)
        return self.outbox.depth() == 0

    def run(self) -> None:
        delay = 0.5
        while not self.stop_event.is_set():
            try:
                self._step()
                delay = 0.5
            except sqlite3.OperationalError as exc:
                # A full disk: the events stay where they are (on disk or in memory) until it has room.
                self.outbox.storage_error = str(exc)
                log.error("outbox step failed; retrying", extra=kv(error=str(exc), retry_s=delay))
                self.stop_event.wait(delay)
                delay = min(delay * 2, 30.0)

    def _step(self) -> None:
        """Send the oldest stored event and wait for its PUBACK (bounded), or wait for one to arrive."""
        self.outbox.flush()
        item = self.outbox.peek()
        if item is None:
            self.outbox.wakeup.wait(1.0)
            self.outbox.wakeup.clear()
            return
        if item.seq <= self._delivered:
            self.outbox.ack(item.seq)  # the broker has it; only deleting the row failed (full disk)
            return
        if not self.link.connected.wait(0.5):
            return
        delivery = self.link.publish_tracked(item.topic, item.payload, item.retain)
        sent_at = time.monotonic()
        while not self.stop_event.is_set():
            reason = delivery.wait(0.5)
            if reason is not None:
                if reason.is_failure:
                    # The broker refused it for good (too large, not authorised): retrying cannot help.
                    detail = kv(seq=item.seq, topic=item.topic, reason=str(reason))
                    log.error("broker refused an event", extra=detail)
                self._delivered = item.seq  # a delete that fails (full disk) is retried, not the send
                self.outbox.ack(item.seq)
                self.sent += 1
                return
            if not self.link.connected.is_set():
                sent_at = time.monotonic()  # paho sends it again itself after the reconnect
            elif time.monotonic() - sent_at > self.resend_after_s:
                log.warning("no PUBACK; sending again", extra=kv(seq=item.seq))
                return
