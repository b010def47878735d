"""Names from a signed job never build a path outside the slot root (in-process, real folders)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from device.errors import BadInput
from device.updates.install import Slots
from device.updates.job import JobDoc
from device.updates.paths import inside

SHA = "ab" * 32


@pytest.mark.parametrize("name", ["../../../../escape", "a/b", "..", ".hidden", "", "-dash", "x" * 65])
def test_slot_refuses_a_bundle_name_that_is_not_one_plain_component(tmp_path: Path, name: str) -> None:
    slots = Slots(tmp_path / "bundles")
    with pytest.raises(BadInput, match="bundle name"):
        slots.version_dir(name, "1.0.0", SHA)


@pytest.mark.parametrize("version", ["1.0.0/../../x", "1.0", "v1.0.0", "1.0.0-" + "a" * 70])
def test_slot_refuses_a_version_that_is_not_semver(tmp_path: Path, version: str) -> None:
    with pytest.raises(BadInput, match="bundle version"):
        Slots(tmp_path / "bundles").version_dir("portrait", version, SHA)


def test_slot_builds_the_version_folder_inside_versions(tmp_path: Path) -> None:
    slots = Slots(tmp_path / "bundles")
    folder = slots.version_dir("portrait-int8", "1.2.3-rc.1", SHA)
    assert folder == (tmp_path / "bundles" / "versions" / "portrait-int8-1.2.3-rc.1-abababab").resolve()


def test_a_planted_link_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "root" / "bundle-1.0.0-abababab")
    with pytest.raises(BadInput, match="outside"):
        inside(tmp_path / "root", "bundle-1.0.0-abababab")


def test_job_document_refuses_a_climbing_name() -> None:
    job = {
        "id": "j1",
        "kind": "model",
        "name": "../../../../escape",
        "version": "1.0.0",
        "size": 10,
        "sha256": SHA,
        "source": {"type": "http", "url": "https://example.org/b.tar"},
        "issued": 0,
        "expires": 1,
        "targets": {"fleet": True},
    }
    with pytest.raises(ValidationError, match="name"):
        JobDoc.model_validate(job)
