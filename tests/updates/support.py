"""Helpers for the update tests: keys, small signed test bundles, devices with an updater."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.runtime import DEFAULT_BUNDLE
from device.updates import keys as chain
from device.updates.install import manifest, sign_manifest
from tests.service.support import DaemonProcess, Device, Watcher


@dataclass
class Keyring:
    root_pub: Path
    signing: Any  # Ed25519PrivateKey
    cert: dict[str, Any]
    other: Any  # a second certified signing key (the revocation test revokes it)
    other_cert: dict[str, Any]
    root: Any
    rogue_cert: dict[str, Any]  # certified by a root the devices do not trust


def make_keyring(folder: Path) -> Keyring:
    root = chain.Ed25519PrivateKey.generate()
    chain.write_public(folder / "root.pub", root.public_key())
    signing, other = chain.Ed25519PrivateKey.generate(), chain.Ed25519PrivateKey.generate()
    rogue_root = chain.Ed25519PrivateKey.generate()
    return Keyring(
        folder / "root.pub",
        signing,
        chain.certify(root, signing.public_key()),
        other,
        chain.certify(root, other.public_key()),
        root,
        chain.certify(rogue_root, signing.public_key()),
    )


@dataclass
class SignerFiles:
    """The signing key and its certificate as the operator keeps them: files for tools.fleet."""

    key: Path
    cert: Path


def signer_files(folder: Path, keyring: Keyring) -> SignerFiles:
    files = SignerFiles(folder / "sign.key", folder / "sign.cert.json")
    chain.write_private(files.key, keyring.signing)
    files.cert.write_text(json.dumps(keyring.cert))
    return files


def model_bundle(dest: Path, version: str, key: Any, broken_golden: bool = False, name: str | None = None) -> Path:
    """A small real model bundle: the default's ONNX model and one golden vector, re-versioned and signed."""
    dest.mkdir(parents=True)
    doc = json.loads((DEFAULT_BUNDLE / "manifest.json").read_text())
    doc["version"] = version
    if name is not None:
        doc["name"] = name
    doc["runtimes"] = {"onnxruntime": doc["runtimes"]["onnxruntime"]}
    shutil.copy(DEFAULT_BUNDLE / "generator.int8.onnx", dest / "generator.int8.onnx")
    with np.load(DEFAULT_BUNDLE / "golden.npz") as f:
        inputs, expected = f["inputs"][:1], f["expected"][:1]
    if broken_golden:
        expected = 255 - expected  # "golden vectors off": the model cannot match them
    np.savez(dest / "golden.npz", inputs=inputs, expected=expected)
    data = (dest / "golden.npz").read_bytes()
    doc["golden"].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), count=1)
    (dest / "manifest.json").write_text(json.dumps(doc, indent=2))
    sign_manifest(dest, key)
    return dest


def to(*units: Unit) -> dict[str, Any]:
    """The `targets` of a signed job or order for these devices."""
    return {"devices": [u.id for u in units]}


def installed(state: dict[str, Any], kind: str = "model") -> str | None:
    return ((state.get("installed") or {}).get(kind) or {}).get("version")


def job_topic(device: str, job_id: str) -> str:
    return f"portrait/{device}/jobs/{job_id}"


def wait_job(watcher: Watcher, device: str, job_id: str, states: tuple[str, ...], timeout: float = 60.0) -> dict:
    return watcher.wait_for(
        lambda m: m.topic == job_topic(device, job_id) and m.json()["state"] in states,
        timeout,
        what=f"job {job_id} in {states}",
    ).json()


def last_state(watcher: Watcher, device: str) -> dict[str, Any]:
    with watcher._cond:
        docs = [m.json() for m in watcher.messages if m.topic == f"portrait/{device}/state"]
    return docs[-1]


def current_version(root: Path) -> str | None:
    """What bundles/current on disk says, read without the daemon."""
    link = root / "bundles" / "current"
    return manifest(link.resolve()).get("version") if link.is_symlink() else None


@dataclass
class Unit:
    """One device under test: its daemon process, its config, watcher and command helper."""

    proc: DaemonProcess
    config: Path
    id: str
    root: Path
    device: Device
    watcher: Watcher
