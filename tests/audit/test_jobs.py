"""The audit trail's scheduled jobs run by the notification worker (``carnet worker`` and the development
worker of ``carnet serve``): a signed checkpoint when one is due, never before; partition upkeep on
PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from carnet.audit.models import AuditCheckpointHead
from carnet.notifications.worker import Worker
from carnet.runtime import Runtime
from tests.audit.conftest import Trail
from tests.audit.support import activity, check, checkpoint_ids
from tests.cli.support import carnet_env, run_carnet
from tests.conftest import make_settings

INTERVAL = 2  # seconds between checkpoints in these tests


@pytest.fixture
def trail_settings() -> dict[str, Any]:
    return {"audit_checkpoint_seconds": INTERVAL, "notify_poll_seconds": 0.05}


def checkpointed_chains(trail: Trail, checkpoint_id: int) -> set[uuid.UUID]:
    with trail.runtime.engine.connect() as conn:
        return set(
            conn.execute(
                sa.select(AuditCheckpointHead.chain).where(AuditCheckpointHead.checkpoint_id == checkpoint_id)
            ).scalars()
        )


def test_a_worker_pass_takes_a_checkpoint_when_due_and_not_before(trail: Trail) -> None:
    assert checkpoint_ids(trail.runtime) == []
    # Not due for an hour: the worker of this runtime takes the first checkpoint (none yet), then none.
    hourly = Runtime(make_settings(trail.url, audit_checkpoint_seconds=3600))
    try:
        worker = Worker(hourly)
        first = worker.audit_pass()
        assert first is not None
        assert first.checkpoint is not None  # none yet: due at once
        assert (first.partitions is not None) is trail.postgresql  # partition upkeep: PostgreSQL only
        patient_id, _, _, _ = activity(trail.api, reads=1)
        early = worker.audit_pass()
        assert early is not None
        assert early.checkpoint is None  # the last one is younger than the interval
        assert checkpoint_ids(trail.runtime) == [first.checkpoint.id]
    finally:
        hourly.dispose()

    # Every INTERVAL seconds: once that much time has passed, the next pass takes one.
    time.sleep(INTERVAL + 0.2)
    due = Worker(trail.runtime).audit_pass()
    assert due is not None
    assert due.checkpoint is not None
    assert checkpoint_ids(trail.runtime) == [first.checkpoint.id, due.checkpoint.id]
    assert uuid.UUID(patient_id) in checkpointed_chains(trail, due.checkpoint.id)  # the new activity is signed
    report = check(trail.runtime)
    assert report.ok
    assert report.checkpoints == 2


def test_the_worker_loop_takes_checkpoints(trail: Trail) -> None:
    worker = Worker(trail.runtime)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not checkpoint_ids(trail.runtime) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(checkpoint_ids(trail.runtime)) == 1
        activity(trail.api, reads=1)
        while len(checkpoint_ids(trail.runtime)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(checkpoint_ids(trail.runtime)) == 2
    finally:
        worker.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert check(trail.runtime).ok


def test_a_worker_told_not_to_runs_no_audit_job(trail: Trail) -> None:
    worker = Worker(trail.runtime, audit_jobs=False)
    assert worker.audit_pass() is None
    worker.drain(timeout=5)
    assert checkpoint_ids(trail.runtime) == []


def test_a_failing_audit_job_never_stops_the_worker(trail: Trail, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database gone")

    monkeypatch.setattr("carnet.notifications.worker.run_due_jobs", broken)
    assert Worker(trail.runtime).audit_pass() is None
    assert checkpoint_ids(trail.runtime) == []


def test_carnet_worker_once_takes_a_due_checkpoint(trail: Trail, tmp_path: Path) -> None:
    env = carnet_env(trail.url, audit_checkpoint_seconds="3600")
    first = run_carnet("worker", "--once", env=env, cwd=tmp_path)
    assert first.code == 0, first.describe()
    assert "audit checkpoint #1" in first.output
    assert checkpoint_ids(trail.runtime) == [1]
    assert check(trail.runtime).ok
