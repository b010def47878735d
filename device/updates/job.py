"""The signed documents of fleet updates: the update job (one per rollout) and the rollback order.

    envelope = {"job": {...JobDoc...}, "signature": signing key over canonical(job),
                "cert": root-signed certificate of that signing key, "revocations": optional newest list}
    order    = {"order": {...RollbackOrder...}, "signature": ..., "cert": ..., "revocations": ...}

Both name their targets (devices, groups, or the whole fleet): a device refuses one that does not name
it, so a captured envelope cannot be replayed to devices the operator did not pick.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from device.config import TOPIC_SAFE

JOB_ID = r"^[A-Za-z0-9_.-]{1,64}$"
# A bundle name becomes one path component (versions/<name>-<version>-<sha8>): no '/', no leading '.'.
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
VERSION_MAX = 64
SHA256 = r"^[0-9a-f]{64}$"
BundleKind = Literal["model", "content"]
TargetName = Annotated[str, Field(pattern=TOPIC_SAFE)]


class UpdateState(StrEnum):
    """The published states of an update job; device.updates.machine holds the allowed transitions."""

    QUEUED = "QUEUED"
    DOWNLOADING = "DOWNLOADING"
    VERIFYING = "VERIFYING"
    HEALTH_CHECK = "HEALTH_CHECK"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"
    ROLLED_BACK = "ROLLED_BACK"


TERMINAL = (UpdateState.SUCCEEDED, UpdateState.FAILED, UpdateState.REJECTED, UpdateState.ROLLED_BACK)


def semver_key(version: str) -> tuple[Any, ...]:
    """Sort key of a semantic version: a pre-release sorts before its release (1.0.0-rc1 < 1.0.0)."""
    match = SEMVER.match(version) if len(version) <= VERSION_MAX else None
    if match is None:
        raise ValueError(
            f"{version[:80]!r} is not a semantic version (MAJOR.MINOR.PATCH, at most {VERSION_MAX} characters)"
        )
    major, minor, patch, pre = match.groups()
    pre_key: tuple[Any, ...] = (
        (1,) if pre is None else (0, *[(0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")])
    )
    return (int(major), int(minor), int(patch), pre_key)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttSource(Strict):
    type: Literal["mqtt"] = "mqtt"
    topic: str = Field(
        pattern=r"^[A-Za-z0-9_./-]+$", max_length=200, description="Chunk i is retained on <topic>/chunk/<i>."
    )
    chunk_bytes: int = Field(gt=0, le=1 << 20)
    chunks: list[str] = Field(description="sha256 of each chunk, in order.")

    @field_validator("chunks")
    @classmethod
    def _hashes(cls, chunks: list[str]) -> list[str]:
        if not chunks or not all(re.match(SHA256, c) for c in chunks):
            raise ValueError("needs one sha256 (64 lowercase hex) per chunk")
        return chunks


class HttpSource(Strict):
    type: Literal["http"] = "http"
    url: str = Field(pattern=r"^https?://", max_length=2000)


class Targets(Strict):
    """Who a signed document is for: device ids and/or groups, or explicitly the whole fleet."""

    devices: list[TargetName] = Field(default_factory=list, max_length=100_000, description="Device ids.")
    groups: list[TargetName] = Field(default_factory=list, max_length=1000, description="Device groups.")
    fleet: bool = Field(False, description="Every device: only a rollout to the whole fleet says so.")

    @model_validator(mode="after")
    def _names_someone(self) -> Targets:
        if self.fleet and (self.devices or self.groups):
            raise ValueError("fleet: true already names every device; give no devices or groups with it")
        if not (self.fleet or self.devices or self.groups):
            raise ValueError("names no device, no group and not the fleet")
        return self

    def names(self, device_id: str, groups: Sequence[str]) -> bool:
        return self.fleet or device_id in self.devices or any(g in self.groups for g in groups)

    def describe(self) -> str:
        if self.fleet:
            return "the whole fleet"
        parts = [f"devices {self.devices[:10]}{' ...' if len(self.devices) > 10 else ''}"] if self.devices else []
        return " and ".join(parts + ([f"groups {self.groups}"] if self.groups else []))

    def refusal(self, device_id: str, groups: Sequence[str]) -> str | None:
        """Why this device must refuse the document, or None when it is named."""
        if self.names(device_id, groups):
            return None
        return f"not for this device: it is for {self.describe()}; this is {device_id!r} in groups {list(groups)}"


class JobDoc(Strict):
    id: str = Field(pattern=JOB_ID)
    kind: BundleKind
    name: str = Field(pattern=NAME, description="Bundle name: letters, digits, '_', '.', '-'; one path component.")
    version: str = Field(max_length=VERSION_MAX)
    size: int = Field(gt=0)
    sha256: str = Field(pattern=SHA256)
    source: MqttSource | HttpSource = Field(discriminator="type")
    issued: float
    expires: float
    device_kinds: list[str] = Field(default_factory=list, description="Empty: any kind.")
    targets: Targets = Field(description="The devices this job is for; any other device refuses it.")
    group: str | None = Field(None, max_length=64, description="Rollout group (informational).")
    rollout: str | None = Field(None, max_length=64)

    @field_validator("version")
    @classmethod
    def _semver(cls, version: str) -> str:
        semver_key(version)
        return version

    @model_validator(mode="after")
    def _sizes(self) -> JobDoc:
        if isinstance(self.source, MqttSource):
            n = len(self.source.chunks)
            if not (self.source.chunk_bytes * (n - 1) < self.size <= self.source.chunk_bytes * n):
                raise ValueError(f"size {self.size} does not fit {n} chunks of {self.source.chunk_bytes} bytes")
        return self

    def expired(self, now: float | None = None) -> bool:
        return (now or time.time()) > self.expires


class RollbackOrder(Strict):
    """The operator's signed `rollback`: back to the kept previous version, on the devices it names."""

    action: Literal["rollback"] = Field(description="What the order does; a job document cannot pass for it.")
    id: str = Field(pattern=JOB_ID, description="Unique: a device refuses an id it has seen.")
    kind: BundleKind = Field(description="Which bundle goes back to its previous version.")
    targets: Targets
    issued: float
    expires: float

    @model_validator(mode="after")
    def _window(self) -> RollbackOrder:
        if self.expires <= self.issued:
            raise ValueError(f"expires ({self.expires}) must come after issued ({self.issued})")
        return self

    def expired(self, now: float | None = None) -> bool:
        return (now or time.time()) > self.expires


class Envelope(Strict):
    job: dict[str, Any]
    signature: str = Field(max_length=200)
    cert: dict[str, Any]
    revocations: dict[str, Any] | None = None


class OrderEnvelope(Strict):
    order: dict[str, Any]
    signature: str = Field(max_length=200)
    cert: dict[str, Any]
    revocations: dict[str, Any] | None = None


def _signed(
    field: str, doc: dict[str, Any], signing_key: Any, cert: dict[str, Any], revocations: dict[str, Any] | None
) -> dict[str, Any]:
    from device.updates.keys import b64, canonical

    env = {field: doc, "signature": b64(signing_key.sign(canonical(doc))), "cert": cert}
    if revocations is not None:
        env["revocations"] = revocations
    return env


def make_envelope(
    job: dict[str, Any], signing_key: Any, cert: dict[str, Any], revocations: dict[str, Any] | None = None
) -> dict[str, Any]:
    return _signed("job", job, signing_key, cert, revocations)


def make_order(
    order: dict[str, Any], signing_key: Any, cert: dict[str, Any], revocations: dict[str, Any] | None = None
) -> dict[str, Any]:
    return _signed("order", order, signing_key, cert, revocations)
