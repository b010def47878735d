"""Installing a bundle: slots switched atomically, health checks, content bundles.

Layout under a slot root (`<updates.root>/bundles` for models, `<updates.root>/content` for content):

    versions/<name>-<version>-<sha8>/    each installed bundle, complete and fsynced before use
    versions/<...>.staging/              being extracted; never pointed at, removed at start
    current -> versions/<...>            what runs (device.runtime.bundle_path() reads bundles/current)
    previous -> versions/<...>           what `rollback` and probation go back to

A switch is two atomic renames of symlinks (previous first, then current), each fsynced: a power cut
leaves current on the old or the new version, both complete, never neither and never a mix.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import wave
from pathlib import Path
from typing import Any

from device.errors import BadInput, PortraitError
from device.updates.keys import canonical, key_id, verify_with
from device.updates.paths import version_folder

CONTENT_FORMAT = "talking-portrait-content/1"
MODEL_FORMAT = "talking-portrait-bundle/1"


class HealthCheckFailed(PortraitError):
    pass


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link(folder: Path, name: str, target: Path) -> None:
    """Point folder/name at target in one atomic rename (a relative link inside the slot root)."""
    tmp = folder / f".{name}.tmp"
    tmp.unlink(missing_ok=True)
    rel = os.path.relpath(target, folder) if target.is_relative_to(folder) else str(target)
    os.symlink(rel, tmp)
    os.replace(tmp, folder / name)
    _fsync_dir(folder)


class Slots:
    def __init__(self, root: Path, fallback: Path | None = None) -> None:
        (root / "versions").mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()  # resolved once: every path below is checked against it
        self.versions = self.root / "versions"
        self.fallback = fallback  # what runs when nothing was ever installed (the repo's default bundle)

    def _target(self, name: str) -> Path | None:
        link = self.root / name
        if link.is_symlink() and (link.resolve() / "manifest.json").is_file():
            return link.resolve()
        return None

    def current(self) -> Path | None:
        return self._target("current") or (
            self.fallback if self.fallback is not None and (self.fallback / "manifest.json").is_file() else None
        )

    def previous(self) -> Path | None:
        return self._target("previous")

    def version_dir(self, name: str, version: str, sha256: str) -> Path:
        """Where that bundle is installed; BadInput for a name or version that would leave versions/."""
        return version_folder(self.versions, name, version, sha256)

    def clean(self) -> None:
        """Remove what a crash left: staging folders, stray temp links, versions nothing points at."""
        keep = {p for p in (self._target("current"), self._target("previous")) if p is not None}
        for path in self.versions.iterdir():
            if path.resolve() not in keep and path.name.endswith(".staging"):
                shutil.rmtree(path, ignore_errors=True)
        for tmp in self.root.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        # Only the two slots are kept: older versions go (disk space on a Pi is precious).
        for path in self.versions.iterdir():
            if path.resolve() not in keep and not path.name.endswith(".staging"):
                shutil.rmtree(path, ignore_errors=True)

    def stage(self, archive: Path, final: Path) -> Path:
        from device.updates.transfer import extract

        if final.resolve().parent != self.versions:
            raise BadInput(f"{final} is not inside {self.versions}: refusing to install there")
        if final.is_dir():
            if final.resolve() in {self._target("current"), self._target("previous")}:
                return final
            shutil.rmtree(final)
        staging = final.with_name(final.name + ".staging")
        shutil.rmtree(staging, ignore_errors=True)
        extract(archive, staging)
        os.replace(staging, final)
        _fsync_dir(self.versions)
        return final

    def switch(self, new: Path) -> Path | None:
        """previous <- current, then current <- new; returns what was current."""
        if new.resolve().parent != self.versions:
            raise BadInput(f"{new} is not inside {self.versions}: refusing to switch to it")
        old = self.current()
        if old is not None and old.resolve() != new.resolve():
            _link(self.root, "previous", old)
        _link(self.root, "current", new)
        return old

    def rollback(self) -> Path:
        """current <- previous; the bad version is dropped so a second rollback cannot bring it back."""
        prev = self.previous()
        if prev is None:
            raise BadInput(f"{self.root}: no previous version to roll back to")
        bad = self._target("current")
        _link(self.root, "current", prev)
        (self.root / "previous").unlink(missing_ok=True)
        _fsync_dir(self.root)
        if bad is not None and bad != prev and bad.parent == self.versions:  # never the fallback, nothing outside
            shutil.rmtree(bad, ignore_errors=True)
        return prev


def manifest(folder: Path) -> dict[str, Any]:
    try:
        doc = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"bundle {folder.name}: manifest.json unreadable ({exc})") from None
    if not isinstance(doc, dict):
        raise BadInput(f"bundle {folder.name}: manifest.json is not an object")
    return doc


def describe(folder: Path | None) -> dict[str, Any] | None:
    """Name, version and manifest sha256 of an installed bundle, for `state`."""
    if folder is None:
        return None
    from device.updates.transfer import sha256_path

    try:
        doc = manifest(folder)
        return {
            "name": doc.get("name"),
            "version": doc.get("version"),
            "sha256": sha256_path(folder / "manifest.json"),
            "path": str(folder),
        }
    except (BadInput, OSError):
        return None


def sign_manifest(folder: Path, key: Any) -> Path:
    """signature.json over the canonical manifest: the format device.runtime.bundle verifies."""
    doc = manifest(folder)
    record = {
        "algorithm": "ed25519",
        "key_id": key_id(key.public_key()),
        "signature": base64.b64encode(key.sign(canonical(doc))).decode(),
        "signed": "canonical manifest.json: JSON, sorted keys, separators (',', ':'), UTF-8",
    }
    path = folder / "signature.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def verify_bundle_signature(folder: Path, key: Any) -> None:
    try:
        record = json.loads((folder / "signature.json").read_text())
    except (OSError, ValueError):
        raise BadInput("bundle is unsigned (no readable signature.json)") from None
    if record.get("algorithm") != "ed25519":
        raise BadInput(f"bundle signature algorithm {record.get('algorithm')!r} is not ed25519")
    verify_with(key, str(record.get("signature", "")), manifest(folder), "bundle manifest")


# -- health checks ------------------------------------------------------------------------------


def pick_backend(folder: Path, configured: str) -> str:
    from device.runtime import installed_backends
    from device.runtime.bundle import Bundle

    if configured not in ("auto", "none"):
        return configured
    names = installed_backends(Bundle(folder, verify_signature=False))
    if not names:
        raise HealthCheckFailed("no runtime installed here can load any model in the bundle")
    return names[0]


def check_model(
    folder: Path, backend: str, key: Any, latency_budget_ms: float, options: dict | None = None
) -> dict[str, Any]:
    """Load the model on the runtime (with its configured settings, on one thread), run the golden
    vectors (against the bundle's PSNR floor), time it."""
    from device.runtime import load_generator

    name = pick_backend(folder, backend)
    try:
        stage = load_generator(name, bundle=folder, keys=[key], threads=1, options=options)
    except (BadInput, PortraitError) as exc:
        raise HealthCheckFailed(str(exc)) from None
    except Exception as exc:  # a runtime that cannot load the file raises its own types
        raise HealthCheckFailed(f"{name} could not load the model: {type(exc).__name__}: {exc}") from None
    latency = stage.latency_ms(runs=5)
    if latency > latency_budget_ms:
        raise HealthCheckFailed(
            f"{name}: {latency:.1f} ms per crop is over the budget of {latency_budget_ms:g} ms "
            "(updates.latency_budget_ms)"
        )
    return {"backend": name, "golden_psnr": round(float(stage.golden_psnr or 0.0), 2), "latency_ms": round(latency, 2)}


def check_content(folder: Path) -> dict[str, Any]:
    """Every file listed matches its hash and decodes; every file a portrait, script or playlist names exists."""
    from device.updates.transfer import sha256_path

    doc = manifest(folder)
    if doc.get("format") != CONTENT_FORMAT:
        raise HealthCheckFailed(f"content bundle: format {doc.get('format')!r}, expected {CONTENT_FORMAT!r}")
    files = {}
    for entry in doc.get("files", []):
        rel = Path(entry["path"])
        path = folder / rel
        if rel.is_absolute() or ".." in rel.parts or not path.is_file():
            raise HealthCheckFailed(f"content bundle: {rel} is missing")
        if path.stat().st_size != entry.get("bytes") or sha256_path(path) != entry.get("sha256"):
            raise HealthCheckFailed(f"content bundle: {rel} does not match its sha256/size")
        _decode(path)
        files[str(rel)] = path
    scripts = {s.get("id"): s for s in doc.get("scripts", [])}
    for ref in doc.get("portraits", []):
        if ref not in files:
            raise HealthCheckFailed(f"content bundle: portrait {ref} is not in the bundle")
    for script in scripts.values():
        if bool(script.get("text")) == bool(script.get("audio")):
            raise HealthCheckFailed(f"content bundle: script {script.get('id')} needs text or audio")
        if script.get("audio") and script["audio"] not in files:
            raise HealthCheckFailed(f"content bundle: script {script.get('id')}: {script['audio']} is missing")
    for ref in doc.get("playlist", []):
        if ref not in scripts:
            raise HealthCheckFailed(f"content bundle: playlist names unknown script {ref}")
    return {"files": len(files), "scripts": len(scripts), "portraits": len(doc.get("portraits", []))}


def _decode(path: Path) -> None:
    suffix = path.suffix.lower()
    try:
        if suffix in (".png", ".jpg", ".jpeg", ".webp", ".bmp"):
            import cv2

            if cv2.imread(str(path)) is None:
                raise ValueError("not a readable image")
        elif suffix == ".wav":
            with wave.open(str(path)) as wav:
                if wav.getnframes() == 0:
                    raise ValueError("no audio frames")
                wav.readframes(wav.getnframes())
        elif suffix in (".txt", ".json", ".toml"):
            path.read_text(encoding="utf-8")
    except Exception as exc:
        raise HealthCheckFailed(f"content bundle: {path.name} does not decode ({exc})") from None
