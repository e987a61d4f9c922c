"""``carnet account``: patient accounts (activation codes) and software clients (public keys)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from carnet import audit

if TYPE_CHECKING:
    from collections.abc import Callable

    from carnet.runtime import Runtime, Work

app = typer.Typer(no_args_is_help=True)


# --------------------------------------------------------------------------------------- clients
# `carnet account client …`: software clients (SMART Backend Services). Logic in carnet.accounts.clients.

client_app = typer.Typer(
    no_args_is_help=True, help="Software clients (SMART Backend Services): register, rotate keys, list."
)
app.add_typer(client_app, name="client")


def _client_runtime() -> Runtime:
    from carnet.cli.main import _settings
    from carnet.runtime import Runtime

    return Runtime(_settings())


def _read_jwks(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"error: cannot read {path}: {exc}", err=True)
        raise typer.Exit(1) from None


def _client_change(action: Callable[[Work], str]) -> None:
    """Run one change in a unit of work; print its summary, or the refusal and exit 1."""
    from carnet.errors import CarnetError

    runtime = _client_runtime()
    try:
        with runtime.work() as work:
            summary = action(work)
            audit.administrative(work, f"client: {summary}")
    except CarnetError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    finally:
        runtime.dispose()
    typer.echo(summary)


@client_app.command("register")
def client_register(
    client_id: Annotated[str, typer.Option("--id", help="Client id (the iss and sub of its assertions).")],
    name: Annotated[str, typer.Option("--name", help="Display name of the software.")],
    kind: Annotated[str, typer.Option("--kind", help="software (acts for professionals) or insurer.")],
    scopes: Annotated[str, typer.Option("--scopes", help='Space-separated, e.g. "system/DocumentReference.crus".')],
    organization: Annotated[
        str | None, typer.Option("--organization", help="IdNat_Struct of the organisation (software only).")
    ] = None,
    jwks: Annotated[
        Path | None,
        typer.Option("--jwks", exists=True, dir_okay=False, help="JSON Web Key Set of its public keys (new clients)."),
    ] = None,
) -> None:
    """Register a client, or update it (name, organisation, scopes, and keys when --jwks is given)."""
    from carnet.accounts import clients
    from carnet.accounts.models import ClientKind

    if kind not in {k.value for k in ClientKind}:
        typer.echo(f"error: --kind must be {' or '.join(k.value for k in ClientKind)}", err=True)
        raise typer.Exit(2)
    material = _read_jwks(jwks) if jwks is not None else None

    def action(work: Work) -> str:
        client = clients.register_client(
            work,
            client_id=client_id,
            name=name,
            kind=ClientKind(kind),
            organization_idnat=organization,
            jwks=material,
            scopes=scopes,
        )
        return f"client {client.id} registered: keys {', '.join(clients.key_ids(client))}; scopes {client.scopes}"

    _client_change(action)


@client_app.command("keys")
def client_keys(
    client_id: Annotated[str, typer.Option("--id", help="Client id.")],
    jwks: Annotated[Path, typer.Option("--jwks", exists=True, dir_okay=False, help="The new public key set.")],
) -> None:
    """Replace a client's public keys (rotation): assertions signed with a key left out are refused."""
    from carnet.accounts import clients

    material = _read_jwks(jwks)

    def action(work: Work) -> str:
        client = clients.rotate_keys(work, client_id=client_id, jwks=material)
        return f"client {client.id} now has the keys {', '.join(clients.key_ids(client))}"

    _client_change(action)


@client_app.command("disable")
def client_disable(client_id: Annotated[str, typer.Option("--id", help="Client id.")]) -> None:
    """Refuse the client's token requests from now on (tokens already issued expire on their own)."""
    from carnet.accounts import clients

    _client_change(lambda work: f"client {clients.set_active(work, client_id=client_id, active=False).id} disabled")


@client_app.command("enable")
def client_enable(client_id: Annotated[str, typer.Option("--id", help="Client id.")]) -> None:
    """Accept a disabled client's token requests again."""
    from carnet.accounts import clients

    _client_change(lambda work: f"client {clients.set_active(work, client_id=client_id, active=True).id} enabled")


@client_app.command("list")
def client_list(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """The registered clients: kind, organisation, state, key ids and scopes."""
    import dataclasses
    import json

    from carnet.accounts import clients

    runtime = _client_runtime()
    try:
        with runtime.read() as work:
            rows = clients.list_clients(work)
    finally:
        runtime.dispose()
    if as_json:
        print(json.dumps([dataclasses.asdict(row) for row in rows], ensure_ascii=False, indent=2))
        return
    for row in rows:
        state = "active" if row.active else "disabled"
        print(
            f"{row.id}\t{row.kind}\t{row.organization_idnat or '-'}\t{state}\t"
            f"keys={','.join(row.key_ids) or '-'}\tscopes={' '.join(row.scopes) or '-'}\t{row.name}"
        )


# --------------------------------------------------------------------------------------- patient sign-in
# `carnet account activation-code` and `carnet account reset-code`: one-time codes for patients and
# legal representatives (logic in carnet.auth.patients). Until mail, post and SMS delivery exist, the
# operator hands the printed code over. The code alone goes to stdout (scripts), details to stderr.

_INS_NIR_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"


def _sign_in_subject(work: Work, ins: str | None, system: str, account: str | None) -> tuple[str, str]:
    """("record" | "account", id) for --ins or --account (a UUID or a demo persona key); exits on errors."""
    import uuid

    from carnet.demo.personas import BY_KEY, persona_uuid
    from carnet.identifiers import IdentifierError, parse_ins
    from carnet.records import service as records

    if (ins is None) == (account is None):
        typer.echo("error: give --ins (a patient) or --account (an account id or demo persona key)", err=True)
        raise typer.Exit(2)
    if ins is not None:
        try:
            parsed = parse_ins(system, ins, allow_test=not work.settings.is_production)
        except IdentifierError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        record = records.find_by_ins(work, parsed)
        if record is None:
            typer.echo("error: no record has this INS", err=True)
            raise typer.Exit(1)
        return "record", str(record.id)
    assert account is not None
    if account in BY_KEY:
        return "account", str(persona_uuid(account))
    try:
        return "account", str(uuid.UUID(account))
    except ValueError:
        typer.echo(f"error: {account!r} is neither an account id (UUID) nor a demo persona key", err=True)
        raise typer.Exit(2) from None


@app.command("activation-code")
def activation_code(
    ins: Annotated[str | None, typer.Option("--ins", help="The patient's INS (matricule).")] = None,
    system: Annotated[str, typer.Option("--system", help="The INS system.")] = _INS_NIR_SYSTEM,
    account: Annotated[
        str | None, typer.Option("--account", help="A legal representative's account id, or a demo persona key.")
    ] = None,
) -> None:
    """Issue a one-time activation code (earlier codes for the same person stop working)."""
    import uuid

    from carnet.auth import patients
    from carnet.cli.main import _settings
    from carnet.runtime import Runtime

    runtime = Runtime(_settings())
    try:
        with runtime.work() as work:
            kind, ident = _sign_in_subject(work, ins, system, account)
            try:
                issued = (
                    patients.issue_activation_code(work, record_id=uuid.UUID(ident))
                    if kind == "record"
                    else patients.issue_activation_code(work, account_id=uuid.UUID(ident))
                )
            except ValueError as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(1) from None
            audit.administrative(
                work,
                "activation code issued" + ("" if issued.record_id is not None else f" for account {ident}"),
                record=issued.record_id,
            )
    finally:
        runtime.dispose()
    typer.echo(patients.format_code(issued.code))
    if issued.record_id is not None:
        how = "the patient activates with this code, their INS and their birth date"
    else:
        how = (
            f"the legal representative activates with this code, the login {issued.account_id} "
            "and the birth date of a child they represent"
        )
    typer.echo(f"activation code valid until {issued.expires_at:%Y-%m-%d %H:%M} UTC: {how}", err=True)


@app.command("reset-code")
def reset_code(
    ins: Annotated[str | None, typer.Option("--ins", help="The patient's INS (matricule).")] = None,
    system: Annotated[str, typer.Option("--system", help="The INS system.")] = _INS_NIR_SYSTEM,
    account: Annotated[str | None, typer.Option("--account", help="An account id, or a demo persona key.")] = None,
) -> None:
    """Issue a password-reset code for an activated account (the person also needs their authenticator)."""
    import uuid

    import sqlalchemy as sa

    from carnet.accounts.models import Account
    from carnet.auth import patients
    from carnet.cli.main import _settings
    from carnet.runtime import Runtime

    runtime = Runtime(_settings())
    try:
        with runtime.work() as work:
            kind, ident = _sign_in_subject(work, ins, system, account)
            account_id = (
                work.session.scalar(sa.select(Account.id).where(Account.record_id == uuid.UUID(ident)))
                if kind == "record"
                else uuid.UUID(ident)
            )
            try:
                if account_id is None:
                    raise ValueError("this record has no account yet: issue an activation code instead")
                issued = patients.issue_reset_code(work, account_id)
            except ValueError as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(1) from None
            audit.administrative(work, f"password reset code issued for account {issued.account_id}")
    finally:
        runtime.dispose()
    typer.echo(patients.format_code(issued.code))
    typer.echo(
        f"reset code valid until {issued.expires_at:%Y-%m-%d %H:%M:%S} UTC for account {issued.account_id}", err=True
    )
