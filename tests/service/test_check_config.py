"""`portrait serve --check-config` opens every file the config names, as the daemon will: a config that
passes starts, and one that names a missing or wrong file exits 2 naming the key and the file."""

from __future__ import annotations

import json
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tests.conftest import run_cli
from tests.service.test_mqtt_security import make_ca, make_server_cert


def write_wav(path: Path, seconds: float = 0.5, rate: int = 16000) -> Path:
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * rate)) / rate) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(tone.tobytes())
    return path


@pytest.fixture
def files(tmp_path: Path, photos: Path) -> dict[str, Path]:
    """One real, valid file of each kind a config can name, and a few wrong ones."""
    folder = tmp_path / "files"
    folder.mkdir()
    root = ed25519.Ed25519PrivateKey.generate().public_key()
    (folder / "root.pub").write_bytes(
        root.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    other = ec.generate_private_key(ec.SECP256R1()).public_key()  # a public key, but not an Ed25519 one
    (folder / "ec.pub").write_bytes(
        other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    ca, ca_key, ca_path = make_ca(folder, "ca")
    cert, key = make_server_cert(folder, ca, ca_key)
    stray = ec.generate_private_key(ec.SECP256R1())  # a private key, but not the certificate's
    (folder / "stray.key").write_bytes(
        stray.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (folder / "notes.txt").write_text("not a photo, not a sound, not a key\n")
    (folder / "camera").mkdir()
    return {
        "photo": photos / "astronaut.png",
        "speech": write_wav(folder / "speech.wav"),
        "line": write_wav(folder / "line.wav"),
        "root": folder / "root.pub",
        "ec": folder / "ec.pub",
        "ca": ca_path,
        "cert": cert,
        "key": key,
        "stray_key": folder / "stray.key",
        "text": folder / "notes.txt",
        "camera": folder / "camera",
        "missing": folder / "gone.wav",
    }


def config_text(files: dict[str, Path], state: Path, **change: str) -> str:
    """A config naming every kind of file; `change` swaps one for another (key -> name in `files`)."""
    path = {
        key: str(files[change.get(key, default)])
        for key, default in (
            ("photo", "photo"),
            ("speech", "speech"),
            ("line", "line"),
            ("root", "root"),
            ("ca", "ca"),
            ("cert", "cert"),
            ("key", "key"),
            ("camera", "camera"),
        )
    }
    q = {key: json.dumps(value) for key, value in path.items()}
    return f"""
[device]
state_dir = {json.dumps(str(state))}

[mqtt.tls]
enabled = true
ca_file = {q["ca"]}
cert_file = {q["cert"]}
key_file = {q["key"]}

[camera]
type = "file"
path = {q["camera"]}

[portrait]
photo = {q["photo"]}
playlist = [{{ text = "Welcome." }}, {{ audio = {q["speech"]} }}]

[capture.line]
audio = {q["line"]}

[updates]
root_key = {q["root"]}
"""


def check(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "portrait.toml"
    path.write_text(text)
    return run_cli("serve", "--config", str(path), "--check-config", timeout=120)


def test_a_config_whose_files_are_all_right_passes(tmp_path: Path, files: dict[str, Path]) -> None:
    result = check(tmp_path, config_text(files, tmp_path / "state"))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


BAD = [
    pytest.param({"camera": "missing"}, "camera.path", "missing", "no such file or folder", id="camera-missing"),
    pytest.param(
        {"speech": "missing"}, "portrait.playlist[1].audio", "missing", "no such file", id="playlist-audio-missing"
    ),
    pytest.param({"speech": "text"}, "portrait.playlist[1].audio", "text", "", id="playlist-audio-not-audio"),
    pytest.param({"line": "missing"}, "capture.line.audio", "missing", "no such file", id="line-audio-missing"),
    pytest.param({"line": "photo"}, "capture.line.audio", "photo", "", id="line-audio-is-a-photo"),
    pytest.param({"root": "text"}, "updates.root_key", "text", "not an Ed25519 public key", id="root-key-not-pem"),
    pytest.param({"root": "ec"}, "updates.root_key", "ec", "not an Ed25519 public key", id="root-key-not-ed25519"),
    pytest.param({"root": "missing"}, "updates.root_key", "missing", "no such file", id="root-key-missing"),
    pytest.param({"ca": "text"}, "mqtt.tls.ca_file", "text", "not a PEM CA certificate", id="ca-not-pem"),
    pytest.param({"key": "stray_key"}, "mqtt.tls.cert_file", "cert", "private key", id="key-of-another-cert"),
    pytest.param({"photo": "text"}, "portrait.photo", "text", "not a readable image", id="photo-not-an-image"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("change", "key", "culprit", "why"), BAD)
def test_a_wrong_file_exits_2_naming_the_key_and_the_file(
    tmp_path: Path, files: dict[str, Path], change: dict[str, str], key: str, culprit: str, why: str
) -> None:
    result = check(tmp_path, config_text(files, tmp_path / "state", **change))
    assert result.returncode == 2, (result.stdout, result.stderr)
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"portrait: {key}: "), message
    assert str(files[culprit]) in message and why in message, message
    assert "Traceback" not in result.stderr
