"""``carnet record …``: the record lifecycle for the operator (docs/records.md).

* ``announce FILE [--codes CODES.csv]``: announce records (one FHIR Patient in JSON, or NDJSON, one per
  line; each line all or nothing): they open when the opposition window ends unless the patients object.
  Each patient with an e-mail address or a mobile number in the resource is told, with a provisional code;
  ``--codes`` writes every code (for letters) to a new file readable by its owner only.
* ``status [RECORD | --ins INS] [--json]``: a record's lifecycle (status, dates, when it opens or is
  destroyed), or, without a record, the count of records per status and how many are due.
* ``oppose RECORD --yes``: record an objection received otherwise (phone, letter): the announced record
  closes, its content is destroyed.
* ``purge-due [--apply] [--limit N] [--json]``: the closed records whose retention has ended — listed
  (dry run, the default) or destroyed (``--apply``; the worker does it too unless
  ``CARNET_RECORD_AUTO_PURGE=false``).
* ``purge RECORD --yes``: destroy a closed record now, on its holder's express request.

Every change is traced in the record's chain as the operator at the command line.
"""

from __future__ import annotations

import csv
import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from carnet.records.models import Record
    from carnet.runtime import Runtime, Work

app = typer.Typer(no_args_is_help=True, help="The record lifecycle: announce, status, objections, destruction.")
console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _runtime() -> Runtime:
    from carnet.cli.main import _settings
    from carnet.runtime import Runtime

    return Runtime(_settings())


def _problems(exc: Exception) -> str:
    from carnet.errors import CarnetError

    if isinstance(exc, CarnetError):
        return "; ".join(f"{p.expression + ': ' if p.expression else ''}{p.message}" for p in exc.problems)
    return str(exc)


def _find(work: Work, record: str | None, ins: str | None) -> Record | None:
    from carnet.identifiers import INS_NIR_OID, IdentifierError, parse_ins
    from carnet.records.lookup import find_by_ins, get_record

    if record is not None:
        return get_record(work, record)
    assert ins is not None
    system, sep, value = ins.partition("|")
    if not sep:
        system, value = f"urn:oid:{INS_NIR_OID}", ins
    try:
        parsed = parse_ins(system, value.replace(" ", ""), allow_test=not work.settings.is_production)
    except IdentifierError as exc:
        raise typer.BadParameter(str(exc), param_hint="--ins") from None
    return find_by_ins(work, parsed)


def _lines(file: Path) -> list[tuple[int, bytes]]:
    raw = file.read_bytes()
    stripped = raw.strip()
    if stripped.startswith(b"{") and b"\n{" not in stripped:  # one JSON resource (possibly pretty-printed)
        return [(1, stripped)]
    return [(n, line) for n, line in enumerate(raw.splitlines(), start=1) if line.strip()]


# ---------------------------------------------------------------------------------------- announce
@app.command("announce")
def announce(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="A Patient, or NDJSON.")],
    codes: Annotated[
        Path | None,
        typer.Option("--codes", dir_okay=False, help="Write the provisional codes (for letters) to this new CSV file."),
    ] = None,
) -> None:
    """Announce records: each opens when its opposition window ends (CARNET_RECORD_OPPOSITION_DAYS) unless
    its patient objects. Patients with an e-mail address or a mobile number are told at once."""
    from carnet import audit
    from carnet.errors import CarnetError, Conflict
    from carnet.fhir.parsing import parse_resource, validate_structure
    from carnet.records import lifecycle

    if codes is not None and codes.exists():
        err.print(f"[red]refused[/red]: {codes} exists (codes are written to a new file only)")
        raise typer.Exit(2)
    runtime = _runtime()
    announced: list[tuple[int, lifecycle.Announcement]] = []
    existing = 0
    failures: list[str] = []
    actor = audit.operator()
    try:
        for number, raw in _lines(file):
            try:
                resource = parse_resource(raw, "Patient")
                validate_structure(resource)
                with runtime.work() as work:
                    announced.append((number, lifecycle.announce_record(work, actor=actor, patient=resource)))
            except Conflict as exc:
                existing += 1
                failures.append(f"line {number}: {exc.message}")
            except CarnetError as exc:
                failures.append(f"line {number}: {_problems(exc)}")
    finally:
        runtime.dispose()
    unreached = sum(1 for _, a in announced if not a.notified)
    if codes is not None and announced:
        descriptor = os.open(codes, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["line", "record", "code", "code_expires_at", "opens_at", "notified"])
            for number, a in announced:
                writer.writerow(
                    [number, a.record.id, a.code, a.code_expires_at.isoformat(), a.opens_at.isoformat(), a.notified]
                )
    if len(announced) == 1 and codes is None:
        a = announced[0][1]
        opens = a.opens_at.date().isoformat()
        console.print(f"record {a.record.id} announced: opens on {opens} unless the patient objects")
        console.print(f"provisional code {a.code} (valid until {a.code_expires_at.date().isoformat()})")
        console.print("the patient was told by message" if a.notified else "no address: send the code by letter")
    else:
        console.print(
            f"{len(announced)} records announced ({unreached} without an address"
            + (f": their codes are in {codes}" if codes is not None and unreached else "")
            + f"), {existing} already had one, {len(failures) - existing} rejected"
        )
    for failure in failures[:50]:
        err.print(f"  [yellow]{failure}[/yellow]")
    if len(failures) > existing:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------- status
@app.command("status")
def status(
    record: Annotated[str | None, typer.Argument(help="The record (its Patient id).")] = None,
    ins: Annotated[str | None, typer.Option("--ins", help="Find it by INS (matricule or system|value).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """A record's lifecycle, or (no record given) the records per status and what is due."""
    import sqlalchemy as sa

    from carnet.db import utcnow
    from carnet.records import lifecycle
    from carnet.records.models import Record

    if record is not None and ins is not None:
        raise typer.BadParameter("give a record or --ins, not both")
    runtime = _runtime()
    try:
        if record is None and ins is None:
            now = utcnow()
            with runtime.read_sessions() as session:
                counts = dict(session.execute(sa.select(Record.status, sa.func.count()).group_by(Record.status)).all())
            to_open, to_purge = lifecycle.due_counts(runtime, now=now)
            summary: dict[str, Any] = {
                "records": {k: int(v) for k, v in sorted(counts.items())},
                "dueToOpen": to_open,
                "dueForDestruction": to_purge,
            }
            if as_json:
                print(json.dumps(summary, indent=2))
                return
            console.print("  ".join(f"{k} {v}" for k, v in summary["records"].items()) or "no records")
            console.print(f"due to open {summary['dueToOpen']}, due for destruction {summary['dueForDestruction']}")
            return
        with runtime.read() as work:
            found = _find(work, record, ins)
            described = lifecycle.describe(runtime.settings, found) if found is not None else None
    finally:
        runtime.dispose()
    if described is None:
        err.print("[red]no such record[/red]")
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(described, indent=2))
        return
    table = Table(show_header=False, box=None)
    for key, value in described.items():
        if value is not None:
            table.add_row(key, str(value))
    console.print(table)


# ---------------------------------------------------------------------------------------- objection
@app.command("oppose")
def oppose(
    record: Annotated[str, typer.Argument(help="The announced record (its Patient id).")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: the record's content is destroyed.")] = False,
) -> None:
    """Record an objection made otherwise (phone, letter): the announced record closes, its content and data
    key are destroyed, a receipt goes to the patient's addresses."""
    from carnet import audit
    from carnet.errors import CarnetError
    from carnet.records import lifecycle

    if not yes:
        err.print("[red]refused[/red]: an objection destroys the record's content; confirm with --yes")
        raise typer.Exit(2)
    runtime = _runtime()
    try:
        with runtime.work() as work:
            closed = lifecycle.object_to_record(work, actor=audit.operator(), patient_id=record)
            when = closed.closed_at
    except CarnetError as exc:
        err.print(f"[red]refused[/red]: {_problems(exc)}")
        raise typer.Exit(1) from None
    finally:
        runtime.dispose()
    console.print(f"record {record}: objection recorded on {when.isoformat(timespec='seconds') if when else '?'}")


# ---------------------------------------------------------------------------------------- destruction
@app.command("purge-due")
def purge_due(
    apply: Annotated[bool, typer.Option("--apply", help="Destroy them (default: list them only).")] = False,
    limit: Annotated[int, typer.Option(help="At most this many records.", min=1)] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The closed records whose retention (CARNET_RECORD_RETENTION_YEARS) has ended: a dry run by default;
    --apply destroys them (content and data key; the record's row and audit trail remain)."""
    from carnet import audit
    from carnet.db import utcnow
    from carnet.records import lifecycle

    runtime = _runtime()
    now = utcnow()
    try:
        due = lifecycle.due_to_purge(runtime, now=now, limit=limit)
        report = lifecycle.purge_due(runtime, now=now, limit=limit, actor=audit.operator()) if apply and due else None
    finally:
        runtime.dispose()
    if as_json:
        print(
            json.dumps(
                {
                    "applied": apply,
                    "due": [
                        {
                            "record": str(d.record_id),
                            "closed": d.since.isoformat(timespec="seconds"),
                            "retentionEnded": d.due_at.isoformat(timespec="seconds"),
                            "reason": d.reason,
                        }
                        for d in due
                    ],
                    "destroyed": [str(r) for r in report.purged] if report else [],
                    "failed": report.failed if report else 0,
                },
                indent=2,
            )
        )
    else:
        for d in due:
            console.print(
                f"{d.record_id}  closed {d.since.date().isoformat()} ({d.reason or '-'}), "
                f"retention ended {d.due_at.date().isoformat()}"
            )
        if report is not None:
            console.print(f"{len(report.purged)} records destroyed, {report.failed} failed")
        else:
            console.print(
                f"{len(due)} records due for destruction" + (" (dry run: --apply destroys them)" if due else "")
            )
    if report is not None and report.failed:
        raise typer.Exit(1)


@app.command("purge")
def purge(
    record: Annotated[str, typer.Argument(help="The closed record (its Patient id).")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: the record is destroyed for good.")] = False,
) -> None:
    """Destroy a closed record now, on its holder's express request (R1111-36: within three months)."""
    from carnet import audit
    from carnet.errors import CarnetError, NotFound
    from carnet.records import lifecycle
    from carnet.records.lookup import get_record

    if not yes:
        err.print("[red]refused[/red]: the record would be destroyed for good; confirm with --yes")
        raise typer.Exit(2)
    try:
        uuid.UUID(record)
    except ValueError:
        raise typer.BadParameter("a record id is a UUID", param_hint="RECORD") from None
    runtime = _runtime()
    try:
        with runtime.work() as work:
            found = get_record(work, record)
            if found is None:
                raise NotFound()
            lifecycle.purge_record(work, actor=audit.operator(), record=found, detail="request")
    except CarnetError as exc:
        err.print(f"[red]refused[/red]: {_problems(exc) or exc.message}")
        raise typer.Exit(1) from None
    finally:
        runtime.dispose()
    console.print(f"record {record} destroyed")
