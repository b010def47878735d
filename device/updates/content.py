"""What an installed content bundle changes on the device: the portrait and its playlist (and the
playlist's schedule), laid over the config file's own portrait section."""

from __future__ import annotations

from pathlib import Path

from device.config import AppConfig, Script
from device.updates.install import manifest

CHANGED_KEYS = ["portrait.photo", "portrait.playlist", "portrait.schedule_interval_s"]


def content_overlay(config: AppConfig, folder: Path) -> tuple[AppConfig, list[str]]:
    """`config` with the bundle's first portrait, its playlist of scripts (audio paths resolved inside
    the bundle) and its schedule interval; and the keys that changed."""
    doc = manifest(folder)
    scripts = {}
    for item in doc.get("scripts", []):
        fields = {key: item[key] for key in ("text", "transcript", "lang", "voice") if item.get(key) is not None}
        if item.get("audio"):
            fields["audio"] = folder / item["audio"]
        scripts[item["id"]] = Script(**fields)
    playlist = [scripts[ref] for ref in doc.get("playlist", []) if ref in scripts]
    portrait = config.portrait.model_copy()
    if doc.get("portraits"):
        portrait.photo = folder / doc["portraits"][0]
    portrait.playlist = playlist
    interval = (doc.get("schedule") or {}).get("interval_s")
    if interval is not None:
        portrait.schedule_interval_s = float(interval)
    return config.model_copy(update={"portrait": portrait}), list(CHANGED_KEYS)
