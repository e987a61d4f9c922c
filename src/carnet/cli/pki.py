"""``carnet pki``: a test certificate authority and professional, organisation and server certificates.

For development and tests: the commands refuse to run with ``CARNET_ENV=production``, where
professionals use their real cards (IGC-Santé) and servers real certificates. The logic is in
``carnet.auth.pki``; file names are fixed, and each command prints what it wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

app = typer.Typer(no_args_is_help=True)
console = Console()
err = Console(stderr=True)

DirOption = Annotated[Path, typer.Option("--dir", help="Directory of the test CA and the certificates.")]
DaysOption = Annotated[int, typer.Option(min=1, help="Validity in days.")]
P12Option = Annotated[str | None, typer.Option("--p12-password", help="Password of the .p12 file (none by default).")]


def _refuse_in_production() -> None:
    from carnet.config import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            err.print(f"[red]configuration error[/red]: {error['msg']}")
        raise typer.Exit(2) from None
    if settings.is_production:
        err.print("[red]refused[/red]: the test PKI is never used in production (professionals use their cards)")
        raise typer.Exit(2)


def _report(what: str, files: list[Path]) -> None:
    console.print(f"{what}:")
    for path in files:
        print(f"  {path}")


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[red]error[/red]: {exc}")
    return typer.Exit(1)


@app.command("init")
def init(
    directory: DirOption,
    days: DaysOption = 3650,
    force: Annotated[bool, typer.Option(help="Replace an existing CA (its certificates stop verifying).")] = False,
) -> None:
    """Create the test CA "Carnet test CA": ca.key and the self-signed ca.crt."""
    from carnet.auth import pki

    _refuse_in_production()
    try:
        issued = pki.init_ca(directory, days=days, force=force)
    except pki.PkiError as exc:
        raise _fail(exc) from None
    _report(f"test CA {pki.CA_NAME!r} (trust it with CARNET_TLS_CLIENT_CA={issued.certificate})", issued.files)


@app.command("professional")
def professional(
    directory: DirOption,
    idnat: Annotated[str, typer.Option("--idnat", help="The professional's IdNat_PS (8 + RPPS, 0 + ADELI …).")],
    name: Annotated[str, typer.Option("--name", help='The holder\'s name, e.g. "Dr Stéphane MEDIONI".')],
    organization: Annotated[str | None, typer.Option("--organization", help="Organisation name (O).")] = None,
    days: DaysOption = 365,
    p12_password: P12Option = None,
) -> None:
    """A professional's client certificate (like a CPS card): <idnat>.crt, .key and .p12."""
    from carnet.auth import pki

    _refuse_in_production()
    try:
        issued = pki.issue_professional(
            directory, idnat=idnat, name=name, organization=organization, days=days, p12_password=p12_password
        )
    except pki.PkiError as exc:
        raise _fail(exc) from None
    _report(f"professional certificate for {idnat}", issued.files)


@app.command("organization")
def organization(
    directory: DirOption,
    idnat_struct: Annotated[
        str, typer.Option("--idnat-struct", help="The organisation's IdNat_Struct (1 + FINESS, 3 + SIRET …).")
    ],
    name: Annotated[str, typer.Option("--name", help="The organisation's name.")],
    days: DaysOption = 365,
    p12_password: P12Option = None,
) -> None:
    """An organisation ("personne morale") certificate for its software: org-<idnat>.crt, .key and .p12."""
    from carnet.auth import pki

    _refuse_in_production()
    try:
        issued = pki.issue_organization(
            directory, idnat_struct=idnat_struct, name=name, days=days, p12_password=p12_password
        )
    except pki.PkiError as exc:
        raise _fail(exc) from None
    _report(f"organisation certificate for {idnat_struct}", issued.files)


@app.command("server")
def server(
    directory: DirOption,
    host: Annotated[list[str] | None, typer.Option("--host", help="IP address in the certificate (repeatable).")] = (
        None
    ),
    dns: Annotated[list[str] | None, typer.Option("--dns", help="DNS name in the certificate (repeatable).")] = None,
    days: DaysOption = 365,
) -> None:
    """A TLS server certificate (serverAuth) for `carnet serve --tls-cert/--tls-key`: server.crt, server.key."""
    from carnet.auth import pki

    _refuse_in_production()
    hosts = host if host is not None else ([] if dns else ["127.0.0.1"])
    names = dns if dns is not None else ([] if host else ["localhost"])
    try:
        issued = pki.issue_server(directory, hosts=hosts, dns=names, days=days)
    except pki.PkiError as exc:
        raise _fail(exc) from None
    _report(f"server certificate for {', '.join([*names, *hosts])}", issued.files)
