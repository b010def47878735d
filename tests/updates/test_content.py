"""Content bundles: portraits, scripts (text + language/voice, or audio), playlist."""

from __future__ import annotations

import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from device.updates.install import sign_manifest
from tests.updates.support import Keyring, Unit, installed, to, wait_job
from tools.fleet import FleetClient, bundle_info, content_manifest, make_job


def content_bundle(folder: Path, version: str, key: object, corrupt_image: bool = False) -> Path:
    folder.mkdir()
    if corrupt_image:
        (folder / "founder.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    else:
        Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(folder / "founder.png")
    with wave.open(str(folder / "welcome.wav"), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(np.zeros(1600, np.int16).tobytes())
    scripts = [
        {"id": "hello", "text": "Welcome to the museum.", "lang": "en", "voice": "en-us"},
        {"id": "recorded", "audio": "welcome.wav", "transcript": "Welcome.", "lang": "en"},
    ]
    content_manifest(folder, "hall-content", version, scripts, schedule={"interval_s": 300})
    sign_manifest(folder, key)
    return folder


def test_content_bundle_installs_and_state_shows_it(
    units: Callable[..., Unit], fleet: FleetClient, keyring: Keyring, tmp_path: Path
) -> None:
    unit = units("dev")
    info, chunks = bundle_info(content_bundle(tmp_path / "c1", "1.0.0", keyring.signing))
    fleet.publish_bundle(info, chunks)
    envelope = make_job(info, keyring.signing, keyring.cert, targets=to(unit))
    unit.device.command("update", envelope)
    job = wait_job(unit.watcher, unit.id, envelope["job"]["id"], ("SUCCEEDED", "FAILED", "REJECTED"), 60)
    assert job["state"] == "SUCCEEDED", job
    assert job["result"]["health"] == {"files": 2, "scripts": 2, "portraits": 1}
    state = unit.device.command("status")["state"]
    assert state["content_version"] == "1.0.0" and installed(state, "content") == "1.0.0"
    assert installed(state) == "0.1.0"  # the model is untouched
    # The device now plays the bundle's portrait and playlist.
    portrait = unit.device.command("status")["portrait"]
    assert portrait["photo"].endswith("founder.png") and "/content/" in portrait["photo"]
    assert portrait["playlist"][0] == "Welcome to the museum." and portrait["playlist"][1].endswith("welcome.wav")


def test_content_bundle_with_a_file_that_does_not_decode_fails(
    units: Callable[..., Unit], fleet: FleetClient, keyring: Keyring, tmp_path: Path
) -> None:
    unit = units("dev")
    info, chunks = bundle_info(content_bundle(tmp_path / "c2", "1.0.0", keyring.signing, corrupt_image=True))
    fleet.publish_bundle(info, chunks)
    envelope = make_job(info, keyring.signing, keyring.cert, targets=to(unit))
    unit.device.command("update", envelope)
    job = wait_job(unit.watcher, unit.id, envelope["job"]["id"], ("SUCCEEDED", "FAILED", "REJECTED"), 60)
    assert job["state"] == "FAILED" and "does not decode" in job["reason"]
    assert unit.device.command("status")["state"]["content_version"] is None
