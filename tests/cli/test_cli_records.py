"""``carnet record …`` from the command line, on SQLite and PostgreSQL: announce (one patient, or NDJSON with
the codes for letters), status, an objection recorded by the operator, ``carnet worker --once`` opening what
is due, ``purge-due`` (a dry run unless ``--apply``) and ``purge``, then ``carnet audit verify``."""

from __future__ import annotations

import csv
import json
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from carnet import audit, dbadmin
from carnet.auth.actor import SYSTEM_ACTOR
from carnet.db import create_engine
from carnet.records import service as records
from carnet.records.models import ClosureReason, Record
from carnet.runtime import Runtime
from tests import factories
from tests.api.lifecycle_support import announced_patient, record_row
from tests.cli.support import Result, carnet_env, run_carnet
from tests.conftest import drop_pg_database, fresh_database, make_settings
from tests.notifications.support import unique_email

pytestmark = pytest.mark.slow  # every `carnet` run is a subprocess with seconds of start-up


@dataclass(frozen=True)
class Database:
    url: str
    cwd: Path
    env: dict[str, str]

    def run(self, *args: str, **settings: str) -> Result:
        env = {**self.env, **{f"CARNET_{k.upper()}": v for k, v in settings.items()}}
        return run_carnet(*args, env=env, cwd=self.cwd)

    def row(self, record: str) -> Record:
        """The record's row, read in-process (each ``carnet`` run costs seconds of start-up)."""
        runtime = Runtime(make_settings(self.url))
        try:
            return record_row(runtime, record)
        finally:
            runtime.dispose()


@pytest.fixture
def database(backend: str, tmp_path: Path) -> Iterator[Database]:
    """A fresh database of this backend, migrated (``carnet db upgrade`` is tested in test_cli_database)."""
    url, pg_name = fresh_database(backend, tmp_path, "clirec")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    engine = create_engine(make_settings(url))
    try:
        dbadmin.upgrade(engine)
    finally:
        engine.dispose()
    try:
        yield Database(url, cwd, carnet_env(url))
    finally:
        if pg_name:
            drop_pg_database(pg_name)


def _ndjson(path: Path, *resources: dict[str, Any]) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in resources) + b"\n")
    return path


def test_announce_status_objection_and_opening(database: Database, tmp_path: Path) -> None:
    informed, ins_informed, _ = announced_patient(email=unique_email("cli"))
    by_letter, ins_letter, _ = announced_patient()
    broken, _, _ = announced_patient()
    del broken["gender"]
    batch = _ndjson(tmp_path / "patients.ndjson", informed, by_letter, broken)
    codes = tmp_path / "codes.csv"

    result = database.run("record", "announce", str(batch), "--codes", str(codes))
    assert result.code == 1, result.describe()  # one line rejected, the others announced
    assert "2 records announced (1 without an address: their codes are in" in result.output
    assert "line 3" in result.output
    assert "gender" in result.output
    assert stat.S_IMODE(codes.stat().st_mode) == 0o600
    with codes.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["line"] for r in rows] == ["1", "2"]
    assert [r["notified"] for r in rows] == ["True", "False"]
    informed_id, letter_id = rows[0]["record"], rows[1]["record"]

    by_ins = database.run("record", "status", "--ins", ins_letter, "--json")
    assert by_ins.code == 0, by_ins.describe()
    found = json.loads(by_ins.stdout)
    assert found["record"] == letter_id
    assert found["status"] == "opposition_pending"
    assert found["opensAt"]
    assert found["infoSent"]
    assert found["opened"] is None

    # an objection made by phone, recorded by the operator (who confirms it)
    assert database.run("record", "oppose", informed_id).code == 2
    opposed = database.run("record", "oppose", informed_id, "--yes")
    assert opposed.code == 0, opposed.describe()
    row = database.row(informed_id)
    assert row.status == "closed"
    assert row.closure_reason == "OPPOSITION"
    assert row.key_destroyed_at is not None

    # the worker opens what is due (no window at all here)
    opened = database.run("worker", "--once", record_opposition_days="0")
    assert opened.code == 0, opened.describe()
    assert "records opened 1" in opened.output
    assert database.row(letter_id).status == "active"
    assert database.row(informed_id).status == "closed"
    summary = json.loads(database.run("record", "status", "--json").stdout)
    assert summary["records"] == {"active": 1, "closed": 1}
    assert summary["dueToOpen"] == 0

    # one patient in a JSON file, and one who already has a record: its code is printed
    single = tmp_path / "one.json"
    single.write_bytes(orjson.dumps(announced_patient()[0], option=orjson.OPT_INDENT_2))
    printed = database.run("record", "announce", str(single))
    assert printed.code == 0, printed.describe()
    assert "announced: opens on" in printed.output
    assert "provisional code" in printed.output
    assert "no address: send the code by letter" in printed.output
    assert ins_informed not in printed.output  # no identity on the terminal
    again = database.run("record", "announce", str(_ndjson(tmp_path / "again.ndjson", informed)))
    assert again.code == 0
    assert "1 already had one" in again.output
    assert "objected" in again.output


def _open_and_close(url: str, count: int) -> list[str]:
    runtime = Runtime(make_settings(url))
    ids = []
    try:
        for _ in range(count):
            ins, system = factories.random_ins()
            with runtime.work() as work:
                record = records.create_record(
                    work, actor=SYSTEM_ACTOR, patient=factories.patient_resource(ins, system)
                )
                ids.append(str(record.id))
            with runtime.work() as work:
                records.close_record(
                    work, actor=audit.operator("test"), patient_id=ids[-1], reason=ClosureReason.PATIENT_REQUEST
                )
    finally:
        runtime.dispose()
    return ids


def test_purge_due_is_a_dry_run_unless_applied_and_the_trail_still_verifies(database: Database) -> None:
    first, second = _open_and_close(database.url, 2)
    kept = database.run("record", "purge-due")
    assert kept.code == 0
    assert "0 records due for destruction" in kept.output

    dry = database.run("record", "purge-due", "--json", record_retention_years="0")
    assert dry.code == 0, dry.describe()
    listed = json.loads(dry.stdout)
    assert listed["applied"] is False
    assert {d["record"] for d in listed["due"]} == {first, second}
    assert listed["destroyed"] == []
    assert database.row(first).status == "closed"

    applied = database.run("record", "purge-due", "--apply", "--limit", "1", record_retention_years="0")
    assert applied.code == 0, applied.describe()
    assert "1 records destroyed, 0 failed" in applied.output
    assert database.row(first).status == "deleted"  # the oldest first
    assert database.row(first).key_destroyed_at is not None
    assert database.row(second).status == "closed"

    # an express request of the holder: destroyed now, once confirmed (a closed record only)
    assert database.run("record", "purge", second).code == 2
    assert database.run("record", "purge", second, "--yes").code == 0
    assert database.row(second).status == "deleted"
    runtime = Runtime(make_settings(database.url))
    try:
        ins, system = factories.random_ins()
        with runtime.work() as work:
            resource = factories.patient_resource(ins, system)
            open_id = str(records.create_record(work, actor=SYSTEM_ACTOR, patient=resource).id)
    finally:
        runtime.dispose()
    refused = database.run("record", "purge", open_id, "--yes")
    assert refused.code == 1
    assert "close it first" in refused.output

    # what was destroyed was traced, and the trail still verifies
    verified = database.run("audit", "verify")
    assert verified.code == 0, verified.describe()
