"""Ed25519 keys for model bundles: generate a key pair, sign a bundle, verify one.

    python -m tools.keys generate --out ~/.config/portrait/keys/bundle     (bundle.key private, bundle.pub public)
    python -m tools.keys sign device/runtime/bundles/default --key ~/.config/portrait/keys/bundle.key
    python -m tools.keys verify device/runtime/bundles/default --pub device/runtime/keys/default-2026-12-01.pub

The private key stays with the operator: never in the repository, never in a bundle. Devices trust
the public keys in device/runtime/keys/.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device.runtime.bundle import MANIFEST, SIGNATURE, Bundle, canonical, key_id, load_public_key
from device.updates.keys import KeyFileExists, refuse_existing, write_private, write_public


def generate(prefix: str | Path) -> tuple[Path, Path]:
    """PREFIX.key (0600) and PREFIX.pub, both new: KeyFileExists, naming the file, if either is there."""
    prefix = Path(prefix).expanduser()
    key_path, pub_path = prefix.with_suffix(".key"), prefix.with_suffix(".pub")
    refuse_existing(key_path, pub_path)  # both checked first: never a new .key beside a stale .pub
    private = Ed25519PrivateKey.generate()
    write_private(key_path, private)
    write_public(pub_path, private.public_key())
    return key_path, pub_path


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).expanduser().read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def sign_bundle(bundle: str | Path, key: Ed25519PrivateKey) -> Path:
    bundle = Path(bundle)
    manifest = json.loads((bundle / MANIFEST).read_text())
    signature = key.sign(canonical(manifest))
    record = {
        "algorithm": "ed25519",
        "key_id": key_id(key.public_key()),
        "signature": base64.b64encode(signature).decode(),
        "signed": "canonical manifest.json: JSON, sorted keys, separators (',', ':'), UTF-8",
    }
    path = bundle / SIGNATURE
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.keys", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--out", required=True, help="path prefix: PREFIX.key and PREFIX.pub")
    s = sub.add_parser("sign")
    s.add_argument("bundle")
    s.add_argument("--key", required=True)
    v = sub.add_parser("verify")
    v.add_argument("bundle")
    v.add_argument("--pub", nargs="*", help="public keys (default: the device's trusted keys)")
    args = p.parse_args(argv)
    if args.command == "generate":
        try:
            key_path, pub_path = generate(args.out)
        except KeyFileExists as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"private key: {key_path} (keep it secret, out of the repository)\npublic key: {pub_path}")
    elif args.command == "sign":
        print(f"signed: {sign_bundle(args.bundle, load_private_key(args.key))}")
    else:
        from device.errors import BadInput

        keys = [load_public_key(k) for k in args.pub] if args.pub else None
        try:
            bundle = Bundle(args.bundle, keys=keys)
            for runtime in bundle.runtimes:
                bundle.files(runtime)
            bundle.golden()
        except BadInput as e:
            print(f"INVALID: {e}", file=sys.stderr)
            return 1
        print(f"ok: {bundle.name} {bundle.version}, signed by key {bundle.signer}, files verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
