"""The event outbox: ordered, bounded on disk, deleted only after the broker's PUBACK."""

from __future__ import annotations

import json
from pathlib import Path

from device.config import MqttSection
from device.service.mqtt import MqttLink, Topics
from device.service.outbox import Outbox, OutboxSender, event_payload
from tests.service.support import Broker, Watcher, wait_until


def test_sequence_keeps_growing_across_reopening(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    first = box.add("t", b"a")
    box.ack(first)
    box.close()
    box = Outbox(tmp_path / "o.sqlite")
    assert box.add("t", b"b") > first  # a consumer can order events from several runs by seq


def test_event_carries_its_sequence_number(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    seq = box.add("t", lambda s: event_payload(s, "dev", "job.done", {"job_id": "j"}))
    doc = json.loads(box.peek().payload)  # type: ignore[union-attr]
    assert (doc["seq"], doc["type"], doc["job_id"], doc["device"]) == (seq, "job.done", "j", "dev")


def test_full_outbox_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_events=10)
    for i in range(13):
        box.add("t", str(i).encode())
    assert box.depth() == 10
    assert box.dropped == 3
    assert box.peek().payload == b"3"  # type: ignore[union-attr]


def test_sender_delivers_in_order_and_empties_the_outbox(tmp_path: Path, broker: Broker) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    for i in range(20):
        box.add("outbox-test/events", str(i).encode())
    watcher = Watcher(broker.port, ["outbox-test/events"])
    topics = Topics("portrait", "outbox-test")
    link = MqttLink(MqttSection(host="127.0.0.1", port=broker.port), topics, lambda *a: None)
    sender = OutboxSender(box, link)
    link.start()
    sender.start()
    try:
        wait_until(lambda: len(watcher.messages) >= 20 and box.depth() == 0, 15, what="20 events delivered")
        assert [m.payload for m in watcher.messages] == [str(i).encode() for i in range(20)]
    finally:
        sender.stop()
        link.stop()
        watcher.close()
