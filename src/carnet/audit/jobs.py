"""The audit trail's scheduled jobs, for the worker's loop: ``run_due_jobs(runtime, now)``.

* a checkpoint when the latest one is ``CARNET_AUDIT_CHECKPOINT_SECONDS`` old (decided in the database,
  under the checkpoint lock, so several workers take one checkpoint between them);
* once a day per process, PostgreSQL partition upkeep: the monthly partitions of this month and the
  next ``CARNET_AUDIT_PARTITIONS_AHEAD`` (idempotent; a role that may not create them is told so in the
  log once a day, and entries keep going to the DEFAULT partition).

Both are safe to call as often as the loop likes: when nothing is due they cost one small query.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass

from carnet.audit import checkpoints, partitions
from carnet.logging import log
from carnet.runtime import Runtime

_upkeep_lock = threading.Lock()
_upkeep_done: dict[str, dt.date] = {}  # database URL → the day partition upkeep last ran in this process


@dataclass(frozen=True, slots=True)
class JobReport:
    checkpoint: checkpoints.Checkpoint | None = None
    partitions: partitions.PartitionReport | None = None


def run_due_jobs(runtime: Runtime, now: dt.datetime) -> JobReport:
    """Run the audit jobs that are due at ``now``; return what ran."""
    interval = dt.timedelta(seconds=runtime.settings.audit_checkpoint_seconds)
    taken = checkpoints.checkpoint(runtime, min_interval=interval)
    if taken is not None:
        log.info("audit.checkpoint", id=taken.id, heads=taken.heads)
    return JobReport(checkpoint=taken, partitions=_partition_upkeep(runtime, now.astimezone(dt.UTC).date()))


def _partition_upkeep(runtime: Runtime, today: dt.date) -> partitions.PartitionReport | None:
    if runtime.engine.dialect.name != "postgresql":
        return None
    key = runtime.settings.database_url
    with _upkeep_lock:
        if _upkeep_done.get(key) == today:
            return None
        _upkeep_done[key] = today
    report = partitions.ensure_partitions(runtime.engine, today=today, ahead=runtime.settings.audit_partitions_ahead)
    for month in report.months:
        if month.state == "created":
            log.info("audit.partition_created", partition=month.name)
        elif month.state == "not-permitted":
            log.warning("audit.partitions_need_owner", partition=month.name)
        elif month.state in ("skipped", "failed"):
            log.warning("audit.partition_not_created", partition=month.name, state=month.state, reason=month.reason)
    return report
