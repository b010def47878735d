"""The update job's state machine, in-process: the transition table, the typed record, the host interface."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device.updates.host import UpdaterHost
from device.updates.job import TERMINAL, UpdateState
from device.updates.machine import INITIAL, TRANSITIONS, IllegalTransition, JobRecord, JobResult, Progress

S = UpdateState


def record(state: UpdateState = S.QUEUED) -> JobRecord:
    rec = JobRecord.new("job-1", {"id": "job-1", "kind": "model", "name": "default", "version": "0.2.0"})
    rec.state = state  # set directly: these tests start the machine in a given state
    return rec


def test_every_state_has_a_row_and_only_states_as_targets() -> None:
    assert set(TRANSITIONS) == set(UpdateState)
    assert all(targets <= set(UpdateState) for targets in TRANSITIONS.values())


def test_final_states_lead_nowhere_except_a_success_rolled_back() -> None:
    assert {state: TRANSITIONS[state] for state in TERMINAL} == {
        S.SUCCEEDED: {S.ROLLED_BACK},
        S.FAILED: set(),
        S.REJECTED: set(),
        S.ROLLED_BACK: set(),
    }


def test_the_install_path_is_allowed_step_by_step() -> None:
    rec = record()
    for state in (S.DOWNLOADING, S.DOWNLOADING, S.VERIFYING, S.HEALTH_CHECK, S.SUCCEEDED, S.ROLLED_BACK):
        rec.move(state)
        assert rec.state == state
    assert rec.done


@pytest.mark.parametrize(
    "old,new",
    [
        (S.QUEUED, S.SUCCEEDED),  # skipping the download and every check
        (S.QUEUED, S.HEALTH_CHECK),
        (S.DOWNLOADING, S.SUCCEEDED),
        (S.VERIFYING, S.SUCCEEDED),
        (S.FAILED, S.QUEUED),  # a final state is final
        (S.REJECTED, S.DOWNLOADING),
        (S.SUCCEEDED, S.FAILED),
        (S.ROLLED_BACK, S.SUCCEEDED),
    ],
)
def test_an_illegal_transition_raises_and_changes_nothing(old: UpdateState, new: UpdateState) -> None:
    rec = record(old)
    with pytest.raises(IllegalTransition, match=f"{old} -> {new} is not allowed"):
        rec.move(new, "should not happen")
    assert rec.state == old and rec.reason is None


def test_every_active_state_can_be_refused_or_fail() -> None:
    for state in set(UpdateState) - set(TERMINAL):
        assert {S.REJECTED, S.FAILED} <= TRANSITIONS[state], state


def test_a_record_starts_only_queued_or_rejected() -> None:
    assert {S.QUEUED, S.REJECTED} == INITIAL
    with pytest.raises(IllegalTransition, match="cannot start in HEALTH_CHECK"):
        JobRecord.new("job-1", {}, S.HEALTH_CHECK)


def test_the_persisted_record_reads_back_the_same(tmp_path: Path) -> None:
    rec = record()
    rec.move(S.DOWNLOADING)
    rec.progress = Progress(chunks=3, total=20, bytes=3 * 32768, resumed_from=1)
    rec.result = JobResult(health={"backend": "onnxruntime"})
    path = tmp_path / "job-1.json"
    path.write_bytes(rec.dump())
    again = JobRecord.model_validate_json(path.read_bytes())
    assert again == rec
    assert json.loads(path.read_text())["state"] == "DOWNLOADING"  # plain JSON an operator can read
    assert again.public("dev")["progress"] == {"chunks": 3, "total": 20, "bytes": 98304, "resumed_from": 1}


def test_the_daemon_is_an_updater_host(tmp_path: Path) -> None:
    from device.config import ConfigStore
    from device.service.daemon import Daemon
    from tests.service.support import toml_dumps

    path = tmp_path / "portrait.toml"
    path.write_text(
        toml_dumps(
            {
                "device": {"id": "host-test", "state_dir": str(tmp_path / "state")},
                "mqtt": {"enabled": False},
                "generator": {"backend": "none"},
            }
        )
    )
    daemon = Daemon(ConfigStore(path))
    try:
        assert isinstance(daemon, UpdaterHost)
    finally:
        daemon.queue.close()
        daemon.outbox.close()
