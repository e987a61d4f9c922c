"""PostgreSQL upkeep of the audit trail: monthly partitions, and the application role's grants.

``audit_entries`` is partitioned by month on ``at`` (migration 3c1a9e5b7d20), with a DEFAULT partition
that takes whatever no monthly partition covers, so an append never fails for want of a partition.
``ensure_partitions`` creates ``audit_entries_YYYY_MM`` for this month and ``ahead`` months after it,
idempotently. PostgreSQL refuses to create a partition for a range the DEFAULT partition already holds
rows of; such a month is *skipped* (and said so), unless ``move=True``: then, in one transaction, the
DEFAULT partition is locked (appends landing in it wait), the month's rows are copied into a new table
unchanged (payloads and hashes move as they are, so the chains still verify), deleted from DEFAULT,
and the table is attached as the month's partition. Nothing else ever leaves DEFAULT.

Creating a partition needs the owner of ``audit_entries``: run ``carnet audit partitions`` with the
owner's database URL (the migration role). The application role cannot, by design (see ``grants_sql``);
the worker's daily upkeep then reports that it lacks the privilege and nothing breaks (rows go to DEFAULT).

``grants_sql(role)`` is what the operator runs so that the application role may append to the trail
and read it, but never change or remove an entry (docs/audit.md, "PostgreSQL: the append-only role").
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

PARENT = "audit_entries"
DEFAULT = "audit_entries_default"
AUDIT_TABLES = ("audit_entries", "audit_heads", "audit_checkpoints", "audit_checkpoint_heads")
ROLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class Month:
    name: str
    start: dt.datetime
    end: dt.datetime
    state: str  # exists | created | moved | skipped | not-permitted | failed
    rows_moved: int = 0
    reason: str = ""

    def as_json(self) -> dict[str, object]:
        return {
            "partition": self.name,
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "state": self.state,
            "rowsMoved": self.rows_moved,
            "reason": self.reason or None,
        }


@dataclass(slots=True)
class PartitionReport:
    supported: bool = True  # False on SQLite: no partitions
    months: list[Month] = field(default_factory=list)

    @property
    def created(self) -> list[Month]:
        return [m for m in self.months if m.state in ("created", "moved")]

    @property
    def ok(self) -> bool:
        return all(m.state in ("exists", "created", "moved") for m in self.months)


def month_start(day: dt.date, plus: int = 0) -> dt.datetime:
    index = day.year * 12 + (day.month - 1) + plus
    return dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=dt.UTC)


def partition_name(start: dt.datetime) -> str:
    return f"{PARENT}_{start:%Y_%m}"


def _literal(value: dt.datetime) -> str:
    return f"'{value.strftime('%Y-%m-%d %H:%M:%S')}+00'"


def existing_partitions(conn: Connection) -> dict[str, str]:
    """Partition name → bound expression (``FOR VALUES FROM (…) TO (…)`` or ``DEFAULT``)."""
    rows = conn.execute(
        sa.text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = CAST(:parent AS regclass) ORDER BY c.relname"
        ),
        {"parent": PARENT},
    ).all()
    return {str(name): str(bound) for name, bound in rows}


def ensure_partitions(engine: Engine, *, today: dt.date, ahead: int, move: bool = False) -> PartitionReport:
    """Create the monthly partitions from ``today``'s month to ``ahead`` months later (PostgreSQL only)."""
    if engine.dialect.name != "postgresql":
        return PartitionReport(supported=False)
    report = PartitionReport()
    with engine.connect() as conn:
        existing = existing_partitions(conn)
        conn.rollback()
    for plus in range(ahead + 1):
        start, end = month_start(today, plus), month_start(today, plus + 1)
        name = partition_name(start)
        if name in existing:
            report.months.append(Month(name, start, end, "exists"))
            continue
        month = _create(engine, name, start, end, move)
        report.months.append(month)
        if month.state == "not-permitted":
            break  # every other month would be refused the same way
    return report


def _create(engine: Engine, name: str, start: dt.datetime, end: dt.datetime, move: bool) -> Month:
    bounds = f"FROM ({_literal(start)}) TO ({_literal(end)})"
    try:
        with engine.begin() as conn:
            held = conn.execute(
                sa.text(f"SELECT count(*) FROM {DEFAULT} WHERE at >= :start AND at < :end"),  # noqa: S608 - constant
                {"start": start, "end": end},
            ).scalar_one()
            if not held:
                conn.execute(sa.text(f"CREATE TABLE {name} PARTITION OF {PARENT} FOR VALUES {bounds}"))
                return Month(name, start, end, "created")
            if not move:
                return Month(
                    name,
                    start,
                    end,
                    "skipped",
                    reason=f"the DEFAULT partition holds {held} entries of this month; run with --move to move them",
                )
            # Appends that land in DEFAULT wait until the move commits; the others go on.
            conn.execute(sa.text(f"LOCK TABLE {DEFAULT} IN ACCESS EXCLUSIVE MODE"))
            conn.execute(sa.text(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
            moved = conn.execute(
                sa.text(
                    f"INSERT INTO {name} SELECT * FROM {DEFAULT} WHERE at >= :start AND at < :end"  # noqa: S608
                ),
                {"start": start, "end": end},
            ).rowcount
            conn.execute(
                sa.text(f"DELETE FROM {DEFAULT} WHERE at >= :start AND at < :end"),  # noqa: S608 - constant
                {"start": start, "end": end},
            )
            conn.execute(sa.text(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES {bounds}"))
            return Month(name, start, end, "moved", rows_moved=moved)
    except DBAPIError as exc:
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate == "42501":  # insufficient_privilege: not the owner of audit_entries
            return Month(name, start, end, "not-permitted", reason="only the owner of audit_entries creates partitions")
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "failed"
        return Month(name, start, end, "failed", reason=reason)


# --------------------------------------------------------------------------------------- grants


def quote_role(role: str) -> str:
    """The role as a quoted SQL identifier; refuses anything but a plain role name."""
    if not ROLE_NAME.match(role):
        raise ValueError(f"{role!r} is not a plain PostgreSQL role name (letters, digits and _)")
    return f'"{role}"'


def grants_sql(role: str, *, whole_schema: bool = True) -> str:
    """The SQL that makes the trail append-only for ``role`` (idempotent; run it as the tables' owner).

    With ``whole_schema``, it first grants the ordinary privileges on every table and sequence of the
    schema (what the application needs elsewhere), then narrows the audit tables.
    """
    r = quote_role(role)
    tables = ", ".join(AUDIT_TABLES)
    lines = ["-- Carnet: privileges of the application role " + r + " (run as the owner of the tables).", "BEGIN;"]
    if whole_schema:
        lines += [
            "-- Everything but the audit trail: the usual read/write privileges.",
            f"GRANT USAGE ON SCHEMA public TO {r};",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {r};",
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {r};",
        ]
    lines += [
        "-- The audit trail: append and read, never change or remove.",
        f"REVOKE ALL ON TABLE {tables} FROM PUBLIC;",
        f"REVOKE ALL ON TABLE {tables} FROM {r};",
        f"GRANT SELECT, INSERT ON TABLE audit_entries TO {r};",
        "-- Heads: carnet_audit_append creates a chain's head and moves it (SELECT … FOR UPDATE, UPDATE).",
        f"GRANT SELECT, INSERT, UPDATE ON TABLE audit_heads TO {r};",
        "-- Checkpoints are written once (the worker's job) and never updated.",
        f"GRANT SELECT, INSERT ON TABLE audit_checkpoints, audit_checkpoint_heads TO {r};",
        f"GRANT USAGE ON SEQUENCE audit_checkpoints_id_seq TO {r};",
        f"REVOKE UPDATE ON SEQUENCE audit_checkpoints_id_seq FROM {r};",
        "REVOKE ALL ON FUNCTION carnet_audit_append(uuid, bytea[]) FROM PUBLIC;",
        f"GRANT EXECUTE ON FUNCTION carnet_audit_append(uuid, bytea[]) TO {r};",
        "-- Partitions (DEFAULT and monthly): no direct privilege; reads and appends go through audit_entries.",
        "DO $$",
        "DECLARE part regclass;",
        "BEGIN",
        "    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'audit_entries'::regclass LOOP",
        f"        EXECUTE format('REVOKE ALL ON TABLE %s FROM PUBLIC, %I', part, '{role}');",
        "    END LOOP;",
        "END $$;",
        "COMMIT;",
    ]
    return "\n".join(lines) + "\n"


def apply_grants(engine: Engine, role: str, *, whole_schema: bool = True) -> None:
    """Run ``grants_sql`` (as the owner of the tables: the engine's user)."""
    if engine.dialect.name != "postgresql":
        raise ValueError("grants exist on PostgreSQL only")
    script = grants_sql(role, whole_schema=whole_schema)
    raw = engine.raw_connection()
    try:
        driver = raw.driver_connection
        driver.autocommit = True  # type: ignore[union-attr]  # the script holds its own BEGIN/COMMIT
        with driver.cursor() as cursor:  # type: ignore[union-attr]
            cursor.execute(script)
    finally:
        raw.close()
