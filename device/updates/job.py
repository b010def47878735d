"""The update job: a document the operator signs once per rollout; every device checks it.

    envelope = {"job": {...JobDoc...}, "signature": signing key over canonical(job),
                "cert": root-signed certificate of that signing key, "revocations": optional newest list}
"""

from __future__ import annotations

import re
import time
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

JOB_ID = r"^[A-Za-z0-9_.-]{1,64}$"
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
SHA256 = r"^[0-9a-f]{64}$"
BundleKind = Literal["model", "content"]


class UpdateState(StrEnum):
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
    match = SEMVER.match(version)
    if match is None:
        raise ValueError(f"{version!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    major, minor, patch, pre = match.groups()
    pre_key: tuple[Any, ...] = (1,) if pre is None else (0, *[
        (0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")
    ])
    return (int(major), int(minor), int(patch), pre_key)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttSource(Strict):
    type: Literal["mqtt"] = "mqtt"
    topic: str = Field(pattern=r"^[A-Za-z0-9_./-]+$", max_length=200,
                       description="Chunk i is retained on <topic>/chunk/<i>.")
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


class JobDoc(Strict):
    id: str = Field(pattern=JOB_ID)
    kind: BundleKind
    name: str = Field(min_length=1, max_length=100)
    version: str
    size: int = Field(gt=0)
    sha256: str = Field(pattern=SHA256)
    source: MqttSource | HttpSource = Field(discriminator="type")
    issued: float
    expires: float
    device_kinds: list[str] = Field(default_factory=list, description="Empty: any kind.")
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


class Envelope(Strict):
    job: dict[str, Any]
    signature: str = Field(max_length=200)
    cert: dict[str, Any]
    revocations: dict[str, Any] | None = None


def make_envelope(job: dict[str, Any], signing_key: Any, cert: dict[str, Any],
                  revocations: dict[str, Any] | None = None) -> dict[str, Any]:
    from device.updates.keys import b64, canonical

    env = {"job": job, "signature": b64(signing_key.sign(canonical(job))), "cert": cert}
    if revocations is not None:
        env["revocations"] = revocations
    return env
