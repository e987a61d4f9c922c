"""Who is looking at a portal page: the claims of the patient's session or the professional's token.

Routes resolve the claims into an ``Actor`` inside their unit of work (``authenticate``), exactly as
the FHIR API does; the policy then decides everything. When nobody is signed in, the page sends the
browser to the right sign-in page (``LoginRequired``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import Request

from carnet.auth import sessions, tokens
from carnet.config import Settings
from carnet.deps import PRO_TOKEN_COOKIE
from carnet.errors import Unauthenticated

PATIENT_LOGIN = "/patient/connexion"
PRO_LOGIN = "/pro/connexion"


class LoginRequired(Exception):
    """Nobody (or nobody valid) is signed in: go to ``login``, then come back to ``back``."""

    def __init__(self, login: str, back: str) -> None:
        super().__init__(login)
        self.login = login
        self.back = back

    @property
    def url(self) -> str:
        return f"{self.login}?next={quote(self.back, safe='/')}"


def _back(request: Request) -> str:
    return request.url.path if request.method == "GET" else request.url.path.rsplit("/", 1)[0] or "/"


def patient_claims(request: Request) -> dict[str, Any]:
    """The patient's (or legal representative's) session, validated when the route resolves it."""
    token = sessions.cookie_token(request)
    if token is None:
        raise LoginRequired(PATIENT_LOGIN, _back(request))
    return {"sub": f"{sessions.SUBJECT_PREFIX}{token}"}


def pro_claims(request: Request, settings: Settings) -> dict[str, Any]:
    """The professional's portal token (set at sign-in with a card or through the identity provider)."""
    cookie = request.cookies.get(PRO_TOKEN_COOKIE, "").strip()
    if not cookie:
        raise LoginRequired(PRO_LOGIN, _back(request))
    try:
        return tokens.verify(settings, cookie)
    except Unauthenticated as exc:
        raise LoginRequired(PRO_LOGIN, _back(request)) from exc


def safe_next(value: str | None, default: str) -> str:
    """A local path to return to after signing in (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or len(value) > 300:
        return default
    return value
