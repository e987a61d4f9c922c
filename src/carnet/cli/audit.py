"""``carnet audit …``: verify the trail, take a checkpoint, keep PostgreSQL partitions, print the grants.

* ``verify [--record ID] [--json] [--anchor ID:DIGEST …]`` recomputes every chain and checkpoint; exits 1
  when anything is wrong, naming the record (or chain), the position and the kind of problem.
* ``checkpoint [--json]`` signs the heads that changed since the previous checkpoint.
* ``partitions [--ahead N] [--move]`` creates the monthly partitions of ``audit_entries`` (PostgreSQL).
* ``grants --role NAME [--apply]`` prints (or runs) the SQL that makes the trail append-only for the
  application role.
* ``key`` prints the public key that verifies checkpoints and its id.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from carnet.config import Settings

app = typer.Typer(
    help="The audit trail: verify it, checkpoint it, partitions and grants (PostgreSQL).", no_args_is_help=True
)
console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

COLOURS = {
    "altered": "red",
    "deleted": "red",
    "reordered": "red",
    "truncated": "red",
    "inserted": "red",
    "forged-checkpoint": "magenta",
    "missing-checkpoint": "yellow",
    "head-mismatch": "red",
}


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors():
            err.print(f"[red]configuration error[/red]: {error['msg']}")
        raise typer.Exit(2) from None


def _record_administration(runtime: object, what: str) -> None:
    """The command line's own trace (who ran what), in the operator's chain."""
    from carnet import audit
    from carnet.runtime import Runtime

    assert isinstance(runtime, Runtime)
    with runtime.work() as work:
        audit.administrative(work, what)


def _anchor(value: str) -> tuple[int, bytes]:
    ident, sep, digest = value.partition(":")
    try:
        if not sep:
            raise ValueError
        parsed = (int(ident), bytes.fromhex(digest))
    except ValueError:
        raise typer.BadParameter(f"{value!r}: an anchor is CHECKPOINT_ID:DIGEST_HEX") from None
    if len(parsed[1]) != 32:
        raise typer.BadParameter(f"{value!r}: the digest is 64 hexadecimal characters")
    return parsed


@app.command()
def verify(
    record: Annotated[
        str | None, typer.Option("--record", help="Verify the chain of this record only (its Patient id).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    anchor: Annotated[
        list[str] | None,
        typer.Option("--anchor", help="CHECKPOINT_ID:DIGEST kept outside the database; must still be there."),
    ] = None,
    max_problems: Annotated[int, typer.Option(help="Problems listed (all are counted).", min=1)] = 1000,
) -> None:
    """Recompute every chain and checkpoint; exit 1 if anything was altered, deleted, reordered, truncated,
    inserted, forged or is missing."""
    from carnet.audit import verify as verifier
    from carnet.runtime import Runtime

    record_id = None
    if record is not None:
        try:
            record_id = uuid.UUID(record)
        except ValueError:
            err.print(f"[red]not a record id[/red]: {escape(record)}")
            raise typer.Exit(2) from None
    anchors = [_anchor(a) for a in anchor or []]
    runtime = Runtime(_settings())
    try:
        report = verifier.verify(runtime, record=record_id, anchors=anchors, max_problems=max_problems)
        outcome = "ok" if report.ok else f"{report.problem_count} problems"
        _record_administration(runtime, f"audit verify{f' record {record_id}' if record_id else ''}: {outcome}")
    finally:
        runtime.dispose()
    if as_json:
        print(json.dumps(report.as_json(), ensure_ascii=False, indent=2))
    else:
        for problem in report.problems:
            colour = COLOURS.get(problem.kind.value, "red")
            console.print(
                f"[{colour}]{problem.kind.value.upper():<18}[/{colour}] {escape(problem.where())}"
                + (f" ({problem.at.isoformat(timespec='seconds')})" if problem.at else "")
                + f": {escape(problem.message)}"
            )
        if report.problem_count > len(report.problems):
            console.print(f"… and {report.problem_count - len(report.problems)} more")
        scope = f"record {record_id}" if record_id else "the whole trail"
        summary = (
            f"{scope}: {report.chains} chains, {report.entries} entries, {report.checkpoints} checkpoints "
            f"({report.checkpointed_heads} checkpointed heads) in {report.seconds:.1f} s"
        )
        if report.ok:
            console.print(f"[green]OK[/green] {summary}")
        else:
            kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(report.by_kind.items()))
            console.print(f"[red]FAILED[/red] {summary}: {report.problem_count} problems ({kinds})")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def checkpoint(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Sign the chain heads that changed since the previous checkpoint (the worker does it every
    CARNET_AUDIT_CHECKPOINT_SECONDS). Keep the printed id and digest outside the database to anchor
    `carnet audit verify --anchor`."""
    from carnet.audit import checkpoints
    from carnet.runtime import Runtime

    runtime = Runtime(_settings())
    try:
        taken = checkpoints.checkpoint(runtime)
        assert taken is not None
        _record_administration(runtime, f"audit checkpoint #{taken.id}")
    finally:
        runtime.dispose()
    if as_json:
        print(json.dumps(taken.as_json(), indent=2))
        return
    console.print(
        f"checkpoint #{taken.id} at {taken.at.isoformat(timespec='seconds')}: "
        f"{taken.heads} head{'' if taken.heads == 1 else 's'}, "
        f"digest {taken.digest.hex()} (key {taken.key_id[:16]}…)"
    )


@app.command()
def partitions(
    ahead: Annotated[
        int | None, typer.Option(help="Months after this one [default: CARNET_AUDIT_PARTITIONS_AHEAD].", min=0)
    ] = None,
    move: Annotated[
        bool,
        typer.Option(
            "--move", help="Move a month's entries out of the DEFAULT partition into its new partition (locks DEFAULT)."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Create the monthly partitions of audit_entries ahead of time (PostgreSQL; idempotent). Run it as the
    owner of the tables."""
    from carnet.audit.partitions import ensure_partitions
    from carnet.runtime import Runtime

    runtime = Runtime(_settings())
    try:
        report = ensure_partitions(
            runtime.engine,
            today=dt.datetime.now(dt.UTC).date(),
            ahead=runtime.settings.audit_partitions_ahead if ahead is None else ahead,
            move=move,
        )
        if report.created:
            _record_administration(runtime, "audit partitions: " + ", ".join(m.name for m in report.created))
    finally:
        runtime.dispose()
    if as_json:
        print(json.dumps({"supported": report.supported, "months": [m.as_json() for m in report.months]}, indent=2))
    elif not report.supported:
        console.print("SQLite: the audit trail is not partitioned; nothing to do")
    else:
        for month in report.months:
            rows = f", {month.rows_moved} entries moved from DEFAULT" if month.state == "moved" else ""
            reason = f": {escape(month.reason)}" if month.reason else ""
            colour = {"exists": "dim", "created": "green", "moved": "green", "skipped": "yellow"}.get(
                month.state, "red"
            )
            console.print(f"{month.name}  [{colour}]{month.state}[/{colour}]{rows}{reason}")
    if any(m.state in ("failed", "not-permitted") for m in report.months):
        raise typer.Exit(1)


@app.command()
def grants(
    role: Annotated[str, typer.Option("--role", help="The application's PostgreSQL role.")],
    apply: Annotated[bool, typer.Option("--apply", help="Run the SQL (as the owner of the tables) instead.")] = False,
    audit_only: Annotated[
        bool, typer.Option("--audit-only", help="Only the audit tables (not the rest of the schema).")
    ] = False,
) -> None:
    """Print the SQL that lets the application role append to the audit trail and read it, but never
    update, delete or truncate it (or run it with --apply)."""
    from carnet.audit.partitions import apply_grants, grants_sql

    try:
        script = grants_sql(role, whole_schema=not audit_only)
    except ValueError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    if not apply:
        print(script, end="")
        return
    from carnet.runtime import Runtime

    runtime = Runtime(_settings())
    try:
        if runtime.engine.dialect.name != "postgresql":
            err.print("[red]refused[/red]: grants exist on PostgreSQL only")
            raise typer.Exit(2)
        apply_grants(runtime.engine, role, whole_schema=not audit_only)
        _record_administration(runtime, f"audit grants applied for role {role}")
    finally:
        runtime.dispose()
    console.print(f"grants applied: {role} may append to and read the audit trail, and nothing more")


@app.command()
def key(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Print the public key that verifies checkpoints, and its id (keep it with your anchors)."""
    from carnet.audit import checkpoints

    settings = _settings()
    public = checkpoints.public_bytes(checkpoints.signing_key(settings).public_key())
    if as_json:
        print(json.dumps({"keyId": checkpoints.key_id(public), "publicKeyPem": checkpoints.public_key_pem(settings)}))
        return
    print(f"key id {checkpoints.key_id(public)}")
    print(checkpoints.public_key_pem(settings), end="")
