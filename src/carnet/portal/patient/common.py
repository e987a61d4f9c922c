"""What every page of the patient portal shares: who is signed in, which record is shown, the page frame.

A page resolves the session into an ``Actor`` inside its unit of work (``carnet.auth.authenticate``),
exactly as the API does. The records a person holds are their own and those of the children they
represent (``Actor.own_record``, ``Actor.represented_records``); each is read through
``records.service.read_patient``, i.e. through the access policy, which answers "not found" for any
record the person may not see. The record in the address (``/patient/dossiers/<id>/…``) is therefore
checked by the policy, never by the portal.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import Request
from starlette.responses import HTMLResponse, Response

from carnet.auth import sessions
from carnet.auth.actor import Actor, ActorKind
from carnet.auth.authenticate import actor_for
from carnet.auth.certificates import client_address
from carnet.errors import Forbidden, Invalid, NotFound, Unauthenticated
from carnet.notifications import centre
from carnet.portal import csrf, deps, web
from carnet.portal.deps import PATIENT_LOGIN, LoginRequired
from carnet.records import service as records
from carnet.runtime import Runtime, Work

PREFIX = "/patient"


@dataclass(frozen=True, slots=True)
class HeldRecord:
    """A record the signed-in person holds: their own, or a child's they represent."""

    id: uuid.UUID
    given: str
    family: str
    birth_date: str | None
    own: bool
    active: bool

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.given, self.family) if p)

    @property
    def birthday(self) -> dt.date | None:
        try:
            return dt.date.fromisoformat(self.birth_date) if self.birth_date else None
        except ValueError:
            return None  # a partial date

    @property
    def base(self) -> str:
        return f"{PREFIX}/dossiers/{self.id}"


@dataclass(slots=True)
class Space:
    """The signed-in person, their records, and the record this page is about."""

    actor: Actor
    token: str
    records: list[HeldRecord]
    current: HeldRecord | None = None
    unread: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def account_id(self) -> uuid.UUID:
        assert self.actor.account_id is not None
        return self.actor.account_id

    @property
    def recipient(self) -> str:
        return f"account:{self.account_id}"

    @property
    def is_representative_view(self) -> bool:
        return self.current is not None and not self.current.own


def _held(work: Work, actor: Actor, record_id: uuid.UUID) -> HeldRecord | None:
    try:
        view = records.read_patient(work, actor=actor, patient_id=str(record_id))
    except NotFound:
        return None
    patient = orjson.loads(view.body)
    name = (patient.get("name") or [{}])[0]
    given = " ".join(str(g).capitalize() if str(g).isupper() else str(g) for g in (name.get("given") or [])[:1])
    return HeldRecord(
        id=record_id,
        given=given,
        family=str(name.get("family") or ""),
        birth_date=patient.get("birthDate"),
        own=record_id == actor.own_record,
        active=view.record.is_active,
    )


def open_space(work: Work, request: Request, record_id: str | None = None) -> Space:
    """The signed-in person (else ``LoginRequired``) and, with ``record_id``, the record shown (``NotFound``
    unless the policy lets them read it)."""
    claims = deps.patient_claims(request)
    try:
        actor = actor_for(work, claims)
    except Unauthenticated as exc:
        raise LoginRequired(PATIENT_LOGIN, request.url.path) from exc
    if actor.kind not in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE) or actor.account_id is None:
        raise LoginRequired(PATIENT_LOGIN, request.url.path)
    token = sessions.token_of_claims(claims) or ""
    space = Space(actor=actor, token=token, records=[])
    current: HeldRecord | None = None
    if record_id is not None:
        try:
            wanted = uuid.UUID(record_id)
        except ValueError:
            raise NotFound() from None
        current = _held(work, actor, wanted)
        if current is None:
            raise NotFound()
    held_ids = [i for i in (actor.own_record, *sorted(actor.represented_records, key=str)) if i is not None]
    for held_id in dict.fromkeys(held_ids):
        held = current if current is not None and current.id == held_id else _held(work, actor, held_id)
        if held is not None:
            space.records.append(held)
    space.current = current
    space.unread = centre.unread_count(work, recipient=space.recipient)
    return space


def default_record(space: Space) -> HeldRecord | None:
    """The record a person lands on: their own, else their first child's."""
    return space.records[0] if space.records else None


def source(request: Request, runtime: Runtime) -> str:
    """The client's address, as rate limiting counts it (the TCP peer or what a trusted proxy forwards)."""
    return client_address(
        request.client.host if request.client else None,
        request.headers.get("x-forwarded-for"),
        runtime.settings.trusted_proxies,
    )


def check_form(request: Request, token: str | None) -> None:
    """The form's CSRF token (a readable refusal in the page's language)."""
    try:
        csrf.check(request, token)
    except Forbidden as exc:
        _ = web.gettext(request)
        raise Forbidden(
            _("Le formulaire a expiré ou ne vient pas de Carnet : rechargez la page et recommencez.")
        ) from exc


def require_active(request: Request, space: Space) -> None:
    """Changes to a closed record are refused in words the reader understands (the policy refuses most of
    them too, but with a developer's message); the pages hide these actions on a closed record."""
    if space.current is not None and not space.current.active:
        _ = web.gettext(request)
        raise Forbidden(_("Ce dossier est fermé : rouvrez-le pour le modifier."))


def unknown_action(request: Request) -> Invalid:
    """A form sent with an action the page never offers (a forged or outdated form)."""
    _ = web.gettext(request)
    return Invalid.at("action", _("Cette action n'existe pas : rechargez la page et recommencez."))


def cookie_flags(runtime: Runtime) -> dict[str, Any]:
    """The session cookie's flags, as the sign-in API sets them (``auth.patient_routes``)."""
    return {"path": "/", "secure": runtime.settings.cookie_secure, "httponly": True, "samesite": "strict"}


def page(
    request: Request,
    runtime: Runtime,
    template: str,
    space: Space | None,
    context: dict[str, Any] | None = None,
    *,
    section: str = "",
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """A patient page: the frame (records, navigation, unread count) and the page's own values."""
    values: dict[str, Any] = {
        "space": space,
        "section": section,
        "notice": notice_text(request),
        "idle_minutes": runtime.settings.session_idle_seconds // 60,
        **(context or {}),
    }
    return web.render(request, runtime.settings, template, values, status=status, headers=headers)


def is_htmx(request: Request) -> bool:
    """An htmx request (``HX-Request: true``, sent by ``htmx.min.js`` for an ``hx-post`` form): the route
    answers the fragment htmx swaps in instead of redirecting to the whole page (``fragment``)."""
    return request.headers.get("hx-request") == "true"


def fragment(
    request: Request,
    runtime: Runtime,
    template: str,
    space: Space,
    context: dict[str, Any] | None = None,
    *,
    notice: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    """The part of a page an htmx action replaces, with the action's message (``NOTICES[notice]``) and
    whatever else of the page it changes, swapped out of band (``hx-swap-oob``)."""
    values: dict[str, Any] = {
        "space": space,
        "fragment": True,
        "notice": NOTICES[notice](web.gettext(request)) if notice else None,
        **(context or {}),
    }
    return web.render(request, runtime.settings, template, values, status=status, headers=VARY)


VARY = {"Vary": "HX-Request"}  # the same address answers a page or a fragment

# Messages shown after a form (303 → the page, ``?ok=<code>``): fixed texts, nothing from the request.
NOTICES: dict[str, Callable[[Callable[[str], str]], str]] = {
    "masque": lambda _: _("Le document est masqué aux professionnels de santé."),
    "demasque": lambda _: _("Le document est de nouveau visible par les professionnels autorisés."),
    "tout-masque": lambda _: _("Vos documents sont masqués aux professionnels de santé."),
    "tout-demasque": lambda _: _("Vos documents sont de nouveau visibles par les professionnels autorisés."),
    "defaut": lambda _: _("Votre choix pour les nouveaux documents est enregistré."),
    "ajoute": lambda _: _("Votre document a été ajouté."),
    "supprime": lambda _: _("Le document a été supprimé."),
    "autorise": lambda _: _("Le professionnel est autorisé à accéder à votre dossier."),
    "retire": lambda _: _("L'autorisation est retirée."),
    "bloque": lambda _: _("Le professionnel est bloqué : il ne peut plus accéder à votre dossier."),
    "debloque": lambda _: _("Le professionnel est débloqué."),
    "admin": lambda _: _("Le professionnel est désormais administrateur de votre dossier."),
    "admin-retire": lambda _: _("Le professionnel n'est plus administrateur de votre dossier."),
    "urgence": lambda _: _("Vos choix pour les situations d'urgence sont enregistrés."),
    "lue": lambda _: _("La notification est marquée comme lue."),
    "tout-lu": lambda _: _("Toutes les notifications sont marquées comme lues."),
    "notif-supprimee": lambda _: _("La notification est supprimée."),
    "preferences": lambda _: _("Vos préférences de notification sont enregistrées."),
    "ferme": lambda _: _("Le dossier est fermé."),
    "rouvert": lambda _: _("Le dossier est rouvert."),
    "deconnecte": lambda _: _("Vous êtes déconnecté(e)."),
    "partout": lambda _: _("Toutes vos sessions sont fermées : reconnectez-vous."),
    "active": lambda _: _("Votre compte est activé : connectez-vous avec votre mot de passe et un nouveau code."),
    "mot-de-passe": lambda _: _("Votre mot de passe est changé : connectez-vous avec le nouveau."),
    "expire": lambda _: _("Votre session a expiré : reconnectez-vous."),
}


def notice_text(request: Request) -> str | None:
    code = request.query_params.get("ok")
    if not code or code not in NOTICES:
        return None
    return NOTICES[code](web.gettext(request))


def redirect(path: str, ok: str | None = None) -> Response:
    return web.redirect(f"{path}?ok={ok}" if ok else path)


def parse_date(value: str | None) -> dt.date | None:
    """A date typed in a form (``YYYY-MM-DD``, the date input's format; ``DD/MM/YYYY`` also accepted)."""
    value = (value or "").strip()
    if not value:
        return None
    for form in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return dt.datetime.strptime(value, form).date()  # noqa: DTZ007 - a calendar date, no time
        except ValueError:
            continue
    raise ValueError(value)
