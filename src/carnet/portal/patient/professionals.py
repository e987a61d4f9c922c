"""Professionals and confidentiality: who accessed the record or may access it, and the patient's choices.

* ``GET /patient/dossiers/<id>/professionnels``: the professionals with a relationship to the record
  (authorized, blocked, administrator, care team, médecin traitant — the active Consents, read through
  ``consents.overview``) and those who accessed it (the access history, ``audit.service.history``),
  with profession and organisation from the directory; the emergency settings, explained.
* ``POST …/professionnels/recherche``: search the directory by name or RPPS (in the body: a name can
  say something about one's health, it stays out of addresses).
* ``POST …/professionnels/decision``: authorize, revoke, block, unblock, designate or remove an
  administrator — each a Consent created or withdrawn by ``consents.service`` (the policy decides).
* ``POST …/professionnels/urgence``: the emergency preferences (regulation centre, break-glass, masked
  documents in emergencies).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from carnet.consents import overview as consent_overview
from carnet.consents.service import Kind
from carnet.deps import RuntimeDep
from carnet.directory import people
from carnet.errors import Invalid
from carnet.portal import i18n, web
from carnet.portal.patient import common, history_view

router = APIRouter(prefix=f"{common.PREFIX}/dossiers", include_in_schema=False)
FormStr = Annotated[str, Form()]
ACCESS_WINDOW = 100  # recent professional accesses looked at to list "who accessed"

# action → (consent kind, add or withdraw, the notice shown after)
ACTIONS: dict[str, tuple[Kind, bool, str]] = {
    "autoriser": (Kind.AUTHORIZATION, True, "autorise"),
    "retirer": (Kind.AUTHORIZATION, False, "retire"),
    "bloquer": (Kind.BLOCK, True, "bloque"),
    "debloquer": (Kind.BLOCK, False, "debloque"),
    "administrateur": (Kind.ADMINISTRATOR, True, "admin"),
    "retirer-administrateur": (Kind.ADMINISTRATOR, False, "admin-retire"),
}


def _page(
    request: Request,
    runtime: RuntimeDep,
    record_id: str,
    *,
    query: str = "",
    results: list[people.Card] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    language = i18n.negotiate(request)
    with runtime.read() as work:
        space = common.open_space(work, request, record_id)
        accesses = history_view.history(
            work,
            actor=space.actor,
            record_id=record_id,
            language=language,
            actor_types=list(history_view.PROFESSIONAL_TYPES),
            limit=ACCESS_WINDOW,
        )
        last_access: dict[str, Any] = {}
        for line in accesses.lines:
            if line.professional and line.professional not in last_access:
                last_access[line.professional] = line
        found = consent_overview.overview(work, actor=space.actor, patient_id=record_id, extra_idnats=set(last_access))
    return common.page(
        request,
        runtime,
        "patient/professionals.html",
        space,
        {
            "overview": found,
            "last_access": last_access,
            "query": query,
            "results": results,
            "errors": errors or {},
            "Kind": Kind,
        },
        section="professionnels",
        status=status,
    )


@router.get("/{record_id}/professionnels")
def professionals(request: Request, runtime: RuntimeDep, record_id: str) -> Response:
    return _page(request, runtime, record_id)


@router.post("/{record_id}/professionnels/recherche")
def search(
    request: Request,
    runtime: RuntimeDep,
    record_id: str,
    recherche: FormStr = "",
    csrf_token: Annotated[str, Form(alias="csrf")] = "",
) -> Response:
    common.check_form(request, csrf_token)
    _ = web.gettext(request)
    text = " ".join(recherche.split())[:100]
    if len(text) < 2:
        return _page(
            request,
            runtime,
            record_id,
            query=text,
            errors={"recherche": _("Saisissez au moins deux lettres du nom, ou le numéro RPPS.")},
            status=422,
        )
    with runtime.read() as work:
        common.open_space(work, request, record_id)
        results = people.search_professionals(work, text=text)
    return _page(request, runtime, record_id, query=text, results=results)


@router.post("/{record_id}/professionnels/decision")
def decision(
    request: Request,
    runtime: RuntimeDep,
    record_id: str,
    action: FormStr = "",
    professionnel: FormStr = "",
    csrf_token: Annotated[str, Form(alias="csrf")] = "",
) -> Response:
    common.check_form(request, csrf_token)
    if action not in ACTIONS:
        raise common.unknown_action(request)
    kind, add, ok = ACTIONS[action]
    idnat = professionnel.strip()[:40]
    try:
        with runtime.work() as work:
            space = common.open_space(work, request, record_id)
            common.require_active(request, space)
            if add:
                consent_overview.decide(work, actor=space.actor, patient_id=record_id, kind=kind, idnat=idnat)
            else:
                consent_overview.withdraw(work, actor=space.actor, patient_id=record_id, kind=kind, idnat=idnat)
    except Invalid as exc:
        if not any(problem.expression == "professional" for problem in exc.problems):
            raise
        # Who: a professional the directory does not know (a forged or outdated form).
        _ = web.gettext(request)
        return _page(
            request,
            runtime,
            record_id,
            errors={
                "recherche": _(
                    "Ce professionnel n'est pas dans l'annuaire : cherchez-le par son nom ou son numéro RPPS."
                )
            },
            status=422,
        )
    return common.redirect(f"{common.PREFIX}/dossiers/{record_id}/professionnels", ok)


@router.post("/{record_id}/professionnels/urgence")
def emergency(
    request: Request,
    runtime: RuntimeDep,
    record_id: str,
    regulation: FormStr = "",
    bris_de_glace: FormStr = "",
    masques: FormStr = "",
    csrf_token: Annotated[str, Form(alias="csrf")] = "",
) -> Response:
    common.check_form(request, csrf_token)
    with runtime.work() as work:
        space = common.open_space(work, request, record_id)
        common.require_active(request, space)
        for kind, value in (
            (Kind.EMERGENCY_REGULATION, regulation == "oui"),
            (Kind.EMERGENCY_BREAK_GLASS, bris_de_glace == "oui"),
            (Kind.EMERGENCY_MASKED, masques == "oui"),
        ):
            consent_overview.set_preference(work, actor=space.actor, patient_id=record_id, kind=kind, value=value)
    return common.redirect(f"{common.PREFIX}/dossiers/{record_id}/professionnels", "urgence")
