"""How traces read to the patient: groups, actor types and sentences ("Dr … a consulté le document …").

Groups and actor types are those of Mon espace santé's activity history (reference/dmp.md §4):
groups ``GENERAL``, ``MEDICAL_DOCUMENT``, ``SERVICE_TIERS``; actor types ``HEALTHCARE_PROFESSIONAL``,
``HEALTHCARE_FACILITY``, ``SUPPORT``, ``PATIENT``, ``SERVICE_TIERS``, ``SYSTEM``, ``ENROLMENT``. Both are
derived from the stored codes (action, actor kind), so the history can filter on them in SQL.

Sentences are French by default, English on request. Everything named in them is resolved when they
are built, never stored: the professional's name from the directory, the software's and
organisation's names, the document type's display from the DMP value set (never a document's title).
Dates are formatted with Babel in ``CARNET_AUDIT_TIMEZONE``.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from functools import cache

from babel.dates import format_datetime

from carnet.audit.trace import Outcome, TraceAction

FR, EN = "fr", "en"
LANGUAGES = (FR, EN)

# ------------------------------------------------------------------ groups and actor types

GENERAL = "GENERAL"
MEDICAL_DOCUMENT = "MEDICAL_DOCUMENT"
SERVICE_TIERS = "SERVICE_TIERS"
GROUPS = (GENERAL, MEDICAL_DOCUMENT, SERVICE_TIERS)

_DOCUMENT_ACTIONS = frozenset(a for a in TraceAction if a.value.startswith(("document.", "list.")))
_SERVICE_ACTIONS = frozenset({TraceAction.TOKEN_ISSUED})


def group_of(action: str) -> str:
    if action in _DOCUMENT_ACTIONS:
        return MEDICAL_DOCUMENT
    if action in _SERVICE_ACTIONS:
        return SERVICE_TIERS
    return GENERAL


def actions_of_group(group: str) -> frozenset[str]:
    return frozenset(a.value for a in TraceAction if group_of(a.value) == group)


HEALTHCARE_PROFESSIONAL = "HEALTHCARE_PROFESSIONAL"
HEALTHCARE_FACILITY = "HEALTHCARE_FACILITY"
SUPPORT = "SUPPORT"
PATIENT = "PATIENT"
SYSTEM = "SYSTEM"
ENROLMENT = "ENROLMENT"
ACTOR_TYPES = (HEALTHCARE_PROFESSIONAL, HEALTHCARE_FACILITY, SUPPORT, PATIENT, SERVICE_TIERS, SYSTEM, ENROLMENT)

# actor kind → actor type (patients and legal representatives activating their account: ENROLMENT)
ACTOR_KINDS: dict[str, tuple[str, ...]] = {
    HEALTHCARE_PROFESSIONAL: ("professional",),
    HEALTHCARE_FACILITY: ("software",),  # an establishment's or a practice's software, for a professional
    SUPPORT: ("operator", "auditor"),
    PATIENT: ("patient", "legal-representative"),
    SERVICE_TIERS: (),  # referenced digital services: none yet
    SYSTEM: ("system", "insurer"),
    ENROLMENT: ("patient", "legal-representative"),
}


def actor_type_of(actor_kind: str, action: str) -> str:
    if actor_kind in ("patient", "legal-representative"):
        return ENROLMENT if action == TraceAction.ACCOUNT_ACTIVATION.value else PATIENT
    for actor_type, kinds in ACTOR_KINDS.items():
        if actor_kind in kinds:
            return actor_type
    return SYSTEM


# ------------------------------------------------------------------ names


@dataclass(slots=True)
class Names:
    """Names resolved at display time for one page of traces."""

    professionals: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # IdNat → (name, profession)
    organizations: dict[str, str] = field(default_factory=dict)  # IdNat_Struct → name
    clients: dict[str, str] = field(default_factory=dict)  # client id → name
    document_types: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # (type, id) → (code, display)

    def professional(self, idnat: str | None, profession: str | None = None) -> str | None:
        if not idnat or idnat not in self.professionals:
            return None
        name, known_profession = self.professionals[idnat]
        # Médecins and chirurgiens-dentistes are "Dr" (TRE_G15 10 and 40).
        return f"Dr {name}" if (profession or known_profession) in ("10", "40") else name


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who reads the history: their own actions read as "Vous"."""

    actor_key: str


# ------------------------------------------------------------------ sentences

_WHO = {
    FR: {
        "you": "Vous",
        "professional": "Un professionnel de santé",
        "software": "Un logiciel de santé",
        "insurer": "L'Assurance Maladie",
        "system": "Carnet",
        "operator": "Le support Carnet",
        "auditor": "Un auditeur",
        "patient": "Le titulaire du dossier",
        "unknown": "Une personne non identifiée",
        "legal-representative": "Un représentant légal",
        "via": "{pro} (via {software})",
    },
    EN: {
        "you": "You",
        "professional": "A health professional",
        "software": "Health software",
        "insurer": "The health insurance",
        "system": "Carnet",
        "operator": "Carnet support",
        "auditor": "An auditor",
        "patient": "The record holder",
        "unknown": "An unidentified person",
        "legal-representative": "A legal representative",
        "via": "{pro} (via {software})",
    },
}


def actor_name(trace: dict[str, object], names: Names, viewer: Viewer | None, language: str) -> str:
    """The actor of a trace as the reader sees it."""
    words = _WHO[language]
    kind = str(trace.get("actor_kind") or "")
    key = str(trace.get("actor_key") or "")
    if viewer is not None and key == viewer.actor_key:
        return words["you"]
    professional = names.professional(_str(trace.get("professional")), _str(trace.get("profession")))
    if kind == "professional":
        return professional or words["professional"]
    if kind == "software":
        software = names.clients.get(_str(trace.get("client_id")) or "") or words["software"]
        return words["via"].format(pro=professional, software=software) if professional else software
    if kind == "insurer":
        return names.clients.get(_str(trace.get("client_id")) or "") or words["insurer"]
    if kind == "patient" and key.startswith("unknown:"):
        return words["unknown"]
    return words.get(kind, words["system"])


def _str(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class _Phrase:
    """A verb phrase: third person, second person ("vous"), English."""

    fr: str
    fr_you: str
    en: str

    def get(self, language: str, you: bool) -> str:
        if language == EN:
            return self.en
        return self.fr_you if you else self.fr


def _p(fr: str, fr_you: str | None = None, en: str = "") -> _Phrase:
    # Most French phrases start with "a " (3rd person) and "avez " (vous).
    return _Phrase(fr, fr_you or ("avez " + fr[2:] if fr.startswith("a ") else fr), en)


_PHRASES: dict[str, _Phrase] = {
    "record.create": _p("a ouvert le dossier", en="opened the record"),
    "record.lookup": _p("a vérifié l'existence du dossier", en="checked that the record exists"),
    "record.read": _p("a consulté le dossier (identité du patient)", en="viewed the record (patient identity)"),
    "record.close": _p("a fermé le dossier", en="closed the record"),
    "record.reopen": _p("a rouvert le dossier", en="reopened the record"),
    "record.announce": _p(
        "a annoncé l'ouverture du dossier (délai d'opposition)",
        en="announced the record's opening (opposition window)",
    ),
    "record.open": _p("a ouvert le dossier", en="opened the record"),
    "record.oppose": _p(
        "s'est opposé(e) à l'ouverture du dossier",
        "vous êtes opposé(e) à l'ouverture du dossier",
        "objected to the record's opening",
    ),
    "record.purge": _p("a détruit le contenu du dossier", en="destroyed the record's content"),
    "record.export": _p("a exporté le dossier", en="exported the record"),
    "document.search": _p("a recherché des documents du dossier", en="searched the record's documents"),
    "document.read": _p("a consulté le document {doc}", en="viewed the document {doc}"),
    "document.history": _p("a consulté l'historique du document {doc}", en="viewed the history of the document {doc}"),
    "document.retrieve": _p("a téléchargé le document {doc}", en="downloaded the document {doc}"),
    "document.create": _p("a ajouté le document {doc}", en="added the document {doc}"),
    "document.replace": _p(
        "a déposé une nouvelle version du document {doc}", en="deposited a new version of the document {doc}"
    ),
    "document.update": _p("a modifié le document {doc}", en="changed the document {doc}"),
    "document.delete": _p("a supprimé le document {doc}", en="deleted the document {doc}"),
    "+MASQUE_PS": _p("a masqué le document {doc} aux professionnels", en="hid the document {doc} from professionals"),
    "-MASQUE_PS": _p(
        "a rendu le document {doc} visible aux professionnels", en="made the document {doc} visible to professionals"
    ),
    "+INVISIBLE_PATIENT": _p(
        "a rendu le document {doc} invisible pour le patient", en="hid the document {doc} from the patient"
    ),
    "-INVISIBLE_PATIENT": _p(
        "a rendu le document {doc} visible pour le patient", en="made the document {doc} visible to the patient"
    ),
    "+INVISIBLE_REPRESENTANTS_LEGAUX": _p(
        "a rendu le document {doc} invisible pour les représentants légaux",
        en="hid the document {doc} from the legal representatives",
    ),
    "-INVISIBLE_REPRESENTANTS_LEGAUX": _p(
        "a rendu le document {doc} visible pour les représentants légaux",
        en="made the document {doc} visible to the legal representatives",
    ),
    "archived": _p("a archivé le document {doc}", en="archived the document {doc}"),
    "unarchived": _p("a désarchivé le document {doc}", en="unarchived the document {doc}"),
    "list.search": _p("a recherché des classeurs du dossier", en="searched the record's folders"),
    "list.read": _p("a consulté un classeur du dossier", en="viewed a folder of the record"),
    "consent.read": _p("a consulté les autorisations d'accès au dossier", en="viewed who may access the record"),
    "consent.create": _p("a modifié les autorisations d'accès au dossier", en="changed who may access the record"),
    "consent.revoke": _p("a retiré une décision d'accès au dossier", en="withdrew a decision about access"),
    "authorization permit": _p(
        "a autorisé {subject} à accéder au dossier", en="authorized {subject} to access the record"
    ),
    "authorization revoke": _p("a retiré l'autorisation de {subject}", en="withdrew the authorization of {subject}"),
    "block deny": _p("a bloqué l'accès de {subject} au dossier", en="blocked {subject} from the record"),
    "block revoke": _p("a débloqué l'accès de {subject} au dossier", en="unblocked {subject}"),
    "administrator permit": _p(
        "a désigné {subject} administrateur du dossier", en="made {subject} an administrator of the record"
    ),
    "administrator revoke": _p(
        "a retiré à {subject} l'administration du dossier", en="removed {subject} as administrator of the record"
    ),
    "care-team permit": _p(
        "s'est déclaré(e) dans l'équipe de soins", "vous êtes déclaré(e) dans l'équipe de soins", "joined the care team"
    ),
    "care-team revoke": _p("a quitté l'équipe de soins", en="left the care team"),
    "medecin-traitant permit": _p(
        "s'est déclaré(e) médecin traitant", "vous êtes déclaré(e) médecin traitant", "became the médecin traitant"
    ),
    "medecin-traitant revoke": _p(
        "n'est plus médecin traitant", "n'êtes plus médecin traitant", "is no longer the médecin traitant"
    ),
    "emergency-break-glass permit": _p(
        "a autorisé l'accès en urgence (bris de glace)", en="allowed emergency access (break-glass)"
    ),
    "emergency-break-glass deny": _p(
        "s'est opposé(e) à l'accès en urgence (bris de glace)",
        "vous êtes opposé(e) à l'accès en urgence (bris de glace)",
        "opposed emergency access (break-glass)",
    ),
    "emergency-regulation permit": _p(
        "a autorisé l'accès par le centre de régulation (SAMU – centre 15)",
        en="allowed access by the regulation centre (SAMU – centre 15)",
    ),
    "emergency-regulation deny": _p(
        "s'est opposé(e) à l'accès par le centre de régulation (SAMU – centre 15)",
        "vous êtes opposé(e) à l'accès par le centre de régulation (SAMU – centre 15)",
        "opposed access by the regulation centre (SAMU – centre 15)",
    ),
    "emergency-masked permit": _p(
        "a autorisé l'accès en urgence aux documents masqués", en="allowed masked documents in emergencies"
    ),
    "emergency-masked deny": _p(
        "a refusé l'accès en urgence aux documents masqués", en="refused masked documents in emergencies"
    ),
    "default-confidentiality deny": _p(
        "a choisi de masquer par défaut les nouveaux documents aux professionnels",
        en="chose to hide new documents from professionals by default",
    ),
    "default-confidentiality permit": _p(
        "a choisi de ne plus masquer par défaut les nouveaux documents",
        en="chose to stop hiding new documents by default",
    ),
    "emergency.access": _p("a accédé au dossier en urgence", en="accessed the record in an emergency"),
    "emergency.break-glass": _p(
        "a accédé au dossier en urgence (bris de glace)", en="accessed the record in an emergency (break-glass)"
    ),
    "emergency.regulation": _p(
        "a accédé au dossier en urgence (régulation SAMU – centre 15)",
        en="accessed the record as the regulation centre (SAMU – centre 15)",
    ),
    "audit.read": _p("a consulté l'historique des accès au dossier", en="viewed the record's access history"),
    "auth.login": _p("s'est connecté(e)", "vous êtes connecté(e)", "signed in"),
    "auth.login-failure": _p("a tenté de se connecter", "avez tenté de vous connecter", "tried to sign in"),
    "auth.logout": _p("s'est déconnecté(e)", "vous êtes déconnecté(e)", "signed out"),
    "auth.activation": _p("a activé son compte", "avez activé votre compte", "activated their account"),
    "auth.password-reset": _p(
        "a réinitialisé son mot de passe", "avez réinitialisé votre mot de passe", "reset their password"
    ),
    "auth.token": _p("a obtenu un accès pour un service", en="obtained access for a service"),
    "admin": _p("a effectué une opération d'administration", en="performed an administrative operation"),
    # An account's own change of its notification preferences (an ``admin`` trace, detail
    # ``notification-preferences …``; Mon espace santé's MODIF_PARAM_NOTIF).
    "notification-preferences": _p(
        "a modifié ses préférences de notification",
        "avez modifié vos préférences de notification",
        "changed the notification preferences",
    ),
}

_REFUSED = {FR: " (accès refusé)", EN: " (access denied)"}
_FAILED = {FR: " (échec)", EN: " (failed)"}
_A_DOCUMENT = {FR: "un document", EN: "a document"}
_SUBJECT = {FR: "un professionnel", EN: "a professional"}


def _document(display: str | None, language: str) -> str:
    if not display:
        return _A_DOCUMENT[language]
    return f"« {display} »" if language == FR else f"“{display}”"


def _consent_phrase(action: str, detail: str) -> str:
    parts = detail.split()
    if len(parts) < 2:
        return action
    kind, decision = parts[0], parts[1]
    if action == TraceAction.CONSENT_REVOKE.value:
        return f"{kind} revoke"
    return f"{kind} {decision}"


def _update_phrase(detail: str) -> str:
    for change in detail.split():
        if change in _PHRASES:
            return change
    return "document.update"


def describe(
    trace: dict[str, object],
    names: Names,
    language: str,
    *,
    you: bool,
    document_display: str | None = None,
) -> str:
    """The verb phrase of a trace ("a consulté le document « … »"), for the actor it names."""
    action = str(trace.get("action") or "")
    detail = str(trace.get("detail") or "")
    key = action
    subject = ""
    if action == TraceAction.DOCUMENT_READ.value and detail == "history":
        key = "document.history"
    elif action == TraceAction.DOCUMENT_UPDATE.value:
        key = _update_phrase(detail)
    elif action in (TraceAction.CONSENT_CREATE.value, TraceAction.CONSENT_REVOKE.value):
        candidate = _consent_phrase(action, detail)
        if candidate in _PHRASES:
            key = candidate
            who = detail.split()[2] if len(detail.split()) > 2 else ""
            subject = names.professional(who) or names.organizations.get(who) or _SUBJECT[language]
    elif action == TraceAction.EMERGENCY_ACCESS.value:
        key = f"emergency.{trace.get('access_mode')}" if f"emergency.{trace.get('access_mode')}" in _PHRASES else action
    elif action == TraceAction.ADMIN.value and detail.split(" ", 1)[0] == "notification-preferences":
        key = "notification-preferences"
    phrase = _PHRASES.get(key) or _PHRASES.get(action) or _PHRASES["admin"]
    text = phrase.get(language, you).format(doc=_document(document_display, language), subject=subject)
    outcome = trace.get("outcome")
    if outcome == Outcome.DENIED.value:
        text += _REFUSED[language]
    elif outcome == Outcome.FAILURE.value and action != TraceAction.LOGIN_FAILURE.value:
        text += _FAILED[language]
    return text


# ------------------------------------------------------------------ dates and languages


@cache
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


_DATE_FORMATS = {FR: ("d MMMM y 'à' HH:mm", "fr_FR"), EN: ("MMMM d, y 'at' h:mm a", "en_GB")}


def format_date(at: dt.datetime, language: str, timezone: str) -> str:
    pattern, locale = _DATE_FORMATS[language]
    return str(format_datetime(at, pattern, tzinfo=_zone(timezone), locale=locale))


def negotiate(accept_language: str | None) -> str:
    """French unless the caller prefers English (``Accept-Language``, q-values honoured)."""
    if not accept_language:
        return FR
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        language = tag.strip().lower().split("-", 1)[0]
        if language in LANGUAGES and quality > 0:
            ranked.append((-quality, index, language))
    return min(ranked)[2] if ranked else FR
