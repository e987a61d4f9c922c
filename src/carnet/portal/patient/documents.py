"""The documents of a record: list by category with search and filters, one document, its content,
upload, masking, deletion.

* ``GET /patient/dossiers/<id>/documents`` (all) and ``POST`` (the filters: a text matched against the
  type, title and author, dates, category, author kind, page — sent in the body so that nothing medical
  reaches an address; ``documents.patient_space.find_documents``);
* ``GET …/documents/<doc>``: type, date, author, confidentiality, the content (PDF in a frame, CDA
  rendered to safe HTML by ``documents.render``, images inline, text), actions;
* ``GET …/documents/<doc>/contenu`` (inline, framed by the portal only) and ``…/telecharger``;
* ``POST …/documents/<doc>/masquage`` (mask / unmask), ``GET/POST …/documents/<doc>/suppression``;
* ``GET/POST …/documents/ajout`` (upload); ``POST …/documents/confidentialite`` (mask all, default).

The search and the masking answer an htmx request (``HX-Request``) with the fragment of the page they
change (``common.fragment``), and any other request with the whole page (after a 303 for the masking).
Each action is a document or consent service call (``documents.overview``, ``documents.patient_space``,
``documents.service``, ``consents.overview``); the policy decides.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from starlette.responses import Response

from carnet.consents import overview as consent_overview
from carnet.consents.service import Kind
from carnet.deps import RuntimeDep
from carnet.documents import categories, overview, patient_space
from carnet.documents import service as documents
from carnet.documents.categories import Category
from carnet.documents.render import cda_to_html
from carnet.errors import Invalid, NotFound, TooLarge
from carnet.portal import web
from carnet.portal.content import cda_labels, content_policy
from carnet.portal.patient import common

router = APIRouter(prefix=f"{common.PREFIX}/dossiers", include_in_schema=False)
PAGE_SIZE = 20
FormStr = Annotated[str, Form()]
TEXT_LIMIT = 200_000  # characters of a plain-text document shown in the page


def category_labels(_: Any) -> dict[Category, str]:
    """The nine Mon espace santé categories, in the reader's language."""
    return {
        Category.SYNTHESE: _("Ma santé en résumé"),
        Category.ORD_SOIN: _("Ordonnances et soins"),
        Category.RADIO_SC: _("Radio, écho, scanner, IRM"),
        Category.BIOLOGIE: _("Résultats de biologie"),
        Category.CPT_REND: _("Comptes rendus"),
        Category.DEPISTAG: _("Prévention et dépistages"),
        Category.CERT_MED: _("Certificats"),
        Category.DOC_ADM: _("Pièces administratives"),
        Category.AUTR_DOC: _("Autres"),
    }


def _filters_from(values: dict[str, str], _: Any) -> tuple[overview.Filters, dict[str, str]]:
    errors: dict[str, str] = {}
    filters = overview.Filters(text=values.get("texte", "")[:100])
    try:
        filters.start = common.parse_date(values.get("du"))
    except ValueError:
        errors["du"] = _("Indiquez une date valide.")
    try:
        filters.end = common.parse_date(values.get("au"))
    except ValueError:
        errors["au"] = _("Indiquez une date valide.")
    if filters.start and filters.end and filters.end < filters.start:
        errors["au"] = _("La date de fin doit suivre la date de début.")
    chosen = values.get("categorie") or ""
    filters.category = None if chosen == "tous" else categories.parse(chosen or values.get("categorie_courante"))
    author = values.get("auteur") or ""
    filters.author_kind = author if author in overview.AUTHOR_KINDS else None
    try:
        filters.page = max(1, min(int(values.get("page") or 1), 10_000))
    except ValueError:
        filters.page = 1
    return filters, errors


def _listing(request: Request, runtime: RuntimeDep, record_id: str, values: dict[str, str]) -> Response:
    _ = web.gettext(request)
    filters, errors = _filters_from(values, _)
    with runtime.read() as work:
        space = common.open_space(work, request, record_id)
        if errors:
            filters = overview.Filters(category=filters.category)
        listing = patient_space.find_documents(
            work, actor=space.actor, patient_id=record_id, filters=filters, page_size=PAGE_SIZE
        )
        default_masked = consent_overview.overview(
            work, actor=space.actor, patient_id=record_id
        ).preferences.default_masked
    context = {
        "listing": listing,
        "filters": {
            "texte": filters.text,
            "du": values.get("du", "")[:10],
            "au": values.get("au", "")[:10],
            "categorie": filters.category.value if filters.category else "",
            "auteur": filters.author_kind or "",
        },
        "errors": errors,
        "categories": category_labels(_),
        "current_category": filters.category,
        "default_masked": default_masked,
    }
    status = 422 if errors else 200
    if common.is_htmx(request):  # a search, a category or a page sent by htmx: the form and its results
        return common.fragment(request, runtime, "patient/_documents_search.html", space, context, status=status)
    return common.page(
        request,
        runtime,
        "patient/documents.html",
        space,
        context,
        section="documents",
        status=status,
        headers=common.VARY,
    )


@router.get("/{record_id}/documents")
def list_documents(request: Request, runtime: RuntimeDep, record_id: str) -> Response:
    return _listing(request, runtime, record_id, {})


@router.post("/{record_id}/documents")
def search_documents(
    request: Request,
    runtime: RuntimeDep,
    record_id: str,
    texte: FormStr = "",
    du: FormStr = "",
    au: FormStr = "",
    categorie: FormStr = "",
    categorie_courante: FormStr = "",
    auteur: FormStr = "",
    page: FormStr = "1",
    csrf_token: Annotated[str, Form(alias="csrf")] = "",
) -> Response:
    common.check_form(request, csrf_token)
    values = {
        "texte": texte,
        "du": du,
        "au": au,
        "categorie": categorie,
        "categorie_courante": categorie_courante,
        "auteur": auteur,
        "page": page if not categorie else "1",  # a new category starts at its first page
    }
    return _listing(request, runtime, record_id, values)


# ---------------------------------------------------------------------------------------- upload
def _upload_page(
    request: Request,
    runtime: RuntimeDep,
    space: common.Space,
    values: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
) -> Response:
    _ = web.gettext(request)
    return common.page(
        request,
        runtime,
        "patient/upload.html",
        space,
        {
            "values": values,
            "errors": errors,
            "categories": category_labels(_),
            "max_mb": runtime.settings.max_patient_upload_bytes // (1024 * 1024),
            "accept": patient_space.ACCEPT,  # exactly what the upload takes
            "today": dt.date.today().isoformat(),  # noqa: DTZ011 - the form's default, in the reader's day
        },
        section="documents",
        status=status,
    )


@router.get("/{record_id}/documents/ajout")
def upload_form(request: Request, runtime: RuntimeDep, record_id: str) -> Response:
    with runtime.read() as work:
        space = common.open_space(work, request, record_id)
    common.require_active(request, space)
    return _upload_page(request, runtime, space, {}, {})


@router.post("/{record_id}/documents/ajout")
async def upload(
    request: Request,
    runtime: RuntimeDep,
    record_id: str,
    fichier: Annotated[UploadFile | None, File()] = None,
    titre: FormStr = "",
    categorie: FormStr = "",
    date: FormStr = "",
    masquer: FormStr = "",
    csrf_token: Annotated[str, Form(alias="csrf")] = "",
) -> Response:
    common.check_form(request, csrf_token)
    limit = runtime.settings.max_patient_upload_bytes
    data = await fichier.read(limit + 1) if fichier is not None else b""
    if fichier is not None:
        await fichier.close()
    from starlette.concurrency import run_in_threadpool  # noqa: PLC0415 - the database work runs off the loop

    return await run_in_threadpool(
        _store_upload, request, runtime, record_id, data, titre, categorie, date, masquer == "1"
    )


def _store_upload(
    request: Request,
    runtime: RuntimeDep,
    record_id: str,
    data: bytes,
    title: str,
    category_value: str,
    date_value: str,
    masked: bool,
) -> Response:
    _ = web.gettext(request)
    values = {
        "titre": title[:200],
        "categorie": category_value,
        "date": date_value[:10],
        "masquer": "1" if masked else "",
    }
    errors: dict[str, str] = {}
    category = categories.parse(category_value)
    if category is None:
        errors["categorie"] = _("Choisissez une catégorie.")
    try:
        day = common.parse_date(date_value)
    except ValueError:
        day = None
    if day is None:
        errors["date"] = _("Indiquez la date du document, par exemple 28/03/2025.")
    if not title.strip():
        errors["titre"] = _("Donnez un titre au document.")
    elif len(title.strip()) > patient_space.TITLE_MAX:
        errors["titre"] = _("Le titre compte au plus 200 caractères.")
    if not data:
        errors["fichier"] = _("Choisissez un fichier.")
    with runtime.read() as work:
        space = common.open_space(work, request, record_id)
    common.require_active(request, space)
    if errors:
        return _upload_page(request, runtime, space, values, errors, status=422)
    assert category is not None
    assert day is not None
    try:
        # Its own unit of work: any refusal rolls everything back (nothing half-written).
        with runtime.work() as work:
            space = common.open_space(work, request, record_id)
            patient_space.upload(
                work,
                actor=space.actor,
                patient_id=record_id,
                upload=patient_space.Upload(title=title, category=category, date=day, data=data, masked=masked),
            )
    except TooLarge:
        errors["fichier"] = _("Le fichier dépasse la taille maximale ({mb} Mo).").format(
            mb=runtime.settings.max_patient_upload_bytes // (1024 * 1024)
        )
    except Invalid as exc:
        where = {p.expression for p in exc.problems}
        codes = {p.message for p in exc.problems}
        if "png" in codes:
            errors["fichier"] = _("Cette image PNG est illisible ou trop grande (40 millions de pixels au plus).")
        elif "file" in where:
            errors["fichier"] = _(
                "Ce fichier n'est pas accepté : choisissez un PDF, une image JPEG, PNG ou TIFF, un texte ou un RTF."
            )
        elif "date" in where:
            errors["date"] = _("La date du document ne peut pas être dans le futur.")
        elif "title" in where:
            errors["titre"] = _("Donnez un titre au document (200 caractères au plus).")
        else:
            errors["fichier"] = _("Le document n'a pas pu être ajouté : vérifiez le fichier et réessayez.")
    if errors:
        return _upload_page(request, runtime, space, values, errors, status=422)
    return common.redirect(f"{common.PREFIX}/dossiers/{record_id}/documents", "ajoute")


# ---------------------------------------------------------------------------------------- one document
@router.get("/{record_id}/documents/{doc_id}")
def show(request: Request, runtime: RuntimeDep, record_id: str, doc_id: str) -> Response:
    _ = web.gettext(request)
    rendered: str | None = None
    text: str | None = None
    render_failed = False
    with runtime.read() as work:
        space = common.open_space(work, request, record_id)
        summary = overview.read_summary(work, actor=space.actor, patient_id=record_id, doc_id=doc_id)
        if summary.is_cda or summary.is_text:
            content = documents.retrieve(work, actor=space.actor, binary_id=summary.binary_id)
            if summary.is_cda:
                try:
                    rendered = cda_to_html(content.data, labels=cda_labels(_), heading_level=2)
                except Invalid:
                    render_failed = True
            else:
                text = content.data.decode("utf-8", errors="replace")[:TEXT_LIMIT]
    return common.page(
        request,
        runtime,
        "patient/document.html",
        space,
        {
            "doc": summary,
            "rendered": rendered,
            "text": text,
            "render_failed": render_failed,
            "categories": category_labels(_),
        },
        section="documents",
    )


def _file_name(summary: overview.Summary) -> str:
    base = unicodedata.normalize("NFKD", summary.title or summary.type_display)
    base = re.sub(r"[^A-Za-z0-9]+", "-", base.encode("ascii", "ignore").decode()).strip("-")[:60] or "document"
    day = summary.date.date().isoformat() if summary.date else ""
    from carnet.records.export import extension_for  # noqa: PLC0415 - keep the portal's imports light

    return f"{day + '-' if day else ''}{base}.{extension_for(summary.content_type)}"


def _content(request: Request, runtime: RuntimeDep, record_id: str, doc_id: str, *, download: bool) -> Response:
    with runtime.read() as work:
        space = common.open_space(work, request, record_id)
        summary = overview.read_summary(work, actor=space.actor, patient_id=record_id, doc_id=doc_id)
        content = documents.retrieve(work, actor=space.actor, binary_id=summary.binary_id)
    media = content.content_type.split(";")[0].strip().lower()
    if media in ("text/xml", "application/xml", "application/xslt+xml", "application/hl7-cda+xml") and not download:
        media = "text/plain"  # never let a browser interpret a CDA (an XSL stylesheet, scripts) in place
    disposition = "attachment" if download else "inline"
    headers = {
        "Content-Disposition": f'{disposition}; filename="{_file_name(summary)}"',
        "Content-Security-Policy": content_policy(media, download=download),
        "X-Frame-Options": "SAMEORIGIN",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return Response(content.data, media_type=media, headers=headers)


@router.get("/{record_id}/documents/{doc_id}/contenu")
def inline_content(request: Request, runtime: RuntimeDep, record_id: str, doc_id: str) -> Response:
    return _content(request, runtime, record_id, doc_id, download=False)


@router.get("/{record_id}/documents/{doc_id}/telecharger")
def download(request: Request, runtime: RuntimeDep, record_id: str, doc_id: str) -> Response:
    return _content(request, runtime, record_id, doc_id, download=True)


@router.post("/{record_id}/documents/{doc_id}/masquage")
def mask(
    request: Request,
    runtime: RuntimeDep,
    record_id: str,
    doc_id: str,
    masquer: FormStr = "1",
    csrf_token: Annotated[str, Form(alias="csrf")] = "",
) -> Response:
    common.check_form(request, csrf_token)
    masked = masquer == "1"
    with runtime.work() as work:
        space = common.open_space(work, request, record_id)
        overview.read_summary(work, actor=space.actor, patient_id=record_id, doc_id=doc_id)
        common.require_active(request, space)
        patient_space.set_masked(work, actor=space.actor, doc_id=doc_id, masked=masked)
    done = "masque" if masked else "demasque"
    if common.is_htmx(request):  # the document's facts and actions, as they now are
        _ = web.gettext(request)
        with runtime.read() as work:
            space = common.open_space(work, request, record_id)
            summary = overview.read_summary(work, actor=space.actor, patient_id=record_id, doc_id=doc_id)
        context = {"doc": summary, "categories": category_labels(_)}
        return common.fragment(request, runtime, "patient/_document_meta.html", space, context, notice=done)
    return common.redirect(f"{common.PREFIX}/dossiers/{record_id}/documents/{doc_id}", done)


@router.get("/{record_id}/documents/{doc_id}/suppression")
def delete_form(request: Request, runtime: RuntimeDep, record_id: str, doc_id: str) -> Response:
    _ = web.gettext(request)
    with runtime.read() as work:
        space = common.open_space(work, request, record_id)
        summary = overview.read_summary(work, actor=space.actor, patient_id=record_id, doc_id=doc_id)
    if not summary.can_delete:
        raise NotFound()
    return common.page(
        request,
        runtime,
        "patient/document_delete.html",
        space,
        {"doc": summary, "categories": category_labels(_)},
        section="documents",
    )


@router.post("/{record_id}/documents/{doc_id}/suppression")
def delete(
    request: Request,
    runtime: RuntimeDep,
    record_id: str,
    doc_id: str,
    csrf_token: Annotated[str, Form(alias="csrf")] = "",
) -> Response:
    common.check_form(request, csrf_token)
    with runtime.work() as work:
        space = common.open_space(work, request, record_id)
        overview.read_summary(work, actor=space.actor, patient_id=record_id, doc_id=doc_id)
        common.require_active(request, space)
        documents.delete_document(work, actor=space.actor, doc_id=doc_id)
    return common.redirect(f"{common.PREFIX}/dossiers/{record_id}/documents", "supprime")


# ---------------------------------------------------------------------------------------- confidentiality
@router.post("/{record_id}/documents/confidentialite")
def confidentiality(
    request: Request,
    runtime: RuntimeDep,
    record_id: str,
    action: FormStr = "",
    csrf_token: Annotated[str, Form(alias="csrf")] = "",
) -> Response:
    common.check_form(request, csrf_token)
    if action not in ("tout-masquer", "tout-demasquer", "defaut-masque", "defaut-visible"):
        raise common.unknown_action(request)
    with runtime.work() as work:
        space = common.open_space(work, request, record_id)
        common.require_active(request, space)
        if action in ("tout-masquer", "tout-demasquer"):
            patient_space.mask_all(work, actor=space.actor, patient_id=record_id, masked=action == "tout-masquer")
            ok = "tout-masque" if action == "tout-masquer" else "tout-demasque"
        elif action in ("defaut-masque", "defaut-visible"):
            consent_overview.set_preference(
                work,
                actor=space.actor,
                patient_id=record_id,
                kind=Kind.DEFAULT_CONFIDENTIALITY,
                value=action == "defaut-masque",
            )
            ok = "defaut"
    return common.redirect(f"{common.PREFIX}/dossiers/{record_id}/documents", ok)
