"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from carnet.access.models import AccessGrant, EmergencyAccess
from carnet.accounts.models import Account, Client, Credential, LoginAttempt, LoginSession, OneTimeCode, Representation
from carnet.audit.models import AuditCheckpoint, AuditCheckpointHead, AuditEntry, AuditHead
from carnet.auth.models import OidcLogin, UsedAssertion
from carnet.db import Base
from carnet.directory.models import Organization, Practitioner, PractitionerRole
from carnet.documents.models import BinaryEntry, DocumentEntry, ListEntry, ListMember
from carnet.notifications.models import (
    InboxNotification,
    NotificationDelivery,
    NotificationEvent,
    NotificationPreference,
    ProfessionalAccess,
)
from carnet.records.models import Record
from carnet.storage.models import ResourceLocator, ResourceVersion, SearchToken, StoredBlob

metadata = Base.metadata

__all__ = [
    "AccessGrant",
    "Account",
    "AuditCheckpoint",
    "AuditCheckpointHead",
    "AuditEntry",
    "AuditHead",
    "BinaryEntry",
    "Client",
    "Credential",
    "DocumentEntry",
    "EmergencyAccess",
    "InboxNotification",
    "ListEntry",
    "ListMember",
    "LoginAttempt",
    "LoginSession",
    "NotificationDelivery",
    "NotificationEvent",
    "NotificationPreference",
    "OidcLogin",
    "OneTimeCode",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "ProfessionalAccess",
    "Record",
    "Representation",
    "ResourceLocator",
    "ResourceVersion",
    "SearchToken",
    "StoredBlob",
    "UsedAssertion",
    "metadata",
]
