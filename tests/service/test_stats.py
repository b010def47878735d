"""Stats read from /proc and /sys, and the rolling frame metrics."""

from __future__ import annotations

from pathlib import Path

from device.service.stats import FrameMetrics, ProcSampler, percentiles


def test_percentiles_of_a_known_series() -> None:
    assert percentiles([float(v) for v in range(1, 101)]) == {"p50": 51.0, "p95": 95.0}
    assert percentiles([]) is None


def test_process_numbers_come_from_proc(tmp_path: Path) -> None:
    sample = ProcSampler(tmp_path, thermal_root=tmp_path / "no-thermal").sample()
    assert sample["rss_bytes"] > 10_000_000  # a Python process with numpy loaded
    assert sample["cpu_percent"] >= 0 and 0 <= sample["system_cpu_percent"] <= 100
    assert sample["disk_free_bytes"] > 0
    assert sample["temperature_c"] is None  # no thermal zones: null, not a made-up number


def test_temperature_is_the_hottest_thermal_zone(tmp_path: Path) -> None:
    for zone, milli in (("thermal_zone0", "45000"), ("thermal_zone1", "61500")):
        (tmp_path / zone).mkdir()
        (tmp_path / zone / "temp").write_text(milli + "\n")
    assert ProcSampler(tmp_path, thermal_root=tmp_path).temperature_c() == 61.5


def test_frame_metrics_report_rate_latency_and_drops() -> None:
    metrics = FrameMetrics()
    for _ in range(5):
        metrics.record_frame(20.0, generator_ms=8.0)
    metrics.record_dropped(2)
    snap = metrics.snapshot()
    assert snap["frame_ms"] == {"p50": 20.0, "p95": 20.0}
    assert snap["generator_ms"] == {"p50": 8.0, "p95": 8.0}
    assert snap["dropped_frames"] == 2 and snap["fps"] > 0
