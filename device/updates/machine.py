"""An update job as an explicit state machine: the allowed transitions, and the typed records the
updater persists (one JSON file per job, plus the probation record).

    QUEUED -> DOWNLOADING (progress, again and again) -> VERIFYING -> HEALTH_CHECK -> SUCCEEDED
    any active state -> REJECTED (the job or bundle is refused) or FAILED (it could not be done)
    HEALTH_CHECK (the new version did not start) or SUCCEEDED (crash loop, watchdog, operator) -> ROLLED_BACK
    VERIFYING / HEALTH_CHECK -> DOWNLOADING when a crash lost the downloaded archive

A change the table does not allow is a bug in the updater: `JobRecord.move` raises IllegalTransition.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from device.updates.job import TERMINAL, BundleKind, Envelope, JobDoc, UpdateState

Q, D, V, H = UpdateState.QUEUED, UpdateState.DOWNLOADING, UpdateState.VERIFYING, UpdateState.HEALTH_CHECK
OK, FAIL, REJ, BACK = UpdateState.SUCCEEDED, UpdateState.FAILED, UpdateState.REJECTED, UpdateState.ROLLED_BACK

TRANSITIONS: dict[UpdateState, frozenset[UpdateState]] = {
    Q: frozenset({D, REJ, FAIL}),
    D: frozenset({D, V, REJ, FAIL}),
    V: frozenset({H, D, REJ, FAIL}),
    H: frozenset({OK, D, REJ, FAIL, BACK}),
    OK: frozenset({BACK}),
    FAIL: frozenset(),
    REJ: frozenset(),
    BACK: frozenset(),
}
# A record is born QUEUED (admitted) or REJECTED (refused on arrival).
INITIAL = frozenset({Q, REJ})
# The worker has nothing left to do: SUCCEEDED can still be rolled back, but by probation or the operator.
DONE = frozenset(TERMINAL)
ACTIVE = frozenset(TRANSITIONS) - DONE


class IllegalTransition(RuntimeError):
    """The updater tried a state change the table does not allow: a bug, never bad input."""


class Refused(Exception):
    """Ends a job in REJECTED or FAILED with a reason the operator reads."""

    def __init__(self, state: UpdateState, reason: str) -> None:
        super().__init__(reason)
        self.state, self.reason = state, reason


class Stopping(Exception):
    """The daemon is stopping: leave the job where it is; the next start resumes it."""


def check_transition(old: UpdateState, new: UpdateState) -> None:
    if new not in TRANSITIONS[old]:
        allowed = ", ".join(sorted(TRANSITIONS[old])) or "nothing (final)"
        raise IllegalTransition(f"update job: {old} -> {new} is not allowed (from {old}: {allowed})")


class Record(BaseModel):
    # Unknown keys are dropped: a record written by a newer version still loads.
    model_config = ConfigDict(extra="ignore")


class Progress(Record):
    chunks: int = 0
    total: int = 0
    bytes: int = 0
    resumed_from: int = 0


class JobResult(Record):
    health: dict[str, Any] | None = None
    probation_until: float | None = None


class JobRecord(Record):
    """What the device knows about one job, persisted at <state>/updates/jobs/<id>.json."""

    id: str
    state: UpdateState
    reason: str | None = None
    job: dict[str, Any] = Field(description="The job document as signed (validated again on every run).")
    envelope: Envelope | None = Field(default=None, description="Kept for the signing key's certificate.")
    signer: str | None = None
    accepted: float
    updated: float | None = None
    progress: Progress | None = None
    result: JobResult | None = None
    download_started: float | None = Field(
        default=None,
        description="Wall clock of the first DOWNLOADING: the download deadline runs from here, across restarts.",
    )

    @classmethod
    def new(cls, job_id: str, job: dict[str, Any], state: UpdateState = Q, reason: str | None = None) -> JobRecord:
        if state not in INITIAL:
            raise IllegalTransition(f"update job: cannot start in {state} (only {', '.join(sorted(INITIAL))})")
        now = round(time.time(), 3)
        return cls(id=job_id, state=state, reason=reason, job=job, accepted=now, updated=now)

    def move(self, state: UpdateState, reason: str | None = None) -> None:
        check_transition(self.state, state)
        self.state, self.reason, self.updated = state, reason, round(time.time(), 3)

    @property
    def done(self) -> bool:
        return self.state in DONE

    def doc(self) -> JobDoc:
        return JobDoc.model_validate(self.job)

    def dump(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    def public(self, device_id: str) -> dict[str, Any]:
        """The retained job document: no envelope, everything an operator needs."""
        job = self.job
        return {
            "job_id": self.id,
            "device": device_id,
            "state": str(self.state),
            "reason": self.reason,
            "kind": job.get("kind"),
            "name": job.get("name"),
            "version": job.get("version"),
            "rollout": job.get("rollout"),
            "progress": self.progress.model_dump() if self.progress else None,
            "result": self.result.model_dump(exclude_none=True) if self.result else None,
            "updated": self.updated,
        }


class Probation(Record):
    """After a switch: <state>/updates/probation.json until `until`; a crash loop or watchdog rolls back."""

    job_id: str | None = None
    kind: BundleKind
    until: float
    restarts: int = 0
