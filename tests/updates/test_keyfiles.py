"""Private keys from `portrait fleet keys` and `python -m tools.keys generate`: created 0600, never
written over an existing file or through a planted link (the real command lines, in a subprocess)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.support import REPO

COMMANDS = {
    "fleet keys root": lambda out: ["-m", "tools.fleet", "keys", "root", "--out", str(out)],
    "tools.keys generate": lambda out: ["-m", "tools.keys", "generate", "--out", str(out)],
}


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=60)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("command", COMMANDS)
def test_new_private_key_is_owner_only(tmp_path: Path, command: str) -> None:
    done = run(COMMANDS[command](tmp_path / "k"))
    assert done.returncode == 0, done.stderr
    assert mode(tmp_path / "k.key") == 0o600
    assert (tmp_path / "k.key").read_text().startswith("-----BEGIN PRIVATE KEY-----")


@pytest.mark.parametrize("command", COMMANDS)
def test_existing_world_readable_file_is_not_overwritten(tmp_path: Path, command: str) -> None:
    key = tmp_path / "k.key"
    key.write_text("someone else's file\n")
    key.chmod(0o644)
    done = run(COMMANDS[command](tmp_path / "k"))
    assert done.returncode == 2
    assert f"{key} already exists" in done.stderr
    assert key.read_text() == "someone else's file\n" and mode(key) == 0o644
    assert not (tmp_path / "k.pub").exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_planted_symlink_is_not_followed(tmp_path: Path, command: str) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    os.symlink(victim, tmp_path / "k.key")
    done = run(COMMANDS[command](tmp_path / "k"))
    assert done.returncode == 2
    assert f"{tmp_path / 'k.key'} is a symbolic link" in done.stderr
    assert victim.read_text() == "precious\n" and mode(victim) == 0o644


def test_signing_key_through_a_dangling_symlink_is_refused(tmp_path: Path) -> None:
    assert run(COMMANDS["fleet keys root"](tmp_path / "root")).returncode == 0
    os.symlink(tmp_path / "would-be-created", tmp_path / "sign1.key")
    done = run(
        ["-m", "tools.fleet", "keys", "signing", "--root", str(tmp_path / "root.key"), "--out", str(tmp_path / "sign1")]
    )
    assert done.returncode == 2
    assert f"{tmp_path / 'sign1.key'} is a symbolic link" in done.stderr
    assert not (tmp_path / "would-be-created").exists()
    assert not (tmp_path / "sign1.cert.json").exists()
