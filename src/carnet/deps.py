"""FastAPI dependencies: the runtime, and the caller's verified credentials.

Credentials, in order: a bearer access token (``Authorization: Bearer``), the same access token in
the ``carnet_pro_token`` cookie (set by the professionals' OpenID Connect sign-in for the portal), a
professional's client certificate (mutual TLS, or the verified certificate a trusted proxy
forwards), a patient session cookie. Each yields identity claims; the actor is resolved later,
inside the request's unit of work.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from carnet.auth import certificates, sessions, tokens
from carnet.errors import Forbidden, Unauthenticated
from carnet.runtime import Runtime

# The Carnet access token of a professional signed in through OpenID Connect, for browser use
# (HttpOnly, SameSite=Lax): see ``carnet.auth.oidc``. As with the patient session cookie, a
# state-changing request authenticated by it must carry ``X-Carnet-CSRF: 1``, which a cross-site
# form cannot send.
PRO_TOKEN_COOKIE = "carnet_pro_token"  # noqa: S105 (a cookie name, not a secret)


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def caller_claims(request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    """Identity claims of the caller, from the first credential present; 401 when there is none."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return tokens.verify(runtime.settings, token.strip())
    if header:
        raise Unauthenticated("unsupported Authorization scheme: send Authorization: Bearer <token>")
    cookie = request.cookies.get(PRO_TOKEN_COOKIE, "").strip()
    if cookie:
        cookie_claims = tokens.verify(runtime.settings, cookie)
        if not sessions.csrf_ok(request):
            raise Forbidden(
                f"a state-changing request authenticated by the {PRO_TOKEN_COOKIE} cookie must carry "
                f"the header {sessions.CSRF_HEADER}: {sessions.CSRF_VALUE}"
            )
        return cookie_claims
    claims = certificates.claims_from_request(request, runtime.settings)
    if claims is not None:
        return claims
    claims = sessions.claims_from_cookie(request, runtime.settings)
    if claims is not None:
        return claims
    raise Unauthenticated("authentication required: send Authorization: Bearer <token> or a client certificate")


ClaimsDep = Annotated[dict[str, Any], Depends(caller_claims)]
