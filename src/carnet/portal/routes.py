"""Pages shared by both portals: the landing page, the language switch, errors."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import HTMLResponse, Response

from carnet.config import Settings
from carnet.deps import RuntimeDep
from carnet.errors import CarnetError, Forbidden, NotFound, Unauthenticated
from carnet.fhir.outcomes import status_of
from carnet.portal import csrf, i18n, web
from carnet.portal.deps import PATIENT_LOGIN, PRO_LOGIN, LoginRequired, safe_next

router = APIRouter(include_in_schema=False)

PORTAL_PREFIXES = ("/patient", "/pro", "/langue", "/a-propos")


def is_portal_path(path: str) -> bool:
    return path == "/" or any(path == p or path.startswith(p + "/") for p in PORTAL_PREFIXES)


@router.get("/")
def landing(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    return web.render(request, runtime.settings, "landing.html")


@router.get("/a-propos")
def about(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    return web.render(request, runtime.settings, "about.html")


@router.post("/langue")
def choose_language(
    request: Request,
    runtime: RuntimeDep,
    lang: Annotated[str, Form()],
    csrf_token: Annotated[str, Form(alias="csrf")] = "",
    next_page: Annotated[str, Form(alias="next")] = "/",
) -> Response:
    csrf.check(request, csrf_token)
    response = web.redirect(safe_next(next_page, "/"))
    if lang in i18n.LANGUAGES:
        response.set_cookie(
            i18n.COOKIE, lang, max_age=365 * 24 * 3600, samesite="lax", secure=runtime.settings.cookie_secure
        )
    return response


def error_page(request: Request, settings: Settings, exc: Exception) -> Response:
    """What a portal page shows instead of a FHIR OperationOutcome. To an htmx request a sign-in page is not
    a fragment: htmx is told to load it as a whole page (``HX-Redirect``); an error page replaces the body
    (the ``responseHandling`` of ``base.html``)."""
    if isinstance(exc, LoginRequired):
        return _to_login(request, exc.url)
    _ = web.gettext(request)
    if isinstance(exc, Unauthenticated):
        login = PRO_LOGIN if request.url.path.startswith("/pro") else PATIENT_LOGIN
        return _to_login(request, LoginRequired(login, request.url.path).url)
    back = "/pro" if request.url.path.startswith("/pro") else "/patient"
    if isinstance(exc, NotFound):
        title, status = _("Page introuvable"), 404
        message = _("Ce que vous cherchez n'existe pas ou ne vous est pas accessible.")
    elif isinstance(exc, Forbidden):
        title, message, status = _("Action refusée"), exc.message, 403
    elif isinstance(exc, CarnetError):
        title, message, status = _("Demande incorrecte"), exc.message, status_of(exc)
    else:
        title, message, status = _("Erreur"), _("Une erreur est survenue. Réessayez plus tard."), 500
    return web.render(
        request, settings, "error.html", {"title": title, "message": message, "back": back}, status=status
    )


def _to_login(request: Request, url: str) -> Response:
    if request.headers.get("hx-request") == "true":
        return Response(status_code=200, headers={"HX-Redirect": url, "Cache-Control": "no-store"})
    return web.redirect(url)
