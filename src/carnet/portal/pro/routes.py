"""The professional portal's pages (``/pro``): thin routes over the services the FHIR API uses.

Each route checks the form's CSRF token, resolves the professional in its unit of work
(``ProSession.actor`` → ``authenticate.actor_for``), calls the services — which ask the access policy
and trace everything — and renders a page or redirects (303) after a change. No rule lives here: what a
professional sees is what the policy lets the services return. No INS and no medical data in URLs: a
patient is looked for with a POST; pages are addressed by record and document ids.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import HTMLResponse, Response

from carnet.access import Action
from carnet.access import emergency as emergency_access
from carnet.auth import pro_portal
from carnet.config import Environment, Settings
from carnet.consents import service as consents
from carnet.deps import RuntimeDep
from carnet.documents import search as document_search
from carnet.documents import service as documents
from carnet.documents.render import cda_to_html
from carnet.documents.schemas import DocumentQuery
from carnet.errors import CarnetError, Forbidden, Invalid, NotFound, TooLarge
from carnet.portal import csrf, web
from carnet.portal.content import CONTENT_CSP, PDF_CSP, cda_labels
from carnet.portal.deps import LoginRequired, safe_next
from carnet.portal.pro import forms, views
from carnet.portal.pro.session import HOME, ProSession, clear_token, page, redirect, set_token
from carnet.records import service as records
from carnet.runtime import Runtime

T = TypeVar("T")

router = APIRouter(prefix="/pro", include_in_schema=False)

CsrfField = Annotated[str, Form(alias="csrf")]
Field = Annotated[str, Form()]
PAGE_SIZE = 50
# What a document's page offers, when the policy allows it.
DOCUMENT_ACTIONS = (Action.DOCUMENT_REPLACE, Action.DOCUMENT_DELETE, Action.DOCUMENT_REVEAL)
# Shown inline (PDF in a frame, images); anything else is downloaded.
INLINE_MEDIA = {"application/pdf": "pdf", "image/jpeg": "jpg", "image/png": "png"}
EXTENSIONS = {**INLINE_MEDIA, "text/xml": "xml", "image/tiff": "tif", "text/plain": "txt", "text/rtf": "rtf"}
# The content of a document in a frame: only this portal may frame it, nothing loads and nothing runs;
# a PDF shown inline is not sandboxed (``portal.content``).
CONTENT_HEADERS = {
    "Content-Security-Policy": CONTENT_CSP,
    "X-Frame-Options": "SAMEORIGIN",
    "Cache-Control": "no-store",
}
PDF_HEADERS = {**CONTENT_HEADERS, "Content-Security-Policy": PDF_CSP}
DOWNLOAD_HEADERS = {"Content-Security-Policy": CONTENT_CSP, "Cache-Control": "no-store"}
# Multipart overhead allowed above the document size limit before the body is even parsed.
FORM_OVERHEAD = 256 * 1024


def _record_id(value: str) -> str:
    """A record id from a form or a path (a UUID), or NotFound."""
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise NotFound() from exc


def two_years_before(moment: dt.datetime) -> dt.datetime:
    """The start of the window ANS recommends for a first opening of a record (the last two years)."""
    try:
        return moment.replace(year=moment.year - 2)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year - 2, day=28)


# ------------------------------------------------------------------------------------ signing in and out
def _login_page(request: Request, settings: Settings, next_page: str, problem: str | None, status: int) -> HTMLResponse:
    oidc = None
    if settings.oidc_issuer and settings.oidc_client_id:
        oidc = f"/auth/oidc/login?return_to={quote(next_page, safe='/')}"
    demo = _demo_professionals() if settings.env is Environment.DEVELOPMENT else []
    context = {"next": next_page, "oidc_url": oidc, "problem": problem, "demo_personas": demo}
    return page(request, settings, None, "pro/login.html", context, status=status)


def _record_mode(me: views.Me, record_id: str) -> str:
    """The banner's access mode on a record: the open emergency access's mode, if any (it may coexist with
    an authorization, which does not open masked documents), else normal."""
    emergency = me.emergency_on(record_id)
    return emergency.mode if emergency is not None else "normal"


def _demo_professionals() -> list[tuple[str, str]]:
    """(key, label) of the demo professionals, for the development sign-in without a card."""
    from carnet.demo.personas import PERSONAS  # noqa: PLC0415 - development only

    return [(p.key, f"{p.display} — {p.role}") for p in PERSONAS if p.kind == "professional" and p.idnat]


@router.post("/connexion/demonstration")
def login_as_demo_persona(
    request: Request,
    runtime: RuntimeDep,
    csrf_token: CsrfField = "",
    persona: Annotated[str, Form()] = "",
    next_page: Annotated[str, Form(alias="next")] = "",
) -> Response:
    """Development only (``make run``, plain HTTP, no card reader): sign in as a demo professional. The
    route does not exist in any other environment."""
    settings = runtime.settings
    if settings.env is not Environment.DEVELOPMENT:
        raise NotFound()
    csrf.check(request, csrf_token)
    from carnet.demo.personas import BY_KEY  # noqa: PLC0415 - development only

    chosen = BY_KEY.get(persona)
    target = safe_next(next_page, HOME)
    if chosen is None or chosen.kind != "professional" or not chosen.idnat:
        _ = web.gettext(request)
        return _login_page(request, settings, target, _("Choisissez un professionnel de démonstration."), 422)
    with runtime.read() as work:
        actor = pro_portal.sign_in(work, {"sub": f"pro:{chosen.idnat}"}, method=pro_portal.DEMO)
    if actor is None:
        _ = web.gettext(request)
        return _login_page(request, settings, target, _("Chargez d'abord les données de démonstration."), 422)
    response = web.redirect(target)
    set_token(response, settings, pro_portal.issue(settings, actor, auth=pro_portal.DEMO))
    return response


@router.get("/connexion")
def login(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    next_page = safe_next(request.query_params.get("next"), HOME)
    return _login_page(request, runtime.settings, next_page, None, 200)


@router.post("/connexion/carte")
def login_with_card(
    request: Request,
    runtime: RuntimeDep,
    csrf_token: CsrfField = "",
    next_page: Annotated[str, Form(alias="next")] = "",
) -> Response:
    """Sign in with the card certificate the browser presented in the TLS handshake."""
    csrf.check(request, csrf_token)
    settings = runtime.settings
    target = safe_next(next_page, HOME)
    _ = web.gettext(request)
    check = pro_portal.check_card(request, settings)
    problems = {
        pro_portal.CardStatus.NO_CARD: _(
            "Aucune carte n'a été présentée. Insérez votre carte CPS (ou activez votre e-CPS), "
            "choisissez son certificat quand le navigateur le demande, puis réessayez."
        ),
        pro_portal.CardStatus.INVALID: _(
            "Votre carte n'a pas pu être vérifiée : certificat expiré, pas encore valide ou émis par une "
            "autorité que Carnet ne reconnaît pas."
        ),
        pro_portal.CardStatus.ORGANIZATION: _(
            "Ce certificat est celui d'une structure, pas d'une personne : connectez-vous avec votre propre carte."
        ),
    }
    if check.status is not pro_portal.CardStatus.OK or check.claims is None:
        return _login_page(request, settings, target, problems[check.status], 401)
    with runtime.read() as work:
        actor = pro_portal.sign_in(work, check.claims)
    if actor is None:
        unknown = _(
            "Votre carte est valide, mais vous n'avez pas d'activité en cours dans l'annuaire des "
            "professionnels de Carnet. Contactez l'administrateur de Carnet."
        )
        return _login_page(request, settings, target, unknown, 401)
    response = web.redirect(target)
    set_token(response, settings, pro_portal.issue(settings, actor))
    return response


@router.post("/deconnexion")
def logout(request: Request, runtime: RuntimeDep, csrf_token: CsrfField = "") -> Response:
    csrf.check(request, csrf_token)
    try:
        session = ProSession.of(request, runtime.settings)
    except LoginRequired:
        session = None
    if session is not None:
        with runtime.read() as work:
            pro_portal.sign_out(work, session.actor(work))
    response = web.redirect("/pro/connexion?fait=deconnexion")
    clear_token(response, runtime.settings)
    return response


# ------------------------------------------------------------------------------------ finding a patient
def _search_page(
    request: Request, runtime: Runtime, session: ProSession, form: forms.InsSearch, result: dict[str, Any] | None
) -> HTMLResponse:
    settings = runtime.settings
    with runtime.read() as work:
        me = session.me(work)
        if result is not None and not form.errors:
            assert form.parsed is not None and form.birth_date is not None
            view = records.lookup_by_ins(work, actor=me.actor, ins=form.parsed)
            patient = views.patient_view(view.body) if view is not None else None
            result["patient"] = patient
            if patient is not None:
                result["traits"] = views.check_traits(
                    patient, family=form.family, given=form.given, birth_date=form.birth_date
                )
    context = {
        "me": me,
        "form": form,
        "systems": forms.ins_systems(production=settings.is_production, _=web.gettext(request)),
        "result": result,
    }
    return page(request, settings, session, "pro/home.html", context, status=422 if form.errors else 200)


@router.get("")
def home(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    session = ProSession.of(request, runtime.settings)
    return _search_page(request, runtime, session, forms.InsSearch(), None)


@router.post("/patients")
def find_patient(
    request: Request,
    runtime: RuntimeDep,
    csrf_token: CsrfField = "",
    ins: Field = "",
    system: Field = "",
    family: Field = "",
    given: Field = "",
    birth_date: Field = "",
) -> HTMLResponse:
    """Look a record up by INS (a POST: the INS never appears in a URL) and check the identity traits."""
    csrf.check(request, csrf_token)
    session = ProSession.of(request, runtime.settings)
    fields = {"ins": ins, "system": system, "family": family, "given": given, "birth_date": birth_date}
    form = forms.read_ins_search(fields, production=runtime.settings.is_production, _=web.gettext(request))
    return _search_page(request, runtime, session, form, {"patient": None, "traits": None})


# ------------------------------------------------------------------------------------ the record
@router.get("/dossiers/{record_id}")
def record(record_id: str, request: Request, runtime: RuntimeDep) -> HTMLResponse:
    """The record: the patient's identity, this professional's access, the documents the policy lets them
    read — newest first, grouped by class, the last two years unless widened."""
    session = ProSession.of(request, runtime.settings)
    record_id = _record_id(record_id)
    all_dates = request.query_params.get("periode") == "tout"
    try:
        number = max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        number = 1
    with runtime.read() as work:
        me = session.me(work)
        patient = views.patient_view(records.read_patient(work, actor=me.actor, patient_id=record_id).body)
        since = None if all_dates else two_years_before(work.now)
        found = document_search.search_documents(
            work,
            actor=me.actor,
            query=DocumentQuery(
                patient_id=record_id,
                statuses=["current"],
                service_since=since,
                count=PAGE_SIZE,
                offset=(number - 1) * PAGE_SIZE,
            ),
        )
    documents_found = [views.document_view(body) for body in found.matches]
    context = {
        "me": me,
        "patient": patient,
        "groups": views.by_class(documents_found),
        "total": found.total,
        "since": since,
        "all_dates": all_dates,
        "number": number,
        "more": found.total > number * PAGE_SIZE,
        "record_mode": _record_mode(me, record_id),
    }
    return page(request, runtime.settings, session, "pro/record.html", context)


# ------------------------------------------------------------------------------------ one document
def _document_page(
    request: Request,
    runtime: Runtime,
    session: ProSession,
    doc_id: str,
    *,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    with runtime.read() as work:
        me = session.me(work)
        doc = views.document_view(documents.read_document(work, actor=me.actor, doc_id=doc_id))
        allowed = documents.permitted(work, actor=me.actor, doc_id=doc_id, actions=DOCUMENT_ACTIONS)
        cda_html = None
        render_failed = False
        if doc.media == "cda":
            data = documents.retrieve_document(work, actor=me.actor, doc_id=doc_id).data
            try:
                # Safe HTML (``documents.render``), headings in the reader's language, under the page's h2.
                cda_html = cda_to_html(data, labels=cda_labels(web.gettext(request)), heading_level=3)
            except Invalid:
                render_failed = True  # the page says so and offers the download
    # An emergency access on the document's record shows in the banner's access mode, as on the record page.
    context = {
        "me": me,
        "doc": doc,
        "may_replace": Action.DOCUMENT_REPLACE in allowed and doc.status == "current",
        "may_delete": Action.DOCUMENT_DELETE in allowed,
        "may_reveal": Action.DOCUMENT_REVEAL in allowed and "INVISIBLE_PATIENT" in doc.flags,
        "cda_html": cda_html,
        "render_failed": render_failed,
        "errors": errors or {},
        "record_mode": _record_mode(me, doc.record_id),
    }
    return page(request, runtime.settings, session, "pro/document.html", context, status=status)


@router.get("/documents/{doc_id}")
def document(doc_id: str, request: Request, runtime: RuntimeDep) -> HTMLResponse:
    session = ProSession.of(request, runtime.settings)
    return _document_page(request, runtime, session, doc_id)


def _content(request: Request, runtime: Runtime, doc_id: str, *, download: bool) -> Response:
    session = ProSession.of(request, runtime.settings)
    with runtime.read() as work:
        actor = session.actor(work)
        content = documents.retrieve_document(work, actor=actor, doc_id=doc_id)
    media = content.content_type.split(";", 1)[0].strip().lower()
    name = f"carnet-{doc_id[:8]}.{EXTENSIONS.get(media, 'bin')}"
    if download or media not in INLINE_MEDIA:
        headers = {**DOWNLOAD_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'}
    else:
        inline = PDF_HEADERS if media == "application/pdf" else CONTENT_HEADERS
        headers = {**inline, "Content-Disposition": f'inline; filename="{name}"'}
    return session.keep(Response(content.data, media_type=media, headers=headers), runtime.settings)


@router.get("/documents/{doc_id}/contenu")
def document_content(doc_id: str, request: Request, runtime: RuntimeDep) -> Response:
    """The document's bytes, for the viewer's frame or image (PDF, JPEG, PNG); others are downloaded."""
    return _content(request, runtime, doc_id, download=False)


@router.get("/documents/{doc_id}/telecharger")
def document_download(doc_id: str, request: Request, runtime: RuntimeDep) -> Response:
    return _content(request, runtime, doc_id, download=True)


@router.post("/documents/{doc_id}/supprimer")
def delete_document(
    doc_id: str, request: Request, runtime: RuntimeDep, csrf_token: CsrfField = "", dossier: Field = ""
) -> Response:
    """Delete one's own document (logically: it stays for the legal retention, visible to nobody)."""
    csrf.check(request, csrf_token)
    session = ProSession.of(request, runtime.settings)
    back = _record_id(dossier)
    _ = web.gettext(request)
    try:
        with runtime.work() as work:
            documents.delete_document(work, actor=session.actor(work), doc_id=doc_id)
    except Forbidden as exc:
        raise Forbidden(_("Seul l'auteur d'un document peut le supprimer.")) from exc
    return redirect(runtime.settings, session, f"/pro/dossiers/{back}?fait=suppression")


@router.post("/documents/{doc_id}/annonce")
def announce_document(
    doc_id: str, request: Request, runtime: RuntimeDep, csrf_token: CsrfField = "", annonce: Field = ""
) -> Response:
    """After the announcement consultation, the author makes the document visible to the patient."""
    csrf.check(request, csrf_token)
    session = ProSession.of(request, runtime.settings)
    _ = web.gettext(request)
    if annonce != "1":
        errors = {"annonce": _("Confirmez que la consultation d'annonce a eu lieu.")}
        return _document_page(request, runtime, session, doc_id, errors=errors, status=422)
    try:
        with runtime.work() as work:
            documents.set_flag(work, actor=session.actor(work), doc_id=doc_id, flag="INVISIBLE_PATIENT", on=False)
    except Forbidden as exc:
        raise Forbidden(_("Seul l'auteur d'un document le rend visible au patient.")) from exc
    return redirect(runtime.settings, session, f"/pro/documents/{doc_id}?fait=annonce")


# ------------------------------------------------------------------------------------ depositing
def _deposit_page(
    request: Request,
    runtime: Runtime,
    session: ProSession,
    record_id: str,
    form: forms.Deposit,
    *,
    status: int = 200,
) -> HTMLResponse:
    with runtime.read() as work:
        me = session.me(work)
        patient = views.patient_view(records.read_patient(work, actor=me.actor, patient_id=record_id).body)
        replaced = None
        if form.replaces:
            replaced = views.document_view(documents.read_document(work, actor=me.actor, doc_id=form.replaces))
            if replaced.record_id != record_id:
                raise NotFound()
    if not form.facility and not form.errors:
        form.facility = me.facility_type if me.facility_type in dict(forms.facility_options()) else ""
    if not form.setting and not form.errors:
        form.setting = me.practice_setting if me.practice_setting in dict(forms.setting_options()) else ""
    context = {
        "me": me,
        "patient": patient,
        "form": form,
        "replaced": replaced,
        "types": forms.type_options(),
        "facilities": forms.facility_options(),
        "settings_": forms.setting_options(),
        "record_mode": _record_mode(me, record_id),
    }
    return page(request, runtime.settings, session, "pro/deposit.html", context, status=status)


@router.get("/dossiers/{record_id}/depot")
def deposit_form(record_id: str, request: Request, runtime: RuntimeDep) -> HTMLResponse:
    session = ProSession.of(request, runtime.settings)
    form = forms.Deposit(replaces=request.query_params.get("remplace", "")[:64])
    return _deposit_page(request, runtime, session, _record_id(record_id), form)


@router.post("/dossiers/{record_id}/depot")
async def deposit(record_id: str, request: Request, runtime: RuntimeDep) -> Response:
    """Deposit a PDF or a CDA R2 document (ITI-105 simplified publish): metadata a CDA header holds are
    read from it; any refusal shows next to its field, and nothing is written."""
    settings = runtime.settings
    record_id = _record_id(record_id)
    limit = settings.max_document_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
        raise TooLarge(web.gettext(request)("Le fichier est trop volumineux."))
    async with request.form(max_files=1, max_fields=20) as submitted:
        csrf.check(request, str(submitted.get("csrf", "")))
        upload = submitted.get("file")
        data = await upload.read(limit + 1) if isinstance(upload, UploadFile) else b""
        fields = {k: v for k, v in submitted.items() if isinstance(v, str)}
        flags = [v for v in submitted.getlist("flags") if isinstance(v, str)]
    session = ProSession.of(request, settings)
    _ = web.gettext(request)
    form = forms.read_deposit(fields, flags, data, _=_)
    if len(data) > limit:
        form.errors["file"] = forms.deposit_errors(TooLarge("too large"), max_bytes=limit, _=_)["file"]
    if form.errors:
        return await _in_thread(_deposit_page, request, runtime, session, record_id, form, status=422)

    def publish() -> str | dict[str, str]:
        try:
            with runtime.work() as work:
                me = session.me(work)
                professional = me.actor.professional
                assert professional is not None
                resource = forms.deposit_resource(
                    form, record_id=record_id, professional=professional, organization=me.organization
                )
                return documents.publish(work, actor=me.actor, resource=resource, data=form.data).id
        except NotFound:
            raise
        except CarnetError as exc:
            return forms.deposit_errors(exc, max_bytes=limit, _=_, replacing=bool(form.replaces))

    outcome = await _in_thread(publish)
    if isinstance(outcome, dict):
        form.errors = outcome
        return await _in_thread(_deposit_page, request, runtime, session, record_id, form, status=422)
    done = "remplacement" if form.replaces else "depot"
    return redirect(settings, session, f"/pro/documents/{outcome}?fait={done}")


async def _in_thread(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Database work off the event loop (the units of work are synchronous)."""
    return await run_in_threadpool(function, *args, **kwargs)


# ------------------------------------------------------------------------------------ declarations
def _declarations_page(
    request: Request,
    runtime: Runtime,
    session: ProSession,
    record_id: str,
    *,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    with runtime.read() as work:
        me = session.me(work)
        patient = views.patient_view(records.read_patient(work, actor=me.actor, patient_id=record_id).body)
    context = {
        "me": me,
        "patient": patient,
        "errors": errors or {},
        "record_mode": _record_mode(me, record_id),
    }
    return page(request, runtime.settings, session, "pro/declarations.html", context, status=status)


@router.get("/dossiers/{record_id}/declarations")
def declarations(record_id: str, request: Request, runtime: RuntimeDep) -> HTMLResponse:
    session = ProSession.of(request, runtime.settings)
    return _declarations_page(request, runtime, session, _record_id(record_id))


@router.post("/dossiers/{record_id}/declarations")
def declare(
    record_id: str,
    request: Request,
    runtime: RuntimeDep,
    csrf_token: CsrfField = "",
    kind: Field = "",
    attest: Field = "",
) -> Response:
    """Declare the patient's consent (care team) or becoming their médecin traitant, with their agreement."""
    csrf.check(request, csrf_token)
    session = ProSession.of(request, runtime.settings)
    record_id = _record_id(record_id)
    _ = web.gettext(request)
    choices = {consents.Kind.CARE_TEAM.value: "equipe", consents.Kind.MEDECIN_TRAITANT.value: "medecin-traitant"}
    if kind not in choices:
        return _declarations_page(
            request, runtime, session, record_id, errors={"general": _("Choisissez une déclaration.")}, status=422
        )
    if attest != "1":
        message = (
            _("Attestez avoir recueilli le consentement du patient.")
            if kind == consents.Kind.CARE_TEAM.value
            else _("Attestez que le patient accepte que vous deveniez son médecin traitant.")
        )
        return _declarations_page(request, runtime, session, record_id, errors={kind: message}, status=422)
    try:
        with runtime.work() as work:
            actor = session.actor(work)
            assert actor.professional is not None
            resource = consents.declaration(consents.Kind(kind), record_id, actor.professional.idnat)
            consents.create(work, actor=actor, resource=resource)
    except (Forbidden, Invalid) as exc:
        closed = isinstance(exc, Invalid) and "closed" in exc.message
        message = (
            _("Le dossier est fermé.") if closed else _("Vous ne pouvez pas faire cette déclaration pour ce dossier.")
        )
        # At the top of the page: the form of this declaration may not be offered to this professional.
        return _declarations_page(request, runtime, session, record_id, errors={"general": message}, status=422)
    return redirect(runtime.settings, session, f"/pro/dossiers/{record_id}?fait={choices[kind]}")


# ------------------------------------------------------------------------------------ emergency access
def _emergency_page(
    request: Request,
    runtime: Runtime,
    session: ProSession,
    record_id: str,
    form: forms.EmergencyRequest,
    *,
    status: int = 200,
) -> HTMLResponse:
    with runtime.read() as work:
        me = session.me(work)
        patient = views.patient_view(records.read_patient(work, actor=me.actor, patient_id=record_id).body)
    context = {
        "me": me,
        "patient": patient,
        "form": form,
        "minutes": runtime.settings.emergency_minutes,
        "regulator": me.practice_setting == emergency_access.REGULATION_SETTING,
        "min_reason": emergency_access.MIN_REASON,
        "record_mode": _record_mode(me, record_id),
    }
    return page(request, runtime.settings, session, "pro/emergency.html", context, status=status)


@router.get("/dossiers/{record_id}/urgence")
def emergency_form(record_id: str, request: Request, runtime: RuntimeDep) -> HTMLResponse:
    session = ProSession.of(request, runtime.settings)
    return _emergency_page(request, runtime, session, _record_id(record_id), forms.EmergencyRequest())


@router.post("/dossiers/{record_id}/urgence")
def open_emergency(
    record_id: str,
    request: Request,
    runtime: RuntimeDep,
    csrf_token: CsrfField = "",
    mode: Field = "",
    reason: Field = "",
) -> Response:
    """Break the glass (or access as the regulation centre): a mandatory reason, read-only, time-limited."""
    csrf.check(request, csrf_token)
    session = ProSession.of(request, runtime.settings)
    record_id = _record_id(record_id)
    _ = web.gettext(request)
    form = forms.read_emergency({"mode": mode, "reason": reason}, _=_)
    if not form.errors:
        try:
            with runtime.work() as work:
                emergency_access.open_access(
                    work,
                    actor=session.actor(work),
                    patient_id=record_id,
                    mode=form.emergency_mode,
                    reason=form.reason,
                )
        except Forbidden as exc:
            form.errors["general"] = forms.emergency_refusal(exc, _=_)
        except Invalid:
            form.errors["reason"] = _("Expliquez la raison de l'accès en urgence (au moins %(n)s caractères).") % {
                "n": emergency_access.MIN_REASON
            }
    if form.errors:
        return _emergency_page(request, runtime, session, record_id, form, status=422)
    return redirect(runtime.settings, session, f"/pro/dossiers/{record_id}?fait=urgence")
