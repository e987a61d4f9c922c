"""Cross-site request forgery protection for the portals' forms (double-submit token).

Every page carries a random token in an HttpOnly, SameSite=Strict cookie (``carnet_csrf``) and the
same token in each form (hidden field ``csrf``) and in the ``X-Carnet-Form`` header htmx adds. A
state-changing request is accepted only when both are present and equal: a page of another site can
neither read the cookie nor guess the token, and SameSite=Strict keeps the cookie off its requests.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import Request
from starlette.responses import Response

from carnet.config import Settings
from carnet.errors import Forbidden

COOKIE = "carnet_csrf"
FIELD = "csrf"
HEADER = "X-Carnet-Form"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def token_for(request: Request) -> str:
    """This browser's token (a new one if it has none yet; ``remember`` sets the cookie)."""
    current = request.cookies.get(COOKIE, "")
    if len(current) == 43:
        return current
    fresh: str | None = getattr(request.state, "csrf_fresh", None)
    if fresh is None:
        fresh = secrets.token_urlsafe(32)
        request.state.csrf_fresh = fresh
    return fresh


def remember(request: Request, response: Response, settings: Settings) -> None:
    """Set the cookie when the page handed out a new token."""
    fresh: str | None = getattr(request.state, "csrf_fresh", None)
    if fresh is not None:
        response.set_cookie(COOKIE, fresh, httponly=True, samesite="strict", secure=settings.cookie_secure, path="/")


def check(request: Request, submitted: str | None) -> None:
    """Refuse a state-changing request whose form token (or header) does not match the cookie."""
    if request.method in SAFE_METHODS:
        return
    cookie = request.cookies.get(COOKIE, "")
    given = submitted or request.headers.get(HEADER, "")
    if not cookie or not given or not hmac.compare_digest(cookie.encode(), given.encode()):
        raise Forbidden("the form has expired or did not come from Carnet: reload the page and try again")
