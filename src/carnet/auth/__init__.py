"""Authentication: who the caller is (an ``Actor``), never what they may do (that is ``access``)."""

from carnet.auth.actor import SYSTEM_ACTOR, AccessMode, Actor, ActorKind, Professional

__all__ = ["SYSTEM_ACTOR", "AccessMode", "Actor", "ActorKind", "Professional"]
