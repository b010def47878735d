"""Model bundles: a directory with manifest.json, the model files it names (sha256,
bytes, precision), golden vectors, and signature.json, an Ed25519 signature over the canonical
manifest (JSON, sorted keys, no spaces, UTF-8). Nothing is loaded before the signature and the hashes
check out."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np

from device.assets import sha256_file
from device.errors import BadInput

FORMAT = "talking-portrait-bundle/1"
MANIFEST = "manifest.json"
SIGNATURE = "signature.json"
KEYS_DIR = Path(__file__).with_name("keys")  # public keys the device trusts (*.pub, PEM)


def canonical(manifest: dict) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_id(public_key) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(path: Path):
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_public_key(Path(path).read_bytes())


def trusted_keys() -> list:
    if importlib.util.find_spec("cryptography") is None:
        return []
    return [load_public_key(p) for p in sorted(KEYS_DIR.glob("*.pub"))]


class Bundle:
    """An opened, verified bundle. `Bundle(path)` checks the signature against the trusted keys
    (or `keys`), the format and the contract; `files(runtime)` checks the hashes of that runtime's files."""

    def __init__(self, path: str | Path, keys: list | None = None, verify_signature: bool = True) -> None:
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            raise BadInput(f"model bundle {self.path}: no {MANIFEST}")
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadInput(f"model bundle {self.path}: {MANIFEST} is not valid JSON ({e})") from e
        if verify_signature:
            self.signer = self.verify_signature(keys if keys is not None else trusted_keys())
        if self.manifest.get("format") != FORMAT:
            raise BadInput(f"model bundle {self.path}: format {self.manifest.get('format')!r}, expected {FORMAT!r}")
        self.contract = self.manifest["contract"]
        self.name, self.version = self.manifest.get("name", "?"), self.manifest.get("version", "?")

    # --- checks -------------------------------------------------------------------------------
    def verify_signature(self, keys: list) -> str:
        try:
            from cryptography.exceptions import InvalidSignature
        except ImportError as e:
            raise BadInput(
                f"model bundle {self.path}: cannot verify its signature: the cryptography package is not installed"
            ) from e

        sig_path = self.path / SIGNATURE
        if not sig_path.is_file():
            raise BadInput(f"model bundle {self.path}: unsigned (no {SIGNATURE}); refusing to load it")
        try:
            record = json.loads(sig_path.read_text())
            signature = base64.b64decode(record["signature"])
        except (ValueError, KeyError, TypeError) as e:
            raise BadInput(f"model bundle {self.path}: {SIGNATURE} is malformed ({e})") from e
        if record.get("algorithm") != "ed25519":
            raise BadInput(f"model bundle {self.path}: signature algorithm {record.get('algorithm')!r} is not ed25519")
        message = canonical(self.manifest)
        for key in keys:
            try:
                key.verify(signature, message)
                return key_id(key)
            except InvalidSignature:
                continue
        raise BadInput(
            f"model bundle {self.path}: the signature does not verify with any trusted key "
            f"(signed by key {record.get('key_id', '?')}); the manifest was changed or the signer is not trusted"
        )

    def _checked(self, entry: dict) -> Path:
        rel = Path(entry["path"])
        if rel.is_absolute() or ".." in rel.parts:
            raise BadInput(f"model bundle {self.path}: file path {entry['path']!r} leaves the bundle")
        path = self.path / rel
        if not path.is_file():
            raise BadInput(f"model bundle {self.path}: {rel} is missing")
        size = path.stat().st_size
        if size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise BadInput(
                f"model bundle {self.path}: {rel} does not match its sha256/size in the manifest (tampered or corrupt)"
            )
        return path

    # --- contents -----------------------------------------------------------------------------
    @property
    def runtimes(self) -> list[str]:
        return list(self.manifest.get("runtimes", {}))

    def runtime(self, name: str) -> dict:
        entry = self.manifest.get("runtimes", {}).get(name)
        if entry is None:
            raise BadInput(
                f"model bundle {self.name} {self.version}: has no model for the {name} runtime "
                f"(it has: {', '.join(self.runtimes) or 'none'})"
            )
        return entry

    def files(self, runtime: str) -> list[Path]:
        """The runtime's files, each verified against its sha256 and size first."""
        return [self._checked(f) for f in self.runtime(runtime)["files"]]

    def golden(self) -> tuple[np.ndarray, np.ndarray]:
        """Golden inputs (N x C x S x S float32 0..1) and expected outputs (the FP32 reference)."""
        entry = self.manifest["golden"]
        path = self._checked(entry)
        with np.load(path) as f:
            inputs = f["inputs"].astype(np.float32) / 255.0
            expected = f["expected"].astype(np.float32) / 255.0
        return inputs, expected

    @property
    def beats_warp_only(self) -> bool:
        return bool(self.manifest.get("evaluation", {}).get("beats_warp_only", False))

    @property
    def use_by_default(self) -> bool:
        """Whether `auto` should render with this generator: it must beat the warp on held-out faces
        by the numbers and not have been turned down by a visual review (recorded, signed, in the manifest)."""
        review = self.manifest.get("evaluation", {}).get("visual_review", {})
        return self.beats_warp_only and bool(review.get("use_by_default", True))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 99.0 if mse <= 1e-12 else float(10 * np.log10(1.0 / mse))
