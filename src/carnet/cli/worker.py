"""``carnet worker``: deliver notifications from the outbox (e-mail, SMS), until SIGTERM or Ctrl-C.

``carnet worker`` runs the loop, which also takes the audit trail's signed checkpoints when due and keeps
its PostgreSQL partitions (``carnet.audit.jobs``), and runs the record lifecycle's jobs (``carnet.records
.lifecycle``: opening records whose opposition window ended, destroying those whose retention ended);
``--once`` does all of it once and exits. ``carnet worker status``
counts deliveries per status; ``carnet worker requeue`` gives dead letters a fresh set of attempts.
Run as many workers as you like on PostgreSQL (they never claim the same delivery); on SQLite, one.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from carnet.config import Settings

app = typer.Typer(
    help="Deliver notifications from the outbox: e-mail (SMTP), SMS (HTTP gateway).",
    invoke_without_command=True,
    no_args_is_help=False,
)
console = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors():
            err.print(f"[red]configuration error[/red]: {error['msg']}")
        raise typer.Exit(2) from None


@app.callback()
def worker(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Deliver what is due now, then exit.")] = False,
    batch: Annotated[
        int | None, typer.Option(help="Deliveries claimed at a time [default: CARNET_NOTIFY_BATCH_SIZE].", min=1)
    ] = None,
) -> None:
    """Run the notification worker (graceful stop on SIGTERM / Ctrl-C: the message being sent finishes,
    the rest of the batch is given back)."""
    if ctx.invoked_subcommand is not None:
        return
    from carnet.logging import configure
    from carnet.notifications.worker import Worker
    from carnet.runtime import Runtime

    settings = _settings()
    if batch is not None:
        settings = settings.model_copy(update={"notify_batch_size": batch})
    configure(settings.log_level, json=settings.log_json)
    runtime = Runtime(settings)
    worker = Worker(runtime)

    def stop(signum: int, frame: FrameType | None) -> None:
        worker.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if once:
            report = worker.audit_pass()
            if report is not None and report.checkpoint is not None:
                console.print(f"audit checkpoint #{report.checkpoint.id}: {report.checkpoint.heads} heads")
            records = worker.lifecycle_pass()
            if records is not None and (records.opened or records.purged or records.failed):
                console.print(
                    f"records opened {len(records.opened)}, destroyed {len(records.purged)}, failed {records.failed}"
                )
            tally = worker.drain(timeout=float("inf"))
            console.print(
                f"delivered {tally.delivered}, retried later {tally.retried}, dead-lettered {tally.dead}"
                + (f", taken over by another worker {tally.lost}" if tally.lost else "")
            )
        else:
            worker.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        runtime.dispose()


@app.command("status")
def status() -> None:
    """Deliveries per status (pending, sending, delivered, dead)."""
    from carnet.db import unit_of_work
    from carnet.notifications import outbox
    from carnet.runtime import Runtime

    runtime = Runtime(_settings())
    try:
        with unit_of_work(runtime.sessions) as session:
            found = outbox.counts(session)
    finally:
        runtime.dispose()
    console.print("  ".join(f"{name} {count}" for name, count in found.items()))


@app.command("requeue")
def requeue() -> None:
    """Give every dead-lettered delivery a fresh set of attempts, due now."""
    from carnet.db import unit_of_work, utcnow
    from carnet.notifications import outbox
    from carnet.runtime import Runtime

    runtime = Runtime(_settings())
    try:
        with unit_of_work(runtime.sessions) as session:
            count = outbox.requeue_dead(session, now=utcnow())
    finally:
        runtime.dispose()
    console.print(f"requeued {count} dead-lettered deliveries")
