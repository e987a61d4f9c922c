"""What a notification says (its kind), which preference topic governs it, and the channels it travels on.

Topics are what a person turns on or off (reference/dmp.md §4: the Mon espace santé toggles), kinds are
what happened. Emergency-access notices cannot be turned off (R1111-48: the holder and the médecin
traitant are informed a posteriori).
"""

from __future__ import annotations

import enum


class Kind(enum.StrEnum):
    """What happened. Stored in ``notification_events.kind``; each has its message templates."""

    PROFESSIONAL_FIRST_ACCESS = "professional-first-access"
    EMERGENCY_ACCESS = "emergency-access"
    DOCUMENT_ADDED = "document-added"
    DOCUMENT_REPLACED = "document-replaced"
    CONSENT_CHANGED = "consent-changed"
    RECORD_CREATED = "record-created"
    RECORD_CLOSED = "record-closed"
    # The record's lifecycle (carnet.records.lifecycle): announced (it opens in six weeks unless the patient
    # objects; carries the provisional code, sealed), opened at the end of the window, objected to.
    RECORD_ANNOUNCED = "record-announced"
    RECORD_OPENED = "record-opened"
    RECORD_OPPOSED = "record-opposed"
    RESET_CODE = "reset-code"  # a password-reset code for the person's own account (see ACCOUNT_KINDS)


class Topic(enum.StrEnum):
    """What a person chooses to be told about (the preference toggles)."""

    PROFESSIONAL_ACCESS = "professional-access"  # "à chaque accès d'un professionnel de santé"
    EMERGENCY_ACCESS = "emergency-access"  # always on
    DOCUMENTS = "documents"  # NOTIF_DOCUMENT: each professional's addition or replacement of a document
    CONSENTS = "consents"  # authorizations, blocks, emergency preferences, care team, médecin traitant
    RECORD = "record"  # the record's opening and closure
    MESSAGES = "messages"  # NOTIF_MESSAGE (secure messaging, when it exists)
    APPOINTMENTS = "appointments"  # NOTIF_APPOINTMENT: examinations and vaccinations to do
    SCREENING = "screening"  # NOTIF_DEPISTAGE: organised cancer screenings


TOPIC_OF: dict[Kind, Topic] = {
    Kind.PROFESSIONAL_FIRST_ACCESS: Topic.PROFESSIONAL_ACCESS,
    Kind.EMERGENCY_ACCESS: Topic.EMERGENCY_ACCESS,
    Kind.DOCUMENT_ADDED: Topic.DOCUMENTS,
    Kind.DOCUMENT_REPLACED: Topic.DOCUMENTS,
    Kind.CONSENT_CHANGED: Topic.CONSENTS,
    Kind.RECORD_CREATED: Topic.RECORD,
    Kind.RECORD_CLOSED: Topic.RECORD,
    Kind.RECORD_ANNOUNCED: Topic.RECORD,
    Kind.RECORD_OPENED: Topic.RECORD,
    Kind.RECORD_OPPOSED: Topic.RECORD,
}

# Kinds about the person's own account rather than a record's life: they have no topic (preferences cannot
# turn them off), no in-app notice (the person is signed out) and go to every address the account has on
# file, to that account alone. Their secrets (the reset code) are sealed in the event's params.
ACCOUNT_KINDS: frozenset[Kind] = frozenset({Kind.RESET_CODE})

# Topics nobody can turn off: the notice goes on every channel the person has an address for.
MANDATORY: frozenset[Topic] = frozenset({Topic.EMERGENCY_ACCESS})


class Channel(enum.StrEnum):
    """Where a notice is delivered. In-app notices are written with their cause (exactly once); e-mail
    and SMS go through the outbox and the worker."""

    IN_APP = "in-app"
    EMAIL = "email"
    SMS = "sms"


OUTBOX_CHANNELS = (Channel.EMAIL, Channel.SMS)


class Language(enum.StrEnum):
    FR = "fr"
    EN = "en"


class Role(enum.StrEnum):
    """Why the recipient is told: it shapes the wording ("votre dossier", "le dossier de votre enfant" …)."""

    HOLDER = "holder"  # the patient
    REPRESENTATIVE = "representative"  # a legal representative of the patient
    MEDECIN_TRAITANT = "medecin-traitant"  # the patient's médecin traitant (emergency accesses)
