"""Assemble the training and held-out photo folders of the committed checkpoint from public packages.

    python -m models.faces --train ~/.cache/portrait/train-faces --holdout ~/.cache/portrait/holdout-faces

Every photo is a test or sample image shipped inside a package on PyPI or Debian: the command downloads
those few archives (pip, apt-get), extracts the named files and checks each one's sha256, so the folders
are the same photos, byte for byte, wherever they are made. Run once at setup time; training itself
reads only the folders (nothing is fetched at run time).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from device.assets import sha256_file


@dataclass(frozen=True)
class Photo:
    name: str  # file name in the assembled folder
    member: str  # path inside the archive
    sha256: str
    split: str  # "train" or "holdout"


@dataclass(frozen=True)
class Source:
    requirement: str  # pip requirement, or "deb:PACKAGE" for a Debian package
    kind: str  # "sdist", "wheel" or "deb"
    photos: tuple[Photo, ...]


SOURCES = (
    Source(
        "face_recognition==1.3.0",
        "sdist",
        tuple(
            Photo(name, f"face_recognition-1.3.0/tests/test_images/{name}", sha, "train")
            for name, sha in (
                ("obama.jpg", "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6"),
                ("obama2.jpg", "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6"),
                ("obama3.jpg", "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3"),
                ("biden.jpg", "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c"),
            )
        ),
    ),
    # A group photo: five faces of at least 96 px, turned and tilted (the frontal portraits above are not).
    Source(
        "insightface==2.1",
        "sdist",
        (
            Photo(
                "t1.jpg",
                "insightface-2.1/insightface/data/images/t1.jpg",
                "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489",
                "train",
            ),
        ),
    ),
    Source(
        "deb:opencv-doc",
        "deb",
        (
            Photo(
                "face_swapped.jpg",
                "./usr/share/doc/opencv-doc/opencv4/html/face_swapped.jpg",
                "302634120bc53f9327cb06c7cb265fc4741fef281514d8f3bd214749e53ce6cc",
                "train",
            ),
        ),
    ),
    # Held out with skimage's astronaut: a second person the generator never sees in training.
    Source(
        "matplotlib==3.11.2",
        "wheel",
        (
            Photo(
                "grace_hopper.jpg",
                "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
                "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
                "holdout",
            ),
        ),
    ),
)


class FacesError(Exception):
    pass


def _download(source: Source, into: Path) -> Path:
    """The package's archive in `into` (pip download / apt-get download)."""
    if source.kind == "deb":
        command = ["apt-get", "download", source.requirement.split(":", 1)[1]]
        cwd: Path | None = into
    else:
        binary = ["--only-binary", ":all:"] if source.kind == "wheel" else ["--no-binary", ":all:"]
        # No build isolation: reading an sdist's metadata would otherwise fetch its build dependencies.
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation", "-q", *binary,
                   "-d", str(into), source.requirement]  # fmt: skip
        cwd = None
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise FacesError(f"faces: could not download {source.requirement}: {result.stderr.strip()[-800:]}")
    archives = [p for p in into.iterdir() if p.suffix in {".gz", ".whl", ".deb", ".zip"}]
    if len(archives) != 1:
        raise FacesError(f"faces: expected one archive for {source.requirement}, got {[p.name for p in archives]}")
    return archives[0]


def _read_member(archive: Path, kind: str, member: str) -> bytes:
    if kind == "wheel":
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    if kind == "deb":
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["dpkg-deb", "-x", str(archive), tmp], check=True)
            return (Path(tmp) / member).read_bytes()
    with tarfile.open(archive) as t:
        handle = t.extractfile(member)
        if handle is None:
            raise KeyError(member)
        return handle.read()


def extract(archive: Path, source: Source, folders: dict[str, Path]) -> list[Path]:
    """Write the source's photos from its archive into folders[split], each checked against its sha256.

    A photo whose bytes do not match is not written (FacesError names it and both hashes)."""
    written = []
    for photo in source.photos:
        try:
            content = _read_member(archive, source.kind, photo.member)
        except KeyError as exc:
            raise FacesError(f"faces: {archive.name} has no {photo.member}") from exc
        digest = hashlib.sha256(content).hexdigest()
        if digest != photo.sha256:
            raise FacesError(f"faces: {photo.member} in {archive.name} has sha256 {digest}, expected {photo.sha256}")
        folder = folders[photo.split]
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / photo.name
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_bytes(content)
        tmp.replace(target)
        written.append(target)
    return written


def _already_there(source: Source, folders: dict[str, Path]) -> bool:
    for photo in source.photos:
        path = folders[photo.split] / photo.name
        if not path.is_file() or sha256_file(path) != photo.sha256:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.faces", description=__doc__.split("\n\n")[0])
    p.add_argument("--train", default="~/.cache/portrait/train-faces", help="folder for the training photos")
    p.add_argument("--holdout", default="~/.cache/portrait/holdout-faces", help="folder for the held-out photos")
    args = p.parse_args(argv)
    folders = {"train": Path(args.train).expanduser(), "holdout": Path(args.holdout).expanduser()}
    try:
        for source in SOURCES:
            if _already_there(source, folders):
                print(f"faces: {source.requirement}: already there")
                continue
            print(f"faces: {source.requirement}: downloading", flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                archive = _download(source, Path(tmp))
                for path in extract(archive, source, folders):
                    print(f"  {path}")
    except FacesError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"faces: training photos in {folders['train']}, held-out photos in {folders['holdout']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
