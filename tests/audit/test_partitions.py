"""PostgreSQL upkeep of the trail: monthly partitions of ``audit_entries`` and the append-only application
role, set up exactly as docs/audit.md tells the operator (``carnet audit partitions``, ``carnet audit
grants``). Partitions and grants exist on PostgreSQL only; on SQLite the same calls say so and do nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import errors as pg_errors
from starlette.testclient import TestClient

from carnet.app import create_app
from carnet.audit import checkpoints, partitions, writer
from carnet.audit.jobs import run_due_jobs
from carnet.audit.models import chain_for_subject
from carnet.audit.trace import Trace, TraceAction
from carnet.runtime import Runtime
from tests.audit.conftest import Trail
from tests.audit.support import activity, check, deposit
from tests.cli.support import carnet_env, run_carnet
from tests.conftest import PG_URL, Api, make_settings

PG_ONLY = "PostgreSQL only: SQLite has neither table partitions nor roles and grants"


def require_postgresql(trail: Trail) -> None:
    if not trail.postgresql:
        pytest.skip(PG_ONLY)


def partition_of(trail: Trail, chain: str | uuid.UUID) -> set[str]:
    """The partitions that hold the entries of ``chain``."""
    key = chain if isinstance(chain, uuid.UUID) else uuid.UUID(chain)
    with trail.runtime.engine.connect() as conn:
        return set(
            conn.execute(
                sa.text("SELECT DISTINCT tableoid::regclass::text FROM audit_entries WHERE chain = :chain"),
                {"chain": key},
            ).scalars()
        )


def append_at(runtime: Runtime, at: dt.datetime) -> uuid.UUID:
    """One administrative trace stamped ``at``, in a chain of its own; return the chain."""
    key = f"cli:test-{uuid.uuid4().hex[:8]}"
    trace = Trace(action=TraceAction.ADMIN, at=at, actor_kind="operator", actor_key=key, reason="partition test")
    with runtime.work() as work:
        writer.write(work.session, [trace])
    return chain_for_subject(key)


# ----------------------------------------------------------------------------------- SQLite


def test_sqlite_has_no_partitions_and_no_grants(trail: Trail) -> None:
    if trail.postgresql:
        pytest.skip("the SQLite side of the partition and grant calls")
    report = partitions.ensure_partitions(trail.runtime.engine, today=dt.datetime.now(dt.UTC).date(), ahead=3)
    assert report.supported is False
    assert report.months == []
    with pytest.raises(ValueError, match="PostgreSQL only"):
        partitions.apply_grants(trail.runtime.engine, "carnet_app")
    assert run_due_jobs(trail.runtime, dt.datetime.now(dt.UTC)).partitions is None


# ----------------------------------------------------------------------------------- monthly partitions


def test_monthly_partitions_are_created_ahead_and_entries_land_in_their_month(trail: Trail) -> None:
    require_postgresql(trail)
    engine = trail.runtime.engine
    today = dt.datetime.now(dt.UTC).date()
    this_month, next_month = partitions.month_start(today), partitions.month_start(today, 1)
    # The template's records were opened this month: their traces sit in DEFAULT, so this month is
    # skipped (said so) until asked to move them; the months ahead are created.
    first = partitions.ensure_partitions(engine, today=today, ahead=2)
    states = {m.name: m.state for m in first.months}
    assert states == {
        partitions.partition_name(this_month): "skipped",
        partitions.partition_name(next_month): "created",
        partitions.partition_name(partitions.month_start(today, 2)): "created",
    }
    assert "--move" in first.months[0].reason
    with engine.connect() as conn:
        bounds = partitions.existing_partitions(conn)
    assert bounds[partitions.DEFAULT] == "DEFAULT"
    assert bounds[partitions.partition_name(next_month)].startswith("FOR VALUES FROM (")

    moved = partitions.ensure_partitions(engine, today=today, ahead=2, move=True)
    assert [(m.state, m.rows_moved > 0) for m in moved.months] == [
        ("moved", True),
        ("exists", False),
        ("exists", False),
    ]
    assert partitions.ensure_partitions(engine, today=today, ahead=2).created == []  # idempotent
    assert check(trail.runtime).ok  # payloads and hashes moved as they were

    # New activity lands in this month's partition, nothing in DEFAULT.
    patient_id, _, _, _ = activity(trail.api, reads=1)
    assert partition_of(trail, patient_id) == {partitions.partition_name(this_month)}
    # An entry of next month lands in next month's; one far ahead of every partition in DEFAULT.
    assert partition_of(trail, append_at(trail.runtime, next_month + dt.timedelta(days=3))) == {
        partitions.partition_name(next_month)
    }
    assert partition_of(trail, append_at(trail.runtime, partitions.month_start(today, 14))) == {partitions.DEFAULT}
    with engine.connect() as conn:
        in_default = conn.execute(
            sa.text("SELECT count(*) FROM audit_entries_default WHERE at >= :start AND at < :end"),
            {"start": this_month, "end": next_month},
        ).scalar_one()
    assert in_default == 0
    assert check(trail.runtime).ok


def test_the_cli_creates_partitions(trail: Trail, tmp_path: Path) -> None:
    require_postgresql(trail)
    result = run_carnet("audit", "partitions", "--ahead", "1", "--move", env=carnet_env(trail.url), cwd=tmp_path)
    assert result.code == 0, result.describe()
    today = dt.datetime.now(dt.UTC).date()
    for plus in (0, 1):
        assert partitions.partition_name(partitions.month_start(today, plus)) in result.output
    with trail.runtime.engine.connect() as conn:
        assert partitions.partition_name(partitions.month_start(today, 1)) in partitions.existing_partitions(conn)


# ----------------------------------------------------------------------------------- the append-only role


@pytest.fixture
def app_role(trail: Trail) -> Iterator[str]:
    """A throwaway login role (trust authentication), dropped after the test with all it was granted."""
    require_postgresql(trail)
    assert PG_URL is not None
    role = f"carnet_app_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        yield role
    finally:
        with psycopg.connect(trail.url, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')  # its privileges in the test database
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def as_role(url: str, role: str) -> str:
    scheme, _, rest = url.partition("://")
    _, _, host_and_db = rest.rpartition("@")
    return f"{scheme}://{role}@{host_and_db}"


def test_the_application_role_appends_but_never_changes_the_trail(trail: Trail, app_role: str, tmp_path: Path) -> None:
    # Some history first, and a checkpoint, both as the owner.
    patient_id, _, _, _ = activity(trail.api, reads=1)
    checkpoints.checkpoint(trail.runtime)

    # The operator's procedure (docs/audit.md): print the SQL with `carnet audit grants`, run it as owner.
    printed = run_carnet("audit", "grants", "--role", app_role, env=carnet_env(trail.url), cwd=tmp_path)
    assert printed.code == 0, printed.describe()
    assert f'GRANT SELECT, INSERT ON TABLE audit_entries TO "{app_role}";' in printed.stdout
    with psycopg.connect(trail.url, autocommit=True) as owner:
        owner.execute(printed.stdout.encode())

    url = as_role(trail.url, app_role)
    runtime = Runtime(make_settings(url))
    try:
        # The application works as that role: records, documents, reads, each traced through
        # carnet_audit_append; checkpoints are taken; the verifier reads everything.
        with TestClient(create_app(runtime.settings, runtime), base_url="http://testserver") as client:
            api = Api(client, runtime)
            new_id, ins, system = api.new_patient()
            doc = deposit(api, ins, system)
            assert api.get(f"/fhir/DocumentReference/{doc}", "dr_medioni").status_code == 200
        taken = checkpoints.checkpoint(runtime)
        assert taken is not None
        assert taken.heads >= 1
        assert check(runtime).ok
        # …but may not create partitions (the owner's job): told so, nothing breaks.
        today = dt.datetime.now(dt.UTC).date()
        denied = partitions.ensure_partitions(runtime.engine, today=today, ahead=1)
        assert denied.months
        assert denied.months[-1].state == "not-permitted"
    finally:
        runtime.dispose()

    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM audit_entries WHERE chain = %s", (uuid.UUID(new_id),)).fetchone()
        count = conn.execute("SELECT count(*) FROM audit_entries WHERE chain = %s", (uuid.UUID(patient_id),)).fetchone()
        assert count is not None
        assert count[0] > 0
        for statement in (
            "UPDATE audit_entries SET outcome = 'success'",
            "DELETE FROM audit_entries",
            "TRUNCATE audit_entries",
            "UPDATE audit_entries_default SET outcome = 'success'",
            "DELETE FROM audit_entries_default",
            "INSERT INTO audit_entries_default SELECT * FROM audit_entries LIMIT 1",
            "DELETE FROM audit_heads",
            "UPDATE audit_checkpoints SET heads = 0",
            "DELETE FROM audit_checkpoints",
            "DELETE FROM audit_checkpoint_heads",
            "TRUNCATE audit_checkpoints CASCADE",
        ):
            with pytest.raises(pg_errors.InsufficientPrivilege):
                conn.execute(statement)
    assert check(trail.runtime).ok  # nothing was changed


def test_the_grants_refuse_a_role_name_that_is_not_plain(trail: Trail, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="plain PostgreSQL role name"):
        partitions.grants_sql('app"; DROP TABLE audit_entries; --')
    result = run_carnet("audit", "grants", "--role", "bad name", env=carnet_env(trail.url), cwd=tmp_path)
    assert result.code == 2, result.describe()
