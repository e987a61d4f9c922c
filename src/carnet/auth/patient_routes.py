"""Patient sign-in over HTTP: activation, password + TOTP login, sessions, password reset.

Routes under ``/auth/patient`` (JSON in and out; errors are OperationOutcomes like everywhere else):

* ``POST /activate`` {code, ins | login, birth_date, password} → the TOTP secret and its otpauth:// URI;
* ``POST /activate/confirm`` {ins | login, totp} → confirms the authenticator (sign-in needs it);
* ``POST /login`` {ins | login, password, totp} → the session cookie ``carnet_session`` and a short
  access token for API clients;
* ``GET /sessions``, ``POST /logout``, ``POST /logout-all``;
* ``POST /reset/request`` {ins | login, birth_date} → always 202; ``POST /reset/confirm``
  {code, ins | login, new_password, totp};
* ``POST /oppose`` {code, ins, birth_date} → objects to an announced record with its provisional code
  (no account needed): closed, its content destroyed (``carnet.records.lifecycle``).

Every failed check answers the same 401; too many failures from one address answer 429. Bodies must
be JSON (``Content-Type: application/json``): a cross-site HTML form cannot post one, which keeps
forged sign-ins out. Cookie-authenticated state changes carry ``X-Carnet-CSRF: 1`` (see
``carnet.auth.sessions``).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Self

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, StringConstraints, model_validator
from starlette.responses import JSONResponse, Response

from carnet.audit.trace import TraceAction
from carnet.auth import patients, sessions, tokens
from carnet.auth.actor import Actor, ActorKind
from carnet.auth.authenticate import actor_for
from carnet.auth.certificates import client_address
from carnet.config import Settings
from carnet.deps import ClaimsDep, RuntimeDep
from carnet.errors import Conflict, Forbidden, IssueCode, Problem, Unauthenticated
from carnet.fhir.outcomes import outcome_response
from carnet.logging import log
from carnet.runtime import Runtime

router = APIRouter(prefix="/auth/patient", tags=["Patient sign-in"])

ACTIVATION_FAILED = (
    "activation failed: check the code, your INS (or login) and the birth date; a code expires and works once"
)
CONFIRMATION_FAILED = "confirmation failed: check your INS (or login) and the code your authenticator shows now"
LOGIN_FAILED = "sign-in failed: check your INS (or login), your password and the code your authenticator shows"
UNCONFIRMED = "your account is not confirmed yet: POST /auth/patient/activate/confirm with a code of your authenticator"
RESET_FAILED = "password reset failed: check the reset code, your INS (or login) and your authenticator code"
OPPOSITION_FAILED = "objection failed: check the provisional code, your INS and the birth date; a code works once"
OPPOSITION_TOO_LATE = (
    "the opposition window of this record has ended (or the objection is already recorded): "
    "activate your account to close it"
)

Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
Totp = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=12)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class Identified(BaseModel):
    """A patient gives their INS; a legal representative their login (either may use the login)."""

    ins: Annotated[str, StringConstraints(strip_whitespace=True, max_length=32)] | None = None
    login: Annotated[str, StringConstraints(strip_whitespace=True, max_length=120)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if bool(self.ins) == bool(self.login):
            raise ValueError("give either ins (patients) or login (legal representatives), not both")
        return self


class ActivateBody(Identified):
    code: Code
    birth_date: dt.date = Field(description="YYYY-MM-DD: yours, or for a legal representative one child's")
    password: Password


class ConfirmBody(Identified):
    totp: Totp


class LoginBody(Identified):
    password: Password
    totp: Totp


class ResetRequestBody(Identified):
    birth_date: dt.date


class ResetConfirmBody(Identified):
    code: Code
    new_password: Password
    totp: Totp


class OpposeBody(BaseModel):
    code: Code
    ins: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
    birth_date: dt.date = Field(description="YYYY-MM-DD: the patient's")


# ---------------------------------------------------------------------------------------- helpers
def source_address(request: Request, settings: Settings) -> str:
    """The client's address for rate limiting: the TCP peer, or what a trusted proxy forwards."""
    return client_address(
        request.client.host if request.client else None,
        request.headers.get("x-forwarded-for"),
        settings.trusted_proxies,
    )


def _user_agent(request: Request) -> str:
    return request.headers.get("user-agent", "")[:200]


def _throttled() -> Response:
    return outcome_response(
        429,
        [Problem("too many failed attempts from your address: try again in a minute", code=IssueCode.SECURITY)],
        headers={"Retry-After": "60"},
    )


def _cookie_flags(settings: Settings) -> dict[str, Any]:
    return {"path": "/", "secure": settings.cookie_secure, "httponly": True, "samesite": "strict"}


def _person(actor: Actor) -> Actor:
    if actor.account_id is None or actor.kind not in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE):
        raise Forbidden("only patients and legal representatives have sign-in sessions")
    return actor


def _signed_out(runtime: Runtime, body: dict[str, Any] | None = None) -> Response:
    # Session subjects are never cached (``authenticate.actor_for``): the revoked session stops working
    # at once, in every worker process.
    response: Response = JSONResponse(body) if body is not None else Response(status_code=204)
    response.delete_cookie(sessions.COOKIE, **_cookie_flags(runtime.settings))
    return response


# ---------------------------------------------------------------------------------------- activation
@router.post("/activate")
def activate(body: ActivateBody, request: Request, runtime: RuntimeDep) -> Response:
    """Activate an account with the one-time code an operator issued; returns the TOTP secret to enrol."""
    with runtime.work() as work:
        result = patients.activate(
            work,
            source=source_address(request, runtime.settings),
            code=body.code,
            ins=body.ins,
            login=body.login,
            birth_date=body.birth_date,
            password=body.password,
        )
    if result.status is patients.Status.THROTTLED:
        return _throttled()
    if result.status is not patients.Status.OK:
        raise Unauthenticated(ACTIVATION_FAILED)
    return JSONResponse(
        {
            "account": str(result.account_id),
            "login": str(result.account_id),
            "totp_secret": result.totp_secret,
            "otpauth_uri": result.otpauth_uri,
            "next": "POST /auth/patient/activate/confirm with a code from your authenticator",
        },
        status_code=201,
    )


@router.post("/activate/confirm")
def confirm(body: ConfirmBody, request: Request, runtime: RuntimeDep) -> Response:
    """Confirm the authenticator with a first TOTP code; sign-in is refused until then."""
    with runtime.work() as work:
        status = patients.confirm_activation(
            work, source=source_address(request, runtime.settings), ins=body.ins, login=body.login, totp=body.totp
        )
    if status is patients.Status.THROTTLED:
        return _throttled()
    if status is not patients.Status.OK:
        raise Unauthenticated(CONFIRMATION_FAILED)
    return JSONResponse({"status": "confirmed"})


# ---------------------------------------------------------------------------------------- sign-in
@router.post("/login")
def login(body: LoginBody, request: Request, runtime: RuntimeDep) -> Response:
    """Password + TOTP: sets the session cookie and returns a short-lived access token."""
    settings = runtime.settings
    with runtime.work() as work:
        result = patients.login(
            work,
            source=source_address(request, settings),
            ins=body.ins,
            login=body.login,
            password=body.password,
            totp=body.totp,
            user_agent=_user_agent(request),
        )
    if result.status is patients.Status.THROTTLED:
        return _throttled()
    if result.status is patients.Status.UNCONFIRMED:
        raise Unauthenticated(UNCONFIRMED)
    if result.status is not patients.Status.OK or result.session_token is None:
        raise Unauthenticated(LOGIN_FAILED)
    access = tokens.issue(settings, f"account:{result.account_id}", extra={"auth": "password"})
    response = JSONResponse(
        {
            "account": str(result.account_id),
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": settings.access_token_ttl_seconds,
            "session_idle_seconds": settings.session_idle_seconds,
            "session_max_seconds": settings.session_max_seconds,
        }
    )
    response.set_cookie(sessions.COOKIE, result.session_token, **_cookie_flags(settings))
    return response


@router.get("/sessions")
def list_sessions(runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    """The caller's open sessions (``current``: the one this request came with)."""
    with runtime.read() as work:
        actor = _person(actor_for(work, claims))
        assert actor.account_id is not None
        found = sessions.live_sessions(work, actor.account_id, current=sessions.token_of_claims(claims))
    return JSONResponse(
        {
            "sessions": [
                {
                    "created": s.created_at.isoformat(),
                    "last_seen": s.last_seen_at.isoformat(),
                    "expires": s.expires_at.isoformat(),
                    "user_agent": s.user_agent,
                    "current": s.current,
                }
                for s in found
            ]
        }
    )


@router.post("/logout", status_code=204)
def logout(request: Request, runtime: RuntimeDep) -> Response:
    """Sign out of this session (the cookie's), and clear the cookie."""
    token = sessions.cookie_token(request)
    if token is None:
        raise Unauthenticated("no session cookie: nothing to sign out of")
    if not sessions.csrf_ok(request):
        raise Forbidden(f"signing out with the session cookie needs the header {sessions.CSRF_HEADER}: 1")
    with runtime.work() as work:
        account_id = sessions.account_for_session(work, token)
        if sessions.revoke(work, token) and account_id is not None:
            patients.trace_sign_in(
                work, TraceAction.LOGOUT, patients.Target(None, None), identifier=None, account_id=account_id
            )
    return _signed_out(runtime)


@router.post("/logout-all")
def logout_all(runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    """Sign out of every session of the account (cookie or access token)."""
    with runtime.work() as work:
        actor = _person(actor_for(work, claims))
        assert actor.account_id is not None
        revoked = sessions.revoke_all(work, actor.account_id)
        patients.trace_sign_in(
            work,
            TraceAction.LOGOUT,
            patients.Target(None, None),
            identifier=None,
            account_id=actor.account_id,
            detail=f"everywhere:{revoked}",
        )
    log.info("patient_signed_out_everywhere", account=str(actor.account_id), sessions=revoked)
    return _signed_out(runtime, {"revoked": revoked})


# ---------------------------------------------------------------------------------------- reset
@router.post("/reset/request", status_code=202)
def reset_request(body: ResetRequestBody, request: Request, runtime: RuntimeDep) -> Response:
    """Ask for a password-reset code. The answer is the same whether or not anything matched."""
    with runtime.work() as work:
        result = patients.request_reset(
            work,
            source=source_address(request, runtime.settings),
            ins=body.ins,
            login=body.login,
            birth_date=body.birth_date,
        )
    if result.status is patients.Status.THROTTLED:
        return _throttled()
    if result.account_id is not None:  # the code went to the outbox (e-mail, SMS), never to the log
        log.debug("patient_reset_code", account=str(result.account_id), notified=result.notified)
    return JSONResponse(
        {"status": "accepted", "detail": "if these details match an activated account, a reset code is on its way"},
        status_code=202,
    )


@router.post("/reset/confirm")
def reset_confirm(body: ResetConfirmBody, request: Request, runtime: RuntimeDep) -> Response:
    """Set a new password with the reset code and a TOTP code: signs out everywhere, lifts a lockout."""
    with runtime.work() as work:
        status = patients.confirm_reset(
            work,
            source=source_address(request, runtime.settings),
            code=body.code,
            ins=body.ins,
            login=body.login,
            new_password=body.new_password,
            totp=body.totp,
        )
    if status is patients.Status.THROTTLED:
        return _throttled()
    if status is not patients.Status.OK:
        raise Unauthenticated(RESET_FAILED)
    return _signed_out(runtime, {"status": "password-changed"})


# ---------------------------------------------------------------------------------------- objection
@router.post("/oppose")
def oppose(body: OpposeBody, request: Request, runtime: RuntimeDep) -> Response:
    """Object to an announced record with its provisional code, the INS and the birth date: the record
    will not open, its content is destroyed, a receipt goes to its addresses."""
    with runtime.work() as work:
        result = patients.oppose(
            work,
            source=source_address(request, runtime.settings),
            code=body.code,
            ins=body.ins,
            birth_date=body.birth_date,
        )
    if result.status is patients.Status.THROTTLED:
        return _throttled()
    if result.too_late:
        raise Conflict(OPPOSITION_TOO_LATE)
    if result.status is not patients.Status.OK or result.record is None:
        raise Unauthenticated(OPPOSITION_FAILED)
    closed = result.record.closed_at
    return JSONResponse(
        {
            "status": result.record.status,
            "reason": result.record.closure_reason,
            "closed_at": closed.isoformat() if closed else None,
        }
    )
