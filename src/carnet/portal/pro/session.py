"""The signed-in professional of a portal request: their token, its renewal, the pages' common context.

Every page resolves the token's claims into an ``Actor`` inside its unit of work, with the same
``authenticate.actor_for`` as the FHIR API; the access policy then decides everything. A token past
half its life is replaced on the response (the idle timeout restarts); see ``carnet.auth.pro_portal``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.responses import HTMLResponse, Response

from carnet.auth import pro_portal
from carnet.auth.actor import Actor, ActorKind
from carnet.auth.authenticate import actor_for
from carnet.config import Settings
from carnet.deps import PRO_TOKEN_COOKIE
from carnet.portal import web
from carnet.portal.deps import PRO_LOGIN, LoginRequired, pro_claims
from carnet.portal.pro import labels, views
from carnet.runtime import Work

HOME = "/pro"


def set_token(response: Response, settings: Settings, token: str) -> None:
    """The portal cookie: HttpOnly, SameSite=Strict (a page of another site cannot make the browser open a
    record with it), Secure on https, as long-lived as the token."""
    response.set_cookie(
        PRO_TOKEN_COOKIE,
        token,
        max_age=settings.access_token_ttl_seconds,
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="strict",
    )


def clear_token(response: Response, settings: Settings) -> None:
    response.delete_cookie(PRO_TOKEN_COOKIE, path="/", secure=settings.cookie_secure, httponly=True, samesite="strict")


@dataclass(slots=True)
class ProSession:
    """The claims of the professional's portal token, and its replacement when it is due."""

    claims: dict[str, Any]
    renewed: str | None = None

    @classmethod
    def of(cls, request: Request, settings: Settings) -> ProSession:
        """The request's session; ``LoginRequired`` (→ the sign-in page) without a valid token."""
        claims = pro_claims(request, settings)
        return cls(claims, pro_portal.renewal(settings, claims))

    def actor(self, work: Work) -> Actor:
        """The professional, resolved as the API resolves a token (a patient's token is no entry here)."""
        actor = actor_for(work, self.claims)
        if actor.kind is not ActorKind.PROFESSIONAL or actor.professional is None:
            raise LoginRequired(PRO_LOGIN, HOME)
        return actor

    def me(self, work: Work) -> views.Me:
        return views.me(work, self.actor(work), self.claims)

    def keep(self, response: Response, settings: Settings) -> Response:
        if self.renewed is not None:
            set_token(response, settings, self.renewed)
        return response


def page(
    request: Request,
    settings: Settings,
    session: ProSession | None,
    template: str,
    context: dict[str, Any],
    *,
    status: int = 200,
) -> HTMLResponse:
    """A professional portal page, with the labels and the done-message of the previous action."""
    done = labels.DONE.get(request.query_params.get("fait", ""))
    values: dict[str, Any] = {"labels": labels, "notice": web.gettext(request)(done) if done else None, **context}
    response = web.render(request, settings, template, values, status=status)
    if session is not None:
        session.keep(response, settings)
    return response


def redirect(settings: Settings, session: ProSession | None, url: str) -> Response:
    response = web.redirect(url)
    if session is not None:
        session.keep(response, settings)
    return response
