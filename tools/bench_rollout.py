"""Benchmark: roll a 10 MB bundle out to N simulated devices over a local Mosquitto; print the table.

    python -m tools.bench_rollout [--devices 20] [--mb 10] [--chunk-kb 128] [--canary 1] [--timeout 600]

A simulated device is the real daemon (MQTT link, outbox, updater, real health check: the model loaded
on ONNX Runtime and its golden vectors run) with the renderer left out (no face models loaded), so 20
fit on one machine. The bundle is the default bundle's ONNX model and one golden vector (about 2 MB,
the smallest real bundle) plus incompressible filler up to --mb. Broker traffic comes from Mosquitto's
own $SYS byte counters. Needs a checkout (it runs the test suite's broker helper), Mosquitto and
ONNX Runtime. Exit 0 when every device succeeded, 1 when not (the logs are kept and named), 2 bad input.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


class NullAnimator:
    """The renderer left out: the bench measures updates, not rendering."""

    model_info = None

    def animate(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("simulated device: no renderer")


def run_device(config: str) -> int:
    from device.service.daemon import main

    return main(
        ["--config", config],
        animator_factory=lambda backend, keys=None, options=None: NullAnimator(),
        stage_factory=lambda: None,
    )


class TooSmall(ValueError):
    """The size asked for is below the smallest real bundle."""


def make_bundle(dest: Path, size: int, key: Any) -> Path:
    """A real model bundle (one runtime, one golden vector: the least a device health-checks), padded to `size`."""
    import hashlib

    import numpy as np

    from device.runtime import DEFAULT_BUNDLE
    from device.updates.install import sign_manifest

    dest.mkdir(parents=True)
    doc = json.loads((DEFAULT_BUNDLE / "manifest.json").read_text())
    doc["version"] = "1.0.0"
    doc["runtimes"] = {"onnxruntime": doc["runtimes"]["onnxruntime"]}
    for entry in doc["runtimes"]["onnxruntime"]["files"]:
        shutil.copy(DEFAULT_BUNDLE / entry["path"], dest / entry["path"])
    with np.load(DEFAULT_BUNDLE / "golden.npz") as golden:
        np.savez(dest / "golden.npz", inputs=golden["inputs"][:1], expected=golden["expected"][:1])
    data = (dest / "golden.npz").read_bytes()
    doc["golden"].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), count=1)
    used = sum(p.stat().st_size for p in dest.iterdir()) + 16384  # + manifest, signature and archive headers
    if size < used:
        least = math.ceil(used / 1e5) / 10
        raise TooSmall(
            f"--mb {size / 1e6:g}: the smallest real bundle is {least:g} MB (an ONNX model and "
            f"one golden vector); give --mb {least:g} or more"
        )
    (dest / "filler.bin").write_bytes(os.urandom(size - used))
    doc["filler"] = {"path": "filler.bin", "why": "benchmark: pads the bundle to its size"}
    (dest / "manifest.json").write_text(json.dumps(doc, indent=2))
    sign_manifest(dest, key)
    return dest


def log_tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace") if path.is_file() else ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (empty)"


def sys_bytes(port: int) -> tuple[int, int]:
    out = {}
    for leaf in ("sent", "received"):
        text = subprocess.run(
            ["mosquitto_sub", "-p", str(port), "-t", f"$SYS/broker/bytes/{leaf}", "-C", "1", "-W", "5"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        out[leaf] = int(text or 0)
    return out["sent"], out["received"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench_rollout", description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=20, help="simulated devices (default: 20)")
    p.add_argument("--mb", type=float, default=10.0, help="bundle size in MB (default: 10; at least 2)")
    p.add_argument("--chunk-kb", type=int, default=128, help="retained chunk size in KiB (default: 128)")
    p.add_argument("--canary", type=int, default=1, help="devices in the first wave (default: 1)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds for each wave (default: 600)")
    p.add_argument("--device-config", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device_config:
        return run_device(args.device_config)
    if args.devices < 1 or args.chunk_kb < 1:
        p.error("--devices and --chunk-kb must be at least 1")
    if importlib.util.find_spec("onnxruntime") is None:
        print(
            "bench_rollout: the simulated devices health-check the bundle on ONNX Runtime, which is not "
            "installed (pip install 'talking-portrait[onnxruntime]')",
            file=sys.stderr,
        )
        return 2

    sys.path.insert(0, str(REPO))
    from device.fleet import FleetClient, bundle_info, make_job, rollout
    from device.updates import keys as chain
    from tests.service.support import Broker, toml_dumps

    work = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    procs: list[subprocess.Popen[bytes]] = []
    keep = False  # set on failure: the folder with the logs the message names stays
    broker = Broker(work / "broker", extra="sys_interval 1\nmax_queued_messages 10000\n")
    broker.start()
    try:
        root, signing = chain.Ed25519PrivateKey.generate(), chain.Ed25519PrivateKey.generate()
        chain.write_public(work / "root.pub", root.public_key())
        cert = chain.certify(root, signing.public_key())
        try:
            bundle = make_bundle(work / "bundle", int(args.mb * 1e6), signing)
        except TooSmall as exc:
            print(f"bench_rollout: {exc}", file=sys.stderr)
            return 2
        info, chunks = bundle_info(bundle, args.chunk_kb * 1024)
        ids = [f"sim{i:02d}" for i in range(args.devices)]
        for dev in ids:
            cfg = {
                "device": {"id": dev, "kind": "pi5", "state_dir": str(work / dev / "state")},
                "mqtt": {"host": "127.0.0.1", "port": broker.port, "stats_interval_s": 30.0},
                "generator": {"backend": "none"},
                "updates": {
                    "root_key": str(work / "root.pub"),
                    "root": str(work / dev / "assets"),
                    "probation_s": 0.0,
                    "latency_budget_ms": 5000.0,
                    "window_chunks": 8,
                },
            }
            path = work / f"{dev}.toml"
            path.write_text(toml_dumps(cfg))
            with (work / f"{dev}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "tools.bench_rollout", "--device-config", str(path)],
                        cwd=REPO,
                        stdout=log,
                        stderr=log,
                    )
                )
        fleet = FleetClient("127.0.0.1", broker.port)
        deadline = time.monotonic() + 120
        while not fleet.wait(lambda: all((fleet.devices.get(d, {}).get("state") or {}).get("ready") for d in ids), 1):
            exited = [(d, proc.returncode) for d, proc in zip(ids, procs, strict=True) if proc.poll() is not None]
            if exited or time.monotonic() > deadline:
                keep = True
                dev = (
                    exited[0][0]
                    if exited
                    else next(d for d in ids if not (fleet.devices.get(d, {}).get("state") or {}).get("ready"))
                )
                why = f"exited with code {exited[0][1]} at start" if exited else "was not ready within 120 s"
                print(
                    f"bench_rollout: simulated device {dev} {why}; the logs are kept in {work}\n"
                    f"{work / f'{dev}.log'}, last lines:\n{log_tail(work / f'{dev}.log')}",
                    file=sys.stderr,
                )
                return 1
        time.sleep(2.0)  # let the $SYS counters tick past the start-up traffic
        sent0, recv0 = sys_bytes(broker.port)
        t0 = time.monotonic()
        fleet.publish_bundle(info, chunks)
        t_pub = time.monotonic() - t0
        envelope = make_job(info, signing, cert, targets={"devices": ids})
        waves: list[tuple[str, float]] = []
        last = [time.monotonic()]

        def log(line: str) -> None:
            now = time.monotonic()
            waves.append((line.split(":")[0], now - last[0]))
            last[0] = now

        t1 = time.monotonic()
        report = rollout(fleet, envelope, ids, canary=args.canary, timeout_s=args.timeout, log=log)
        t_roll = time.monotonic() - t1
        time.sleep(2.5)
        sent1, recv1 = sys_bytes(broker.port)
        ok = sum(1 for s in report["results"].values() if s == "SUCCEEDED")
        sent, recv = sent1 - sent0, recv1 - recv0
        ideal = info["size"] * args.devices
        threading.Thread(target=fleet.close, daemon=True).start()
        rows = [
            ("bundle", f"{info['size'] / 1e6:.2f} MB in {len(chunks)} chunks of {args.chunk_kb} KiB"),
            ("devices", f"{args.devices} (canary {args.canary}), {ok} SUCCEEDED"),
            ("publish (retained chunks)", f"{t_pub:.2f} s"),
            *[(f"  {name}", f"{secs:.2f} s") for name, secs in waves],
            ("rollout, job sent -> last wave done", f"{t_roll:.2f} s"),
            ("broker bytes sent (to devices)", f"{sent / 1e6:.2f} MB"),
            ("broker bytes received", f"{recv / 1e6:.2f} MB"),
            ("bundle size x devices", f"{ideal / 1e6:.2f} MB"),
            ("sent / (size x devices)", f"{sent / ideal:.3f}"),
        ]
        width = max(len(r[0]) for r in rows)
        print("\n".join(f"{a.ljust(width)}  {b}" for a, b in rows))
        if ok == args.devices:
            return 0
        keep = True
        failed = {d: s for d, s in report["results"].items() if s != "SUCCEEDED"}
        untouched = f", {len(report['untouched'])} untouched" if report["untouched"] else ""
        dev = next(iter(failed), ids[0])
        print(
            f"bench_rollout: {len(failed)} of {args.devices} devices did not succeed "
            f"({', '.join(f'{d}={s}' for d, s in failed.items())}{untouched}); the logs are kept in {work}\n"
            f"{work / f'{dev}.log'}, last lines:\n{log_tail(work / f'{dev}.log')}",
            file=sys.stderr,
        )
        return 1
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        broker.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
