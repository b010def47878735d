"""Health numbers for the `stats` topic, read from /proc and /sys (no psutil on the device)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any


def percentiles(values: list[float]) -> dict[str, float] | None:
    """p50 and p95 (nearest rank) in the values' unit, or None when there are none."""
    if not values:
        return None
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]

    return {"p50": round(rank(0.50), 3), "p95": round(rank(0.95), 3)}


class FrameMetrics:
    """Rolling window of rendered frames; the live render loop and the job worker feed it."""

    def __init__(self, window_s: float = 10.0, max_samples: int = 2000) -> None:
        self.window_s = window_s
        self._frames: deque[tuple[float, float, float | None]] = deque(maxlen=max_samples)
        self._dropped = 0
        self._lock = threading.Lock()

    def record_frame(self, frame_ms: float, generator_ms: float | None = None) -> None:
        with self._lock:
            self._frames.append((time.monotonic(), frame_ms, generator_ms))

    def record_dropped(self, count: int = 1) -> None:
        with self._lock:
            self._dropped += count

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            recent = [f for f in self._frames if now - f[0] <= self.window_s]
            dropped = self._dropped
        fps = 0.0
        if len(recent) >= 2:
            span = recent[-1][0] - recent[0][0]
            fps = (len(recent) - 1) / span if span > 0 else 0.0
        return {
            "fps": round(fps, 2),
            "frame_ms": percentiles([f[1] for f in recent]),
            "generator_ms": percentiles([f[2] for f in recent if f[2] is not None]),
            "dropped_frames": dropped,
        }


class ProcSampler:
    """CPU % since the previous sample, resident memory, SoC temperature and free disk."""

    def __init__(self, disk_path: Path, thermal_root: Path = Path("/sys/class/thermal")) -> None:
        self.disk_path = disk_path
        self.thermal_root = thermal_root
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._last_proc = (time.monotonic(), self._process_cpu_s())
        self._last_system = _system_cpu_times()

    def _process_cpu_s(self) -> float:
        # /proc/self/stat fields 14 and 15 (utime, stime) after the ')' that ends the command name
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self._ticks

    def sample(self) -> dict[str, Any]:
        now, cpu = time.monotonic(), self._process_cpu_s()
        last_t, last_cpu = self._last_proc
        self._last_proc = (now, cpu)
        process_pct = 100.0 * (cpu - last_cpu) / (now - last_t) if now > last_t else 0.0
        system = _system_cpu_times()
        system_pct = None
        if system and self._last_system:
            busy = system[0] - self._last_system[0]
            total = system[1] - self._last_system[1]
            system_pct = round(100.0 * busy / total, 1) if total > 0 else 0.0
        self._last_system = system
        return {
            "cpu_percent": round(process_pct, 1),  # of one core, like top
            "system_cpu_percent": system_pct,
            "rss_bytes": rss_bytes(),
            "temperature_c": self.temperature_c(),
            "disk_free_bytes": _disk_free(self.disk_path),
        }

    def temperature_c(self) -> float | None:
        """The hottest thermal zone (the SoC on a Pi or Jetson), or None where the board has none."""
        temps = []
        for zone in self.thermal_root.glob("thermal_zone*/temp"):
            try:
                temps.append(int(zone.read_text().strip()) / 1000.0)
            except (OSError, ValueError):
                continue
        return round(max(temps), 1) if temps else None


def rss_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _system_cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all cores from the first line of /proc/stat."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def _disk_free(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None
