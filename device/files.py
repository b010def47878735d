"""Durable file writes shared by the service and the updater."""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: Path, data: bytes) -> None:
    """Write through a temp file and a rename, so a power cut leaves the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself must survive a power cut
    finally:
        os.close(dir_fd)


def allowed_file(value: str, folders: list[Path], setting: str) -> str:
    """The resolved path, if it names an existing file inside one of the folders."""
    path = Path(value)
    if not path.is_absolute():
        raise ValueError("must be an absolute path")
    real = path.resolve()  # follows symlinks and '..': a link out of the folder is still outside
    if not any(real.is_relative_to(folder.resolve()) for folder in folders):
        # Checked before existence, so a probe cannot learn which files exist elsewhere.
        raise ValueError(f"is outside the allowed folders ({setting})")
    if not real.is_file():
        raise ValueError("no such file")
    return str(real)
