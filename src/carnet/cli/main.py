"""``carnet``: run the server, manage the database, load demo data, import extracts, issue dev tokens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from carnet import audit
from carnet.cli import accounts, pki, records, worker
from carnet.cli.audit import app as audit_app
from carnet.config import Settings

app = typer.Typer(
    name="carnet",
    help="Carnet — a patient-controlled shared health record (DMP / Mon espace santé) over FHIR R4 and IHE MHD.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="Database schema: migrate, show the revision.", no_args_is_help=True)
import_app = typer.Typer(help="Bulk imports: the professional directory, patients.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(import_app, name="import")
app.add_typer(pki.app, name="pki", help="Test PKI: a CA and card-like certificates for development and tests.")
app.add_typer(accounts.app, name="account", help="Patient accounts and software clients.")
app.add_typer(worker.app, name="worker")
app.add_typer(audit_app, name="audit")
app.add_typer(records.app, name="record")

console = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors():
            err.print(f"[red]configuration error[/red]: {error['msg']}")
        raise typer.Exit(2) from None


def _runtime() -> object:
    from carnet.runtime import Runtime

    return Runtime(_settings())


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(min=1, help="Worker processes, each handed connections in turn (PostgreSQL recommended above 1)."),
    ] = 1,
    tls_cert: Annotated[
        Path | None, typer.Option(help="Serve HTTPS with this certificate (PEM) [default: CARNET_TLS_CERT].")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(help="Private key of --tls-cert (PEM) [default: CARNET_TLS_KEY].")
    ] = None,
    tls_client_ca: Annotated[
        Path | None,
        typer.Option(help="Accept client certificates issued by these CAs (PEM) [default: CARNET_TLS_CLIENT_CA]."),
    ] = None,
) -> None:
    """Serve the FHIR API (and health endpoints) with uvicorn; with --tls-cert, over HTTPS and mutual TLS."""
    import asyncio
    import contextlib
    import os
    import ssl

    import uvicorn

    from carnet.auth import certificates
    from carnet.logging import configure

    settings = _settings()
    cert = tls_cert or settings.tls_cert
    key = tls_key or settings.tls_key
    client_ca = tls_client_ca or settings.tls_client_ca
    problems = [f"{p} does not exist" for p in (cert, key, client_ca) if p is not None and not p.is_file()]
    if key is not None and cert is None:
        problems.append("--tls-key needs --tls-cert")
    try:
        certificates.parse_trusted_proxies(settings.trusted_proxies)
        if client_ca is not None and client_ca.is_file():
            certificates.trust_store(client_ca)
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        for problem in problems:
            err.print(f"[red]cannot serve[/red]: {problem}")
        raise typer.Exit(2)
    # The application is built by uvicorn (in each worker) from the environment: hand it the
    # options given here, so it verifies client certificates against the CA the TLS layer uses.
    overrides = {"CARNET_TLS_CERT": tls_cert, "CARNET_TLS_KEY": tls_key, "CARNET_TLS_CLIENT_CA": tls_client_ca}
    for name, value in overrides.items():
        if value is not None:
            os.environ[name] = str(value.resolve())
    configure(settings.log_level, json=settings.log_json)
    http: type[asyncio.Protocol] | str = "auto"  # uvicorn's default
    if cert is not None:
        from carnet.server import TLSHttpToolsProtocol

        http = TLSHttpToolsProtocol  # puts the client's certificate chain in the ASGI scope
    scheme = "https" if cert is not None else "http"
    extras = ""
    if cert is not None and client_ca is not None:
        extras += f", client certificates from {client_ca}"
    if settings.trusted_proxies:
        extras += f", {settings.client_cert_header} from {', '.join(settings.trusted_proxies)}"
    console.print(
        f"Carnet on {scheme}://{host}:{port}  (FHIR base {settings.fhir_base}, env {settings.env.value}, "
        f"database {settings.public_database_url()}{extras})"
    )
    # Development only: a notification worker in this process (production runs `carnet worker`).
    from carnet.notifications.worker import start_dev_worker

    start_dev_worker(settings)
    config = uvicorn.Config(
        "carnet.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        access_log=False,
        proxy_headers=False,
        http=http,
        ssl_certfile=cert,
        ssl_keyfile=key,
        # Client certificates are optional at the TLS level: patients and token clients connect
        # without one. One that is presented must chain to the client CA, or the handshake fails.
        ssl_cert_reqs=ssl.CERT_OPTIONAL if cert is not None and client_ca is not None else ssl.CERT_NONE,
        ssl_ca_certs=client_ca if cert is not None else None,
    )
    if workers > 1:
        # Not uvicorn's own supervisor: its workers race to accept and share connections unevenly.
        from carnet.balancer import Balancer

        status = Balancer(config, workers).run()
    else:
        server = uvicorn.Server(config)
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
        status = 0 if server.started else 3
    if status:
        raise typer.Exit(status)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply the migrations (idempotent; SQLite and PostgreSQL)."""
    from carnet import dbadmin
    from carnet.db import create_engine

    settings = _settings()
    engine = create_engine(settings)
    dbadmin.upgrade(engine, revision)
    console.print(f"database {settings.public_database_url()} at revision {dbadmin.current_revision(engine)}")
    engine.dispose()


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database and the newest one this Carnet knows."""
    from carnet import dbadmin
    from carnet.db import create_engine

    engine = create_engine(_settings())
    console.print(f"current: {dbadmin.current_revision(engine)}  head: {dbadmin.head_revision()}")
    engine.dispose()


@app.command()
def demo() -> None:
    """Load the demo personas, records and documents (idempotent: a second run changes nothing)."""
    from carnet.demo.loader import load_demo
    from carnet.runtime import Runtime

    settings = _settings()
    if settings.is_production:
        err.print("[red]refused[/red]: demo data is never loaded in production")
        raise typer.Exit(2)
    runtime = Runtime(settings)
    report = load_demo(runtime)
    runtime.dispose()
    console.print(f"demo data: {len(report.created)} created, {len(report.existing)} already there")


@app.command()
def personas(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """List the demo personas (key, kind, role, identifiers, organisation) and the demo organisations."""
    from carnet.demo.personas import ORGANIZATIONS, ORGANIZATIONS_BY_KEY, PERSONAS

    rows: list[dict[str, Any]] = []
    for p in PERSONAS:
        row: dict[str, Any] = {
            "key": p.key,
            "kind": p.kind,
            "role": p.role,
            "name": p.display,
            "identifiers": p.identifiers(),
        }
        if p.organization:
            row["organization"] = p.organization
        rows.append(row)
    organizations: list[dict[str, Any]] = [
        {"key": o.key, "kind": "organisation", "role": o.role, "name": o.name, "identifiers": o.identifiers()}
        for o in ORGANIZATIONS
    ]
    if as_json:
        print(json.dumps(rows + organizations, ensure_ascii=False, indent=2))
        return
    wide = console if console.is_terminal else Console(width=160)
    table = Table(title="Carnet demo personas — get a token with: carnet token --as <key>")
    for column in ("key", "kind", "role", "identifiers", "organisation"):
        table.add_column(column)
    for row in rows:
        ids = ", ".join(f"{k}={v}" for k, v in row["identifiers"].items() if k != "INS-system")
        org = ORGANIZATIONS_BY_KEY[row["organization"]].name if "organization" in row else ""
        table.add_row(str(row["key"]), str(row["kind"]), f"{row['role']}\n{row['name']}", ids, org)
    wide.print(table)
    orgs = Table(title="Carnet demo organisations (no token: professionals and software act for them)")
    for column in ("key", "kind", "role", "identifiers"):
        orgs.add_column(column)
    for row in organizations:
        ids = ", ".join(f"{k}={v}" for k, v in row["identifiers"].items())
        orgs.add_row(str(row["key"]), str(row["kind"]), f"{row['role']}\n{row['name']}", ids)
    wide.print(orgs)


@app.command()
def token(
    persona: Annotated[str, typer.Option("--as", help="Persona key (see `carnet personas`).")],
    ttl: Annotated[int | None, typer.Option(help="Lifetime in seconds.")] = None,
) -> None:
    """Print a development bearer token for a demo persona (development and test only)."""
    from carnet.auth import tokens
    from carnet.demo.personas import BY_KEY, token_claims

    settings = _settings()
    if not settings.allows_dev_tokens:
        err.print(f"[red]refused[/red]: development tokens do not exist in {settings.env.value}")
        raise typer.Exit(2)
    chosen = BY_KEY.get(persona)
    if chosen is None:
        err.print(f"[red]unknown persona[/red] {persona!r}; see `carnet personas`")
        raise typer.Exit(2)
    subject, extra = token_claims(chosen)
    print(tokens.issue_dev(settings, subject, extra=extra, ttl=ttl))


@app.command()
def totp(
    persona: Annotated[str, typer.Option("--as", help="A demo patient or legal representative.")],
) -> None:
    """Print the current sign-in code of a demo patient or legal representative (not in production)."""
    import pyotp

    from carnet.demo.personas import BY_KEY, demo_totp_secret

    settings = _settings()
    if settings.is_production:
        err.print("[red]refused[/red]: demo credentials do not exist in production")
        raise typer.Exit(2)
    chosen = BY_KEY.get(persona)
    if chosen is None or chosen.kind not in ("patient", "legal-representative"):
        err.print(f"[red]not a demo patient or legal representative[/red]: {persona!r}; see `carnet personas`")
        raise typer.Exit(2)
    print(pyotp.TOTP(demo_totp_secret(chosen.key)).now())


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    )


@import_app.command("directory")
def import_directory(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]) -> None:
    """Import a directory extract: CSV (idnat_ps, family, given, profession_code, specialty_code,
    organization_idnat, organization_name, facility_type, practice_setting) or FHIR JSON/NDJSON."""
    from carnet.directory import service as directory
    from carnet.errors import CarnetError
    from carnet.runtime import Runtime

    runtime = Runtime(_settings())
    report = directory.ImportReport()
    failures: list[str] = []
    try:
        groups = list(directory.parse_extract(file.read_text(encoding="utf-8"), file.name))
    except (CarnetError, ValueError) as exc:
        err.print(f"[red]cannot read {file}[/red]: {exc}")
        raise typer.Exit(1) from None
    with _progress() as progress:
        task = progress.add_task(f"importing {file.name}", total=len(groups))
        for line, resources in groups:
            row = directory.ImportReport()
            try:
                with runtime.work() as work:
                    directory.import_resources(work, resources, row)
                    audit.administrative(work, f"directory import: {file.name} line {line}")
                report.merge(row)  # counted only once the row is committed
            except CarnetError as exc:
                detail = "; ".join(p.message for p in exc.problems)
                failures.append(f"line {line}: {detail}")
            progress.advance(task)
    runtime.dispose()
    console.print(
        f"organisations {report.organizations}, practitioners {report.practitioners}, roles {report.roles} "
        f"created or updated; {report.unchanged} unchanged; {len(failures)} rejected"
    )
    for failure in failures[:50]:
        err.print(f"  [yellow]{failure}[/yellow]")
    if failures:
        raise typer.Exit(1)


@import_app.command("patients")
def import_patients(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]) -> None:
    """Open records in bulk from NDJSON (one FHIR Patient per line). Each line is all or nothing."""
    from carnet.auth.actor import SYSTEM_ACTOR
    from carnet.errors import CarnetError, Conflict
    from carnet.fhir.parsing import parse_resource, validate_structure
    from carnet.records import service as records
    from carnet.runtime import Runtime

    runtime = Runtime(_settings())
    lines = [(n, raw) for n, raw in enumerate(file.read_bytes().splitlines(), start=1) if raw.strip()]
    created = existing = 0
    failures: list[str] = []
    with _progress() as progress:
        task = progress.add_task(f"importing {file.name}", total=len(lines))
        for number, raw in lines:
            try:
                resource = parse_resource(raw, "Patient")
                validate_structure(resource)
                with runtime.work() as work:
                    records.create_record(work, actor=SYSTEM_ACTOR, patient=resource)
                created += 1
            except Conflict:
                existing += 1
            except CarnetError as exc:
                failures.append(
                    f"line {number}: "
                    + "; ".join(f"{p.expression + ': ' if p.expression else ''}{p.message}" for p in exc.problems)
                )
            progress.advance(task)
    runtime.dispose()
    console.print(f"{created} records opened, {existing} already existed, {len(failures)} rejected")
    for failure in failures[:50]:
        err.print(f"  [yellow]{failure}[/yellow]")
    if failures:
        raise typer.Exit(1)


def main() -> None:
    from sqlalchemy.exc import OperationalError

    # Traces written by a command say they come from the command line, and whose.
    audit.CURRENT_REQUEST.set(audit.RequestInfo(interface=audit.Interface.CLI, source=audit.operator().key))

    try:
        app()
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "unreachable"
        err.print(f"[red]cannot use the database[/red]: {reason}")
        raise SystemExit(1) from None
