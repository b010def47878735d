"""The systemd unit: it verifies, and its hardening keeps the exposure score at or below 3.0.

Threshold: `systemd-analyze security` scores 0 (locked down) to 10 (unprotected); 3.0 is the top of
the range it calls "OK" for a service that needs the network, a camera and a GPU. The unit scores
1.8 today; the margin lets a later, justified relaxation (e.g. for the display) pass.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.service.support import REPO

UNIT = REPO / "systemd" / "portrait.service"
MAX_EXPOSURE = 3.0

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at a binary that exists here (verify checks it exists);
    /opt/portrait/.venv/bin/portrait is only there on a device."""
    text = UNIT.read_text()
    text, count = re.subn(r"^ExecStart=\S+", "ExecStart=/bin/true", text, flags=re.MULTILINE)
    assert count == 1
    path = tmp_path / "portrait.service"
    path.write_text(text)
    return path


def test_unit_verifies(unit_copy: Path) -> None:
    result = subprocess.run(["systemd-analyze", "verify", str(unit_copy)], capture_output=True, text=True, timeout=60)
    ours = [line for line in result.stderr.splitlines() if "portrait.service" in line]
    assert result.returncode == 0 and ours == [], result.stderr


def test_hardening_keeps_exposure_low(unit_copy: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit_copy)], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0 and "offline" in result.stderr:
        pytest.skip(f"this systemd has no offline security analysis: {result.stderr.strip()}")
    match = re.search(r"Overall exposure level for portrait\.service: ([0-9.]+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE
