"""Signing in to the patient space: activation, sign-in, password reset, sign-out, devices.

Every check is ``carnet.auth.patients`` (codes, passwords, TOTP, lockout, per-address rate limit) and
``carnet.auth.sessions`` (the ``carnet_session`` cookie, set with the flags of the sign-in API). The
pages only carry the person's words in and the answers out: failures are told without saying which
part was wrong, as the service answers; too many failures from one address get a humane 429.

* ``GET/POST /patient/connexion``: INS (patients) or login (legal representatives), password, TOTP.
* ``GET/POST /patient/activation`` → the authenticator's QR code and secret → ``POST
  /patient/activation/confirmation`` with the first code.
* ``GET/POST /patient/mot-de-passe-oublie`` (ask for a code) → ``GET/POST
  /patient/mot-de-passe-oublie/nouveau`` (code, new password, TOTP).
* ``POST /patient/deconnexion``; ``GET /patient/appareils``, ``POST /patient/appareils/deconnexion-partout``.
* ``GET/POST /patient/opposition``: object to an announced record with its provisional code, the INS and
  the birth date (``patients.oppose``; no account needed).
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable
from typing import Annotated, Any

import segno
from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from carnet.audit.trace import TraceAction
from carnet.auth import patients, sessions
from carnet.deps import RuntimeDep
from carnet.errors import Invalid
from carnet.logging import log
from carnet.portal import web
from carnet.portal.deps import safe_next
from carnet.portal.patient import common

router = APIRouter(prefix=common.PREFIX, include_in_schema=False)
_INS = re.compile(r"[0-9][0-9AB]{14}")
_SECRET = re.compile(r"(?:[A-Z2-7]{8}){2,8}")  # a TOTP secret as Carnet makes them: base32, whole blocks

FormStr = Annotated[str, Form()]


def _ident(value: str) -> tuple[str | None, str | None]:
    """An INS (15 characters, spaces allowed) or a login."""
    compact = re.sub(r"[\s.-]", "", value or "").upper()
    if _INS.fullmatch(compact):
        return compact, None
    return None, (value or "").strip()[:120] or None


# The password rules of ``auth.patients.password_problems``, in the reader's language.
def password_messages(_: Callable[[str], str], problems: list[str]) -> list[str]:
    texts = {
        "at least": _("Le mot de passe doit compter au moins 12 caractères."),
        "at most": _("Le mot de passe doit compter au plus 256 caractères."),
        "two kinds": _(
            "Le mot de passe doit mélanger au moins deux sortes de caractères (minuscules, majuscules, chiffres, autres)."  # noqa: E501
        ),
        "too few": _("Le mot de passe répète trop peu de caractères différents."),
        "birth date": _("Le mot de passe ne doit pas contenir de date de naissance."),
        "INS or login": _("Le mot de passe ne doit contenir ni votre INS ni votre identifiant."),
    }
    found = []
    for problem in problems:
        for key, text in texts.items():
            if key in problem:
                found.append(text)
                break
        else:
            found.append(_("Le mot de passe ne convient pas."))
    return found


def _throttled(request: Request, runtime: RuntimeDep, template: str, context: dict[str, Any]) -> Response:
    _ = web.gettext(request)
    return common.page(
        request,
        runtime,
        template,
        None,
        {
            **context,
            "error": _(
                "Trop de tentatives ont échoué depuis votre connexion internet. Par sécurité, attendez une minute "
                "avant de réessayer."
            ),
        },
        status=429,
        headers={"Retry-After": "60"},
    )


# ---------------------------------------------------------------------------------------- sign-in
@router.get("")
def entry(request: Request, runtime: RuntimeDep) -> Response:
    """``/patient``: the person's own record (or their first child's), or the sign-in page."""
    with runtime.read() as work:
        space = common.open_space(work, request)
    held = common.default_record(space)
    return web.redirect(held.base if held else f"{common.PREFIX}/notifications")


@router.get("/connexion")
def login_form(request: Request, runtime: RuntimeDep) -> Response:
    target = safe_next(request.query_params.get("next"), common.PREFIX)
    return common.page(request, runtime, "patient/login.html", None, {"next": target, "ident": "", "errors": {}})


@router.post("/connexion")
def login(
    request: Request,
    runtime: RuntimeDep,
    identifiant: FormStr = "",
    mot_de_passe: FormStr = "",
    code: FormStr = "",
    csrf_token: Annotated[str, Form(alias="csrf")] = "",
    next_page: Annotated[str, Form(alias="next")] = "",
) -> Response:
    common.check_form(request, csrf_token)
    _ = web.gettext(request)
    target = safe_next(next_page, common.PREFIX)
    context: dict[str, Any] = {"next": target, "ident": identifiant.strip()[:120], "errors": {}}
    missing = {
        name: text
        for name, value, text in (
            ("identifiant", identifiant, _("Indiquez votre INS ou votre identifiant.")),
            ("mot_de_passe", mot_de_passe, _("Indiquez votre mot de passe.")),
            ("code", code, _("Indiquez le code à 6 chiffres de votre application d'authentification.")),
        )
        if not value.strip()
    }
    if missing:
        return common.page(request, runtime, "patient/login.html", None, {**context, "errors": missing}, status=422)
    ins, login_name = _ident(identifiant)
    with runtime.work() as work:
        result = patients.login(
            work,
            source=common.source(request, runtime),
            ins=ins,
            login=login_name,
            password=mot_de_passe[:1024],
            totp=code[:12],
            user_agent=request.headers.get("user-agent", "")[:200],
        )
    if result.status is patients.Status.THROTTLED:
        return _throttled(request, runtime, "patient/login.html", context)
    if result.status is patients.Status.UNCONFIRMED:
        context["error"] = _(
            "Votre compte n'est pas encore confirmé : terminez l'activation en saisissant un premier code de "
            "votre application d'authentification."
        )
        context["unconfirmed"] = True
        return common.page(request, runtime, "patient/login.html", None, context, status=401)
    if result.status is not patients.Status.OK or result.session_token is None:
        context["error"] = _(
            "Connexion impossible. Vérifiez votre INS ou identifiant, votre mot de passe et le code affiché "
            "maintenant par votre application. Après plusieurs échecs, le compte est bloqué quinze minutes."
        )
        return common.page(request, runtime, "patient/login.html", None, context, status=401)
    response = web.redirect(target)
    response.set_cookie(sessions.COOKIE, result.session_token, **common.cookie_flags(runtime))
    return response


@router.post("/deconnexion")
def logout(request: Request, runtime: RuntimeDep, csrf_token: Annotated[str, Form(alias="csrf")] = "") -> Response:
    common.check_form(request, csrf_token)
    token = sessions.cookie_token(request)
    if token is not None:
        with runtime.work() as work:
            account_id = sessions.account_for_session(work, token)
            if sessions.revoke(work, token) and account_id is not None:
                patients.trace_sign_in(
                    work, TraceAction.LOGOUT, patients.Target(None, None), identifier=None, account_id=account_id
                )
    response = common.redirect(f"{common.PREFIX}/connexion", "deconnecte")
    response.delete_cookie(sessions.COOKIE, **common.cookie_flags(runtime))
    return response


# ---------------------------------------------------------------------------------------- devices
@router.get("/appareils")
def devices(request: Request, runtime: RuntimeDep) -> Response:
    with runtime.read() as work:
        space = common.open_space(work, request)
        found = sessions.live_sessions(work, space.account_id, current=space.token)
    return common.page(request, runtime, "patient/devices.html", space, {"sessions": found}, section="appareils")


@router.post("/appareils/deconnexion-partout")
def logout_everywhere(
    request: Request, runtime: RuntimeDep, csrf_token: Annotated[str, Form(alias="csrf")] = ""
) -> Response:
    common.check_form(request, csrf_token)
    with runtime.work() as work:
        space = common.open_space(work, request)
        revoked = sessions.revoke_all(work, space.account_id)
        patients.trace_sign_in(
            work,
            TraceAction.LOGOUT,
            patients.Target(None, None),
            identifier=None,
            account_id=space.account_id,
            detail=f"everywhere:{revoked}",
        )
    response = common.redirect(f"{common.PREFIX}/connexion", "partout")
    response.delete_cookie(sessions.COOKIE, **common.cookie_flags(runtime))
    return response


# ---------------------------------------------------------------------------------------- activation
def qr_data_uri(uri: str, title: str) -> str:
    """The otpauth:// URI as a QR code: an SVG image in a data: URI (the page's CSP allows data: images)."""
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(
        buffer, kind="svg", scale=5, border=4, dark="#000000", light="#ffffff", title=title, xmldecl=False, nl=False
    )
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _grouped(secret: str) -> str:
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


@router.get("/activation")
def activation_form(request: Request, runtime: RuntimeDep) -> Response:
    return common.page(request, runtime, "patient/activate.html", None, {"values": {}, "errors": {}})


@router.post("/activation")
def activate(
    request: Request,
    runtime: RuntimeDep,
    code_activation: FormStr = "",
    identifiant: FormStr = "",
    date_naissance: FormStr = "",
    mot_de_passe: FormStr = "",
    confirmation: FormStr = "",
    csrf_token: Annotated[str, Form(alias="csrf")] = "",
) -> Response:
    common.check_form(request, csrf_token)
    _ = web.gettext(request)
    values = {
        "code_activation": code_activation.strip()[:32],
        "identifiant": identifiant.strip()[:120],
        "date_naissance": date_naissance[:10],
    }
    errors: dict[str, str] = {}
    if not code_activation.strip():
        errors["code_activation"] = _("Indiquez le code d'activation reçu.")
    if not identifiant.strip():
        errors["identifiant"] = _("Indiquez votre INS (patient) ou votre identifiant (représentant légal).")
    birth = None
    try:
        birth = common.parse_date(date_naissance)
    except ValueError:
        errors["date_naissance"] = _("Indiquez une date valide, par exemple 28/03/1979.")
    if birth is None and "date_naissance" not in errors:
        errors["date_naissance"] = _("Indiquez la date de naissance.")
    if not mot_de_passe:
        errors["mot_de_passe"] = _("Choisissez un mot de passe.")
    elif mot_de_passe != confirmation:
        errors["confirmation"] = _("Les deux mots de passe ne sont pas identiques.")
    context = {"values": values, "errors": errors}
    if errors:
        return common.page(request, runtime, "patient/activate.html", None, context, status=422)
    assert birth is not None
    ins, login_name = _ident(identifiant)
    try:
        with runtime.work() as work:
            result = patients.activate(
                work,
                source=common.source(request, runtime),
                code=code_activation[:32],
                ins=ins,
                login=login_name,
                birth_date=birth,
                password=mot_de_passe[:1024],
            )
    except Invalid as exc:  # the password rules: nothing was spent
        problems = [p.message for p in exc.problems]
        context["errors"] = {"mot_de_passe": " ".join(password_messages(_, problems))}
        return common.page(request, runtime, "patient/activate.html", None, context, status=422)
    if result.status is patients.Status.THROTTLED:
        return _throttled(request, runtime, "patient/activate.html", context)
    if result.status is not patients.Status.OK or result.totp_secret is None or result.otpauth_uri is None:
        context["error"] = _(
            "Activation impossible. Vérifiez le code d'activation, votre INS ou identifiant et la date de naissance. "
            "Un code ne sert qu'une fois et expire : demandez-en un nouveau si besoin."
        )
        return common.page(request, runtime, "patient/activate.html", None, context, status=401)
    return _enrolment(
        request, runtime, identifiant.strip(), result.totp_secret, result.otpauth_uri, str(result.account_id)
    )


def _enrolment(
    request: Request,
    runtime: RuntimeDep,
    identifiant: str,
    secret: str,
    uri: str,
    account: str,
    *,
    error: str | None = None,
    status: int = 200,
) -> Response:
    _ = web.gettext(request)
    return common.page(
        request,
        runtime,
        "patient/enrol.html",
        None,
        {
            "identifiant": identifiant,
            "secret": secret,
            "secret_grouped": _grouped(secret),
            "uri": uri,
            "account": account,
            "qr": qr_data_uri(uri, _("QR code à scanner avec votre application d'authentification")),
            "error": error,
        },
        status=status,
    )


@router.post("/activation/confirmation")
def confirm(
    request: Request,
    runtime: RuntimeDep,
    identifiant: FormStr = "",
    code: FormStr = "",
    secret: FormStr = "",
    uri: FormStr = "",
    account: FormStr = "",
    csrf_token: Annotated[str, Form(alias="csrf")] = "",
) -> Response:
    common.check_form(request, csrf_token)
    _ = web.gettext(request)
    ins, login_name = _ident(identifiant)
    with runtime.work() as work:
        status = patients.confirm_activation(
            work, source=common.source(request, runtime), ins=ins, login=login_name, totp=code[:12]
        )
    if status is patients.Status.OK:
        return common.redirect(f"{common.PREFIX}/connexion", "active")
    message = (
        _("Trop de tentatives ont échoué : attendez une minute avant de réessayer.")
        if status is patients.Status.THROTTLED
        else _("Ce code n'est pas le bon. Saisissez le code affiché maintenant par votre application (6 chiffres).")
    )
    secret = re.sub(r"[^A-Z2-7]", "", secret.upper())[:64]
    if not _SECRET.fullmatch(secret):
        # The enrolment page's own fields did not come back (a hand-made request, a truncated form): the
        # secret cannot be shown again, so the activation starts over.
        return common.page(
            request,
            runtime,
            "patient/activate.html",
            None,
            {
                "values": {"identifiant": identifiant.strip()[:120]},
                "errors": {
                    "code_activation": _("Recommencez l'activation : saisissez à nouveau votre code d'activation.")
                },
            },
            status=422,
        )
    uri = uri if uri.startswith("otpauth://totp/") and len(uri) < 400 else patients.provisioning_uri(secret, "Carnet")
    return _enrolment(
        request,
        runtime,
        identifiant.strip()[:120],
        secret,
        uri,
        account[:40],
        error=message,
        status=429 if status is patients.Status.THROTTLED else 401,
    )


# ---------------------------------------------------------------------------------------- password reset
@router.get("/mot-de-passe-oublie")
def reset_form(request: Request, runtime: RuntimeDep) -> Response:
    return common.page(request, runtime, "patient/reset_request.html", None, {"values": {}, "errors": {}})


@router.post("/mot-de-passe-oublie")
def reset_request(
    request: Request,
    runtime: RuntimeDep,
    identifiant: FormStr = "",
    date_naissance: FormStr = "",
    csrf_token: Annotated[str, Form(alias="csrf")] = "",
) -> Response:
    common.check_form(request, csrf_token)
    _ = web.gettext(request)
    values = {"identifiant": identifiant.strip()[:120], "date_naissance": date_naissance[:10]}
    errors: dict[str, str] = {}
    if not identifiant.strip():
        errors["identifiant"] = _("Indiquez votre INS ou votre identifiant.")
    try:
        birth = common.parse_date(date_naissance)
    except ValueError:
        birth = None
    if birth is None:
        errors["date_naissance"] = _("Indiquez une date valide, par exemple 28/03/1979.")
    if errors:
        return common.page(
            request, runtime, "patient/reset_request.html", None, {"values": values, "errors": errors}, status=422
        )
    assert birth is not None
    ins, login_name = _ident(identifiant)
    with runtime.work() as work:
        result = patients.request_reset(
            work, source=common.source(request, runtime), ins=ins, login=login_name, birth_date=birth
        )
    if result.status is patients.Status.THROTTLED:
        return _throttled(request, runtime, "patient/reset_request.html", {"values": values, "errors": {}})
    if result.account_id is not None:  # the code went to the outbox (e-mail, SMS), never to the log
        log.debug("patient_reset_code", account=str(result.account_id), notified=result.notified)
    return common.page(
        request,
        runtime,
        "patient/reset_confirm.html",
        None,
        {"values": {"identifiant": values["identifiant"]}, "errors": {}, "sent": True},
    )


@router.get("/mot-de-passe-oublie/nouveau")
def reset_confirm_form(request: Request, runtime: RuntimeDep) -> Response:
    return common.page(
        request, runtime, "patient/reset_confirm.html", None, {"values": {}, "errors": {}, "sent": False}
    )


@router.post("/mot-de-passe-oublie/nouveau")
def reset_confirm(
    request: Request,
    runtime: RuntimeDep,
    identifiant: FormStr = "",
    code_reinitialisation: FormStr = "",
    mot_de_passe: FormStr = "",
    confirmation: FormStr = "",
    code: FormStr = "",
    csrf_token: Annotated[str, Form(alias="csrf")] = "",
) -> Response:
    common.check_form(request, csrf_token)
    _ = web.gettext(request)
    values = {"identifiant": identifiant.strip()[:120]}
    errors: dict[str, str] = {}
    for name, value, text in (
        ("identifiant", identifiant, _("Indiquez votre INS ou votre identifiant.")),
        ("code_reinitialisation", code_reinitialisation, _("Indiquez le code de réinitialisation reçu.")),
        ("mot_de_passe", mot_de_passe, _("Choisissez un nouveau mot de passe.")),
        ("code", code, _("Indiquez le code à 6 chiffres de votre application d'authentification.")),
    ):
        if not value.strip():
            errors[name] = text
    if mot_de_passe and mot_de_passe != confirmation:
        errors["confirmation"] = _("Les deux mots de passe ne sont pas identiques.")
    context: dict[str, Any] = {"values": values, "errors": errors, "sent": False}
    if errors:
        return common.page(request, runtime, "patient/reset_confirm.html", None, context, status=422)
    ins, login_name = _ident(identifiant)
    try:
        with runtime.work() as work:
            status = patients.confirm_reset(
                work,
                source=common.source(request, runtime),
                code=code_reinitialisation[:32],
                ins=ins,
                login=login_name,
                new_password=mot_de_passe[:1024],
                totp=code[:12],
            )
    except Invalid as exc:
        context["errors"] = {"mot_de_passe": " ".join(password_messages(_, [p.message for p in exc.problems]))}
        return common.page(request, runtime, "patient/reset_confirm.html", None, context, status=422)
    if status is patients.Status.THROTTLED:
        return _throttled(request, runtime, "patient/reset_confirm.html", context)
    if status is not patients.Status.OK:
        context["error"] = _(
            "Réinitialisation impossible. Vérifiez le code reçu, votre INS ou identifiant et le code de votre "
            "application d'authentification."
        )
        return common.page(request, runtime, "patient/reset_confirm.html", None, context, status=401)
    response = common.redirect(f"{common.PREFIX}/connexion", "mot-de-passe")
    response.delete_cookie(sessions.COOKIE, **common.cookie_flags(runtime))
    return response


# ---------------------------------------------------------------------------------------- objection
@router.get("/opposition")
def opposition_form(request: Request, runtime: RuntimeDep) -> Response:
    """Object to an announced record with its provisional code (no account needed)."""
    return common.page(request, runtime, "patient/opposition.html", None, {"values": {}, "errors": {}})


@router.post("/opposition")
def oppose(
    request: Request,
    runtime: RuntimeDep,
    code_provisoire: FormStr = "",
    ins: FormStr = "",
    date_naissance: FormStr = "",
    confirmation: FormStr = "",
    csrf_token: Annotated[str, Form(alias="csrf")] = "",
) -> Response:
    common.check_form(request, csrf_token)
    _ = web.gettext(request)
    values = {
        "code_provisoire": code_provisoire.strip()[:32],
        "ins": ins.strip()[:32],
        "date_naissance": date_naissance[:10],
    }
    errors: dict[str, str] = {}
    if not code_provisoire.strip():
        errors["code_provisoire"] = _("Indiquez le code provisoire reçu.")
    matricule, _login = _ident(ins)
    if matricule is None:
        errors["ins"] = _("Indiquez l'INS : 15 caractères, chiffres (et A ou B pour la Corse).")
    birth = None
    try:
        birth = common.parse_date(date_naissance)
    except ValueError:
        errors["date_naissance"] = _("Indiquez une date valide, par exemple 28/03/1979.")
    if birth is None and "date_naissance" not in errors:
        errors["date_naissance"] = _("Indiquez la date de naissance.")
    if confirmation != "1":
        errors["confirmation"] = _("Cochez la case pour confirmer votre opposition.")
    context: dict[str, Any] = {"values": values, "errors": errors}
    if errors:
        return common.page(request, runtime, "patient/opposition.html", None, context, status=422)
    assert birth is not None and matricule is not None
    with runtime.work() as work:
        result = patients.oppose(
            work, source=common.source(request, runtime), code=code_provisoire[:32], ins=matricule, birth_date=birth
        )
    if result.status is patients.Status.THROTTLED:
        return _throttled(request, runtime, "patient/opposition.html", context)
    if result.too_late:
        context["error"] = _(
            "Le délai d'opposition de ce dossier est écoulé : il est ouvert. Activez votre espace pour le fermer."
        )
        return common.page(request, runtime, "patient/opposition.html", None, context, status=409)
    if result.status is not patients.Status.OK or result.record is None:
        context["error"] = _(
            "Opposition impossible. Vérifiez le code provisoire, l'INS et la date de naissance. "
            "Un code ne sert qu'une fois et expire."
        )
        return common.page(request, runtime, "patient/opposition.html", None, context, status=401)
    log.info("patient_portal_opposition", record=str(result.record.id))
    return common.page(
        request, runtime, "patient/opposition.html", None, {"done": True, "closed_at": result.record.closed_at}
    )
