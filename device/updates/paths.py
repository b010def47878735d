"""Paths built from names that arrive over the network (bundle names, versions, job ids).

A signed document is still input: its names must match a strict pattern, and the path made from them
must resolve inside the folder it is meant for, or nothing is written.
"""

from __future__ import annotations

import re
from pathlib import Path

from device.errors import BadInput
from device.updates.job import JOB_ID, NAME, SHA256, semver_key


def inside(root: Path, name: str) -> Path:
    """root/name, resolved; BadInput unless it is a single component that stays inside root."""
    base = root.resolve()
    path = (base / name).resolve()
    if "/" in name or "\\" in name or path.parent != base:
        raise BadInput(f"{name!r} would lie outside {root}: refusing to build a path from it")
    return path


def check_name(name: str) -> str:
    if not re.match(NAME, name):
        raise BadInput(
            f"bundle name {name[:80]!r}: only letters, digits, '_', '.', '-' (first a letter or digit), at most 64"
        )
    return name


def check_version(version: str) -> str:
    try:
        semver_key(version)
    except ValueError as exc:
        raise BadInput(f"bundle version: {exc}") from None
    return version


def version_folder(root: Path, name: str, version: str, sha256: str) -> Path:
    """<root>/<name>-<version>-<sha8> for an installed bundle, checked part by part."""
    if not re.match(SHA256, sha256):
        raise BadInput(f"bundle sha256 {sha256[:80]!r}: expected 64 lowercase hex digits")
    return inside(root, f"{check_name(name)}-{check_version(version)}-{sha256[:8]}")


def job_file(root: Path, job_id: str, suffix: str) -> Path:
    """<root>/<job_id><suffix> for a job's record or its partial download."""
    if not re.match(JOB_ID, job_id):
        raise BadInput(f"job id {job_id[:80]!r}: only letters, digits, '_', '.', '-', at most 64")
    return inside(root, f"{job_id}{suffix}")
