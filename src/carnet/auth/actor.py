"""Who is acting: the one object every service and the access policy receive.

Authentication (the development token authenticator now, card certificates, OpenID Connect and
SMART backend services later) only has to produce an ``Actor``; nothing downstream knows how the
caller proved who they are.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field


class ActorKind(enum.StrEnum):
    PATIENT = "patient"
    REPRESENTATIVE = "legal-representative"
    PROFESSIONAL = "professional"
    SOFTWARE = "software"
    INSURER = "insurer"
    OPERATOR = "operator"
    AUDITOR = "auditor"  # reads the audit trail (every record's traces), never clinical content
    SYSTEM = "system"


class AccessMode(enum.StrEnum):
    """How a professional is accessing a record (carried into every trace)."""

    NORMAL = "normal"
    BREAK_GLASS = "break-glass"
    REGULATION = "regulation"


@dataclass(frozen=True, slots=True)
class Professional:
    """A health professional as the directory knows them, in the role they act under."""

    idnat: str
    practitioner_id: str
    role_id: str | None
    profession: str  # TRE_G15
    specialty: str | None  # TRE_R01
    organization_id: str | None
    organization_idnat: str | None
    display: str
    practice_setting: str | None = None  # TRE_A01 of the organisation, e.g. SAMU_SMUR for a regulation centre


@dataclass(frozen=True, slots=True)
class Actor:
    """The authenticated caller.

    ``key`` is a stable, non-secret identity used in indexes ("who deposited this"): ``pro:<IdNat>``,
    ``account:<uuid>``, ``client:<id>``. Software acting for a professional has kind SOFTWARE, its own
    ``client_id`` and the professional in ``professional``: rights follow the professional.
    """

    kind: ActorKind
    key: str
    display: str
    account_id: uuid.UUID | None = None
    own_record: uuid.UUID | None = None
    represented_records: frozenset[uuid.UUID] = field(default_factory=frozenset)
    professional: Professional | None = None
    client_id: str | None = None
    # The emergency mode a professional's software declares in its token (SMART backend services);
    # the emergency itself is granted per record by the policy, this only says what the caller asked.
    declared_mode: AccessMode = AccessMode.NORMAL
    # VIHF "connexion secrète": a professional acting for a minor in confidence; what they deposit is
    # invisible to the minor's legal representatives.
    secret_connection: bool = False
    # SMART scopes granted to software (``system/DocumentReference.crus`` …); None: not scope-limited.
    scopes: frozenset[str] | None = None
    auth_method: str = "token"  # token | certificate | oidc | smart | password | dev
    persona: str | None = None

    @property
    def acts_as_professional(self) -> bool:
        return self.professional is not None and self.kind in (ActorKind.PROFESSIONAL, ActorKind.SOFTWARE)

    @property
    def author_key(self) -> str:
        """The identity recorded as a document's depositor: the professional, not their software."""
        if self.professional is not None:
            return f"pro:{self.professional.idnat}"
        return self.key

    @property
    def organization_idnat(self) -> str | None:
        return self.professional.organization_idnat if self.professional else None

    def may_act_for(self, record_id: uuid.UUID) -> bool:
        """Whether this person is the patient of the record or one of their legal representatives."""
        return record_id == self.own_record or record_id in self.represented_records


SYSTEM_ACTOR = Actor(kind=ActorKind.SYSTEM, key="system", display="Carnet")
