"""The per-process cache of resolved actors (see ``carnet.auth.authenticate``)."""

from __future__ import annotations

from typing import Any

from carnet.auth.actor import Actor
from carnet.cache import TTLCache


class ActorCache(TTLCache[tuple[str, ...], Actor]):
    """Resolved actors keyed by the identity claims of their token."""

    @staticmethod
    def key(claims: dict[str, Any]) -> tuple[str, ...]:
        act = claims.get("act") or {}
        # Every claim that shapes the Actor belongs to the key (a token with another access mode or
        # scope is another actor).
        return (
            str(claims.get("sub")),
            str(claims.get("role")),
            str(act.get("sub") if isinstance(act, dict) else act),
            str(claims.get("persona")),
            str(claims.get("access_mode")),
            str(claims.get("secret_connection")),
            str(claims.get("scope")),
            str(claims.get("auth")),
            str(claims.get("dev")),
        )
