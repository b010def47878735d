"""Per-stage timings (p50/p95 ms) for the CLI summary, `portrait bench` and the daemon's stats."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


class StageTimer:
    def __init__(self, keep: int = 10_000) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.keep = keep

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - start) * 1000.0)

    def add(self, name: str, milliseconds: float) -> None:
        samples = self.samples[name]
        samples.append(milliseconds)
        if len(samples) > self.keep:
            del samples[: len(samples) - self.keep]

    def reset(self, keep: tuple[str, ...] = ()) -> None:
        """Forget the samples of every stage but `keep` (e.g. after a warm-up)."""
        for name in [name for name in self.samples if name not in keep]:
            del self.samples[name]

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            name: {
                "p50": round(float(np.percentile(values, 50)), 3),
                "p95": round(float(np.percentile(values, 95)), 3),
                "count": len(values),
            }
            for name, values in self.samples.items()
            if values
        }
