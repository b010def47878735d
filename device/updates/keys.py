"""The key chain: an offline root key certifies the signing keys; the devices carry only the root's
public key (config `updates.root_key`), so a signing key can be rotated or revoked without reflashing.

    certificate  {"body": {"key_id", "public_key" (raw, base64), "issued", "expires", "purpose"},
                  "signature": root's Ed25519 signature over canonical(body)}
    revocations  {"body": {"serial", "issued", "revoked": [key_id, ...]}, "signature": root's}

A device keeps the revocation list with the highest serial it has seen (from a job envelope or the
retained `portrait/fleet/revocations` topic): an older list cannot un-revoke a key.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from device.files import atomic_write

PURPOSE = "bundle-signing"


class ChainError(Exception):
    """A certificate, signature or revocation list that does not check out; the message says why."""


def canonical(doc: Any) -> bytes:
    # The same canonical form as device.runtime.bundle.canonical (sorted keys, no spaces, UTF-8).
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    # Same id as device.runtime.bundle.key_id: the first 16 hex of sha256(raw public key).
    return hashlib.sha256(raw_public(key)).hexdigest()[:16]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


# -- files ------------------------------------------------------------------------------------------


class KeyFileExists(FileExistsError):
    """A key file would be written over something already there (a file, or a link planted there)."""


def refuse_existing(*paths: Path) -> None:
    """KeyFileExists naming the first path that exists or is a link (even a dangling one)."""
    for path in paths:
        if path.is_symlink():
            raise KeyFileExists(f"{path} is a symbolic link: refusing to write a key through it")
        if path.exists():
            raise KeyFileExists(
                f"{path} already exists: refusing to overwrite it (move it away, or pick another --out)"
            )


def create_new(path: Path, data: bytes, mode: int) -> None:
    """Write a file that must not exist yet, with `mode` from the start; never through a link.

    O_EXCL makes a file already there (or a link, dangling or not) an error instead of truncating it
    with its old, maybe world-readable mode; O_NOFOLLOW refuses a link in the last component too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        refuse_existing(path)
        raise KeyFileExists(f"{path} already exists: refusing to overwrite it") from None
    except OSError as exc:
        if path.is_symlink():
            raise KeyFileExists(f"{path} is a symbolic link: refusing to write a key through it") from None
        raise OSError(exc.errno, f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_private(path: Path, key: Ed25519PrivateKey) -> None:
    """A new PEM file, mode 0600 from its creation; KeyFileExists if anything is at `path` already."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    create_new(Path(path), pem, 0o600)


def write_public(path: Path, key: Ed25519PublicKey) -> None:
    """A new PEM file (0644); like write_private, never over an existing file or through a link."""
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    create_new(Path(path), pem, 0o644)


def load_private(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).expanduser().read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ChainError(f"{path}: not an Ed25519 private key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(Path(path).expanduser().read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ChainError(f"{path}: not an Ed25519 public key")
    return key


# -- documents --------------------------------------------------------------------------------------


class Signed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: dict[str, Any]
    signature: str = Field(max_length=200)

    def verify(self, key: Ed25519PublicKey, what: str) -> None:
        try:
            key.verify(unb64(self.signature), canonical(self.body))
        except (InvalidSignature, ValueError) as exc:
            raise ChainError(f"{what}: the signature does not verify with the root key") from exc


def sign_doc(body: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    return {"body": body, "signature": b64(key.sign(canonical(body)))}


def certify(root: Ed25519PrivateKey, signing: Ed25519PublicKey, valid_days: float | None = 730.0) -> dict[str, Any]:
    now = time.time()
    body = {
        "key_id": key_id(signing),
        "public_key": b64(raw_public(signing)),
        "issued": round(now),
        "expires": round(now + valid_days * 86400) if valid_days else None,
        "purpose": PURPOSE,
    }
    return sign_doc(body, root)


def revocation_list(root: Ed25519PrivateKey, revoked: list[str], serial: int) -> dict[str, Any]:
    return sign_doc({"serial": serial, "issued": round(time.time()), "revoked": sorted(set(revoked))}, root)


class KeyChain:
    """What the device trusts: the root key, and the newest root-signed revocation list (persisted)."""

    def __init__(self, root: Ed25519PublicKey, store: Path) -> None:
        self.root = root
        self.store = store  # <state>/updates/revocations.json
        self.serial = -1
        self.revoked: set[str] = set()
        if store.is_file():
            # A corrupt file: the next list from the operator replaces it.
            with contextlib.suppress(ValueError, ChainError):
                self.accept_revocations(json.loads(store.read_text()), persist=False)

    def accept_revocations(self, doc: dict[str, Any], persist: bool = True) -> bool:
        """Adopt a newer root-signed list; True when it replaced ours. Raises ChainError if forged."""
        signed = Signed.model_validate(doc)
        signed.verify(self.root, "revocation list")
        serial, revoked = signed.body.get("serial"), signed.body.get("revoked")
        if not isinstance(serial, int) or not isinstance(revoked, list):
            raise ChainError("revocation list: needs an integer serial and a list of key ids")
        if serial <= self.serial:
            return False  # an older (or the same) list cannot un-revoke anything
        self.serial, self.revoked = serial, {str(k) for k in revoked}
        if persist:
            atomic_write(self.store, json.dumps(doc).encode())
        return True

    def signing_key(self, cert: dict[str, Any], now: float | None = None) -> Ed25519PublicKey:
        """The signing key a certificate vouches for, if the root signed it and it is not revoked or expired."""
        try:
            signed = Signed.model_validate(cert)
        except ValueError as exc:
            raise ChainError(f"signing key certificate is malformed: {exc}") from None
        body = signed.body
        try:
            signed.verify(self.root, "signing key certificate")
        except ChainError:
            raise ChainError(
                f"unknown signing key {body.get('key_id', '?')}: its certificate is not signed by the root key"
            ) from None
        if body.get("purpose") != PURPOSE:
            raise ChainError(f"signing key {body.get('key_id')}: certificate purpose {body.get('purpose')!r}")
        try:
            key = Ed25519PublicKey.from_public_bytes(unb64(str(body["public_key"])))
        except (KeyError, ValueError) as exc:
            raise ChainError(f"signing key certificate: bad public key ({exc})") from None
        kid = key_id(key)
        if kid != body.get("key_id"):
            raise ChainError("signing key certificate: key_id does not match the public key")
        if kid in self.revoked:
            raise ChainError(f"signing key {kid} is revoked (revocation list serial {self.serial})")
        expires = body.get("expires")
        if expires is not None and (now or time.time()) > float(expires):
            raise ChainError(f"signing key {kid}: its certificate expired")
        return key


def verify_with(key: Ed25519PublicKey, signature: str, doc: Any, what: str) -> None:
    try:
        key.verify(unb64(signature), canonical(doc))
    except (InvalidSignature, ValueError) as exc:
        raise ChainError(
            f"{what}: bad signature (not made by the certified signing key, or the document was changed)"
        ) from exc
