"""Benchmark: flood one real daemon with commands over a local Mosquitto; print what came back.

    python -m tools.bench_flood [--commands 1000] [--verb status] [--repo PATH]

The daemon is a real process (`python -m device.service`, warp-only renderer) on its own broker. The
flood is sent as fast as one paho client can publish (QoS 1, each with a v5 response topic and its own
correlation data); the table gives how many were answered, how many of those were `busy`, the reply
latency, the daemon's RSS before and after, and how long a `status` takes right after the flood.
`--repo` runs another checkout's daemon (for a before/after table); it must accept the same config.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100.0 * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench_flood", description=__doc__.split("\n\n")[0])
    p.add_argument("--commands", type=int, default=1000, help="how many commands to send (default 1000)")
    p.add_argument("--verb", default="status", help="the command sent (default status)")
    p.add_argument("--repo", type=Path, default=REPO, help="the checkout whose daemon runs (default this one)")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the replies (default 60)")
    args = p.parse_args(argv)

    sys.path.insert(0, str(REPO))
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from tests.service.support import Broker, toml_dumps

    work = Path(tempfile.mkdtemp(prefix="bench-flood-"))
    broker = Broker(work / "broker", extra="max_queued_messages 100000\n")
    broker.start()
    proc: subprocess.Popen[bytes] | None = None
    log_path = work / "daemon.log"
    keep = False
    try:
        device = "flood"
        config = {
            "device": {"id": device, "state_dir": str(work / "state")},
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "stats_interval_s": 30.0},
            "generator": {"backend": "none"},
        }
        (work / "portrait.toml").write_text(toml_dumps(config))
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "device.service", "--config", str(work / "portrait.toml")],
                cwd=args.repo,
                stdout=log,
                stderr=log,
            )

        sent: dict[bytes, float] = {}
        replies: dict[bytes, tuple[float, dict[str, Any]]] = {}
        state: dict[str, Any] = {}
        lock = threading.Condition()

        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            with lock:
                if msg.topic == f"portrait/{device}/state":
                    state.update(json.loads(msg.payload))
                else:
                    corr = getattr(msg.properties, "CorrelationData", None)
                    if corr is not None:
                        replies[corr] = (time.perf_counter(), json.loads(msg.payload))
                lock.notify_all()

        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-flood", protocol=paho.MQTTv5)
        client.max_inflight_messages_set(65535)
        client.max_queued_messages_set(0)
        client.on_message = on_message
        client.connect("127.0.0.1", broker.port)
        client.subscribe([(f"portrait/{device}/state", 1), ("bench/replies", 1)])
        client.loop_start()
        with lock:
            if not lock.wait_for(lambda: state.get("ready") is True, 120):
                print(f"the daemon did not come up; its log: {log_path}", file=sys.stderr)
                keep = True  # the folder the message names stays
                return 1
        time.sleep(1.0)
        rss_before = rss_mb(proc.pid)

        def publish(token: bytes, payload: dict[str, Any]) -> None:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = "bench/replies"
            props.CorrelationData = token
            sent[token] = time.perf_counter()
            client.publish(f"portrait/{device}/cmd/{args.verb}", json.dumps(payload), qos=1, properties=props)

        t0 = time.perf_counter()
        for i in range(args.commands):
            publish(str(i).encode(), {"request_id": f"r{i}"})
        t_send = time.perf_counter() - t0
        with lock:
            lock.wait_for(lambda: len(replies) >= args.commands, args.wait)
        flood_replies = dict(replies)
        probe = b"probe"
        publish(probe, {})
        with lock:
            lock.wait_for(lambda: probe in replies, 30)
        probe_ms = (replies[probe][0] - sent[probe]) * 1000.0 if probe in replies else float("nan")
        rss_after = rss_mb(proc.pid)
        client.loop_stop()
        client.disconnect()

        answered = [k for k in flood_replies if k != probe]
        latencies = [(flood_replies[k][0] - sent[k]) * 1000.0 for k in answered]
        busy = sum(1 for k in answered if flood_replies[k][1].get("busy"))
        rows = [
            ("daemon", str(args.repo)),
            ("commands sent", f"{args.commands} {args.verb} in {t_send:.2f} s"),
            ("replies / commands", f"{len(answered)} / {args.commands}"),
            ("  of which busy", str(busy)),
            ("reply latency p50 / p95", f"{percentile(latencies, 50):.0f} / {percentile(latencies, 95):.0f} ms"),
            ("status right after the flood", f"{probe_ms:.0f} ms"),
            ("daemon RSS before / after", f"{rss_before:.0f} / {rss_after:.0f} MB"),
        ]
        width = max(len(r[0]) for r in rows)
        print("\n".join(f"{a.ljust(width)}  {b}" for a, b in rows))
        return 0 if len(answered) == args.commands else 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        broker.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
