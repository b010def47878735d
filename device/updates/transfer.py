"""Bundle transfer: one archive per bundle, cut into chunks retained on the broker; the device pulls
the chunks it lacks into a partial file with a bitmap, so a reconnect or a restart resumes.

Broker traffic (see tools/fleet.py): `publish` sends the archive once, as retained messages
`<topic>/chunk/<i>`; a device subscribes to a window of the chunk topics it still lacks, the broker
sends those retained chunks, the device unsubscribes and asks for the next window. Each device costs
the bundle size once (plus what it re-fetches after an outage), and nothing flows unless a device asks.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

from device.assets import sha256_file
from device.errors import BadInput
from device.updates.paths import job_file


def chunk_topic(base: str, index: int) -> str:
    return f"{base}/chunk/{index}"


def pack(bundle_dir: Path) -> bytes:
    """The bundle as an uncompressed tar (models compress poorly; the device extracts it cheaply).
    Members are sorted and their metadata zeroed, so the same bundle always gives the same sha256."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in bundle_dir.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(str(path.relative_to(bundle_dir)))
            info.size, info.mode, info.mtime = path.stat().st_size, 0o644, 0
            with path.open("rb") as fh:
                tar.addfile(info, fh)
    return buf.getvalue()


def split(data: bytes, chunk_bytes: int) -> list[bytes]:
    return [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


sha256_path = sha256_file  # one hashing helper for the whole device (device.assets)


def extract(archive: Path, dest: Path) -> None:
    """Unpack into dest; only plain files and folders, nothing outside dest (a hostile archive is refused)."""
    dest.mkdir(parents=True)
    with tarfile.open(archive, mode="r:") as tar:
        for member in tar.getmembers():
            rel = Path(member.name)
            if rel.is_absolute() or ".." in rel.parts or not (member.isfile() or member.isdir()):
                raise BadInput(f"bundle archive: member {member.name!r} is not a plain file inside the bundle")
        tar.extractall(dest, filter="data")
    for path in [dest, *dest.rglob("*")]:
        if path.is_file():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())  # the staged copy must be on disk before `current` points at it


class ChunkFile:
    """A partial download: `<name>.part` (final size, chunks written at their offsets) and
    `<name>.bitmap` (one byte per chunk, 1 = written and hash-checked). Chunks are written, then flushed,
    then marked, so a crash loses at most the chunks not yet marked; `verify()` re-checks them all."""

    def __init__(self, folder: Path, name: str, size: int, chunk_bytes: int, hashes: list[str]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.part, self.bitmap_path = job_file(folder, name, ".part"), job_file(folder, name, ".bitmap")
        self.size, self.chunk_bytes, self.hashes = size, chunk_bytes, hashes
        fresh = not (
            self.part.is_file()
            and self.bitmap_path.is_file()
            and self.bitmap_path.stat().st_size == len(hashes)
            and self.part.stat().st_size == size
        )
        if fresh:
            with self.part.open("wb") as fh:
                fh.truncate(size)
            self.bitmap_path.write_bytes(bytes(len(hashes)))
        self.bitmap = bytearray(self.bitmap_path.read_bytes())
        self._fh = self.part.open("r+b")
        self.resumed_with = sum(self.bitmap) if not fresh else 0

    def expected_len(self, index: int) -> int:
        return min(self.chunk_bytes, self.size - index * self.chunk_bytes)

    def missing(self) -> list[int]:
        return [i for i, have in enumerate(self.bitmap) if not have]

    def have(self) -> int:
        return sum(self.bitmap)

    def write(self, index: int, data: bytes) -> bool:
        """Store chunk `index` if its hash is the signed one; False for a bad or unexpected chunk."""
        if not 0 <= index < len(self.hashes) or sha256_hex(data) != self.hashes[index]:
            return False
        if len(data) != self.expected_len(index):
            raise BadInput(f"chunk {index} is {len(data)} bytes; the job's size implies {self.expected_len(index)}")
        if self.bitmap[index]:
            return True
        self._fh.seek(index * self.chunk_bytes)
        self._fh.write(data)
        self.bitmap[index] = 1
        return True

    def checkpoint(self) -> None:
        """Flush the data, then the bitmap: a marked chunk is always on disk."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        tmp = self.bitmap_path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            fh.write(self.bitmap)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.bitmap_path)

    def verify_chunks(self) -> list[int]:
        """Re-read every marked chunk; unmark (and return) those that do not match (a torn write)."""
        self._fh.flush()
        bad = []
        with self.part.open("rb") as fh:
            for i, have in enumerate(self.bitmap):
                if have:
                    fh.seek(i * self.chunk_bytes)
                    if sha256_hex(fh.read(self.expected_len(i))) != self.hashes[i]:
                        self.bitmap[i] = 0
                        bad.append(i)
        if bad:
            self.checkpoint()
        return bad

    def close(self) -> None:
        self._fh.close()

    def discard(self) -> None:
        self.close()
        for path in (self.part, self.bitmap_path):
            path.unlink(missing_ok=True)
