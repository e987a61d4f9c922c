"""The periods of a record's life (reference/dmp.md §5): the opposition window and the retention.

* An announced record opens ``CARNET_RECORD_OPPOSITION_DAYS`` (42: six weeks, R1111-28) after the
  patient was informed (``info_sent_at``), unless they object.
* A closed record is kept ``CARNET_RECORD_RETENTION_YEARS`` (10, R1111-36 / L1111-18) from its closure,
  calendar years (a closure on 29 February ends on 28 February), then destroyed.
"""

from __future__ import annotations

import datetime as dt

from carnet.config import Settings
from carnet.records.models import Record


def add_years(moment: dt.datetime, years: int) -> dt.datetime:
    """``moment`` the same day ``years`` later (29 February → 28 February when the year has none)."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February in a year that has none
        return moment.replace(year=moment.year + years, day=28)


def opens_at(settings: Settings, record: Record) -> dt.datetime | None:
    """When an announced record opens unless its patient objects (None: not announced)."""
    if record.info_sent_at is None or not record.is_announced:
        return None
    return record.info_sent_at + dt.timedelta(days=settings.record_opposition_days)


def retention_ends(settings: Settings, record: Record) -> dt.datetime | None:
    """When a closed record's retention ends and it is destroyed (None: not closed)."""
    if record.closed_at is None:
        return None
    return add_years(record.closed_at, settings.record_retention_years)


def window_cutoff(settings: Settings, now: dt.datetime) -> dt.datetime:
    """Announced records informed at or before this moment are due to open at ``now``."""
    return now - dt.timedelta(days=settings.record_opposition_days)


def retention_cutoff(settings: Settings, now: dt.datetime) -> dt.datetime:
    """Records closed at or before this moment are due for destruction at ``now`` (calendar years)."""
    return add_years(now, -settings.record_retention_years)
