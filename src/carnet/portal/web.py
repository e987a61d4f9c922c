"""Rendering portal pages: one Jinja2 environment, the page headers, the helpers templates use.

Pages are server-rendered and work without JavaScript; htmx (served from ``/static``) only makes some
actions smoother. The Content-Security-Policy allows nothing inline: no inline script or style, no
``eval``; scripts, styles and images come from Carnet itself.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from babel.dates import format_date, format_datetime
from fastapi import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Match

from carnet.config import Settings
from carnet.portal import csrf, i18n

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; frame-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'"
)
PAGE_HEADERS = {"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store"}
PARIS = ZoneInfo("Europe/Paris")  # dates are shown in metropolitan French time


@functools.cache
def environment() -> jinja2.Environment:
    loader = jinja2.PackageLoader("carnet.portal", "templates")
    env = jinja2.Environment(
        loader=loader,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = static_url
    return env


@functools.cache
def _static_version(name: str) -> str:
    data = resources.files("carnet.portal").joinpath("static").joinpath(name).read_bytes()
    return hashlib.sha256(data).hexdigest()[:12]


def static_url(name: str) -> str:
    """The URL of a static file, versioned by its content (so it can be cached for long)."""
    return f"/static/{name}?v={_static_version(name)}"


def _formatters(language: str) -> dict[str, Any]:
    locale = "fr_FR" if language == "fr" else "en_GB"

    def date(value: dt.date | dt.datetime | None, form: str = "medium") -> str:
        if value is None:
            return ""
        if isinstance(value, dt.datetime):
            return format_date(value.astimezone(PARIS).date(), form, locale=locale)
        return format_date(value, form, locale=locale)

    def datetime(value: dt.datetime | None, form: str = "medium") -> str:
        if value is None:
            return ""
        return format_datetime(value, form, tzinfo=PARIS, locale=locale)

    return {"fmt_date": date, "fmt_datetime": datetime}


def render(
    request: Request,
    settings: Settings,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """A page in the request's language, with its CSRF token and the portal's security headers."""
    language = i18n.negotiate(request)
    translations = i18n.gettext_for(language)
    env = environment()
    page = env.get_template(template)
    values = {
        "request": request,
        "lang": language,
        "csrf_token": csrf.token_for(request),
        "_": translations.gettext,
        "gettext": translations.gettext,
        "ngettext": translations.ngettext,
        "base_url": settings.base_url,
        "here": page_address(request),
        "notice": None,
        "problem": None,
        **_formatters(language),
        **(context or {}),
    }
    html = page.render(values)
    response = HTMLResponse(html, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})
    csrf.remember(request, response, settings)
    return response


def page_address(request: Request) -> str:
    """The address that shows this page again (where the language switch comes back to): its own, unless it
    answers a form at an address with no page of its own (``POST /pro/patients``) — then the page above."""
    path = request.url.path
    if request.method in ("GET", "HEAD"):
        return path
    scope = {"type": "http", "path": path, "method": "GET", "root_path": ""}
    routes = getattr(getattr(request.scope.get("app"), "router", None), "routes", [])
    if any(route.matches(scope)[0] is Match.FULL for route in routes):
        return path
    return path.rsplit("/", 1)[0] or "/"


def redirect(url: str, *, status: int = 303) -> Response:
    """After a form: see the result page (303, so a reload does not send the form again)."""
    if not url.startswith("/") or url.startswith("//"):
        url = "/"
    return RedirectResponse(url, status_code=status, headers={"Cache-Control": "no-store"})


def gettext(request: Request) -> Any:
    """``_`` for Python code of a route (messages computed outside templates)."""
    return i18n.gettext_for(i18n.negotiate(request)).gettext
