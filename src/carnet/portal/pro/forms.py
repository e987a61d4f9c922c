"""The professional portal's forms: what was typed, its checks, and the domain's refusals tied to fields.

Forms check what a person can get wrong before anything is asked of the services (a missing field, an
INS whose key is wrong, a reason too short); the services then apply the DMP rules and the access
policy, and their refusals (``Invalid`` problems located by FHIRPath) are shown next to the field
they concern, in the page's language.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from carnet.access.emergency import MIN_REASON
from carnet.access.models import EmergencyMode
from carnet.access.policy import is_patient_document_type
from carnet.auth.actor import Professional
from carnet.directory.service import IDNAT_PS, IDNAT_STRUCT
from carnet.documents.content import Media, detect_media
from carnet.errors import CarnetError, Conflict, Forbidden, Invalid, IssueCode, TooLarge, UnsupportedMediaType
from carnet.fhirtypes import JSON
from carnet.identifiers import INS_NIA_OID, INS_NIR_DEMO_OID, INS_NIR_OID, INS_NIR_TEST_OID, IdentifierError, Ins
from carnet.identifiers import parse_ins as parse_ins_value
from carnet.terminology import terminology
from carnet.terminology.valuesets import CONFIDENTIALITY_FLAGS

Gettext = Callable[[str], str]
GENERAL = "general"  # errors about the whole form, shown at its top
A00 = "https://mos.esante.gouv.fr/NOS/TRE_A00-ProducteurDocNonPS/FHIR/TRE-A00-ProducteurDocNonPS"
TA07 = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"
# What a professional deposits from the portal: PDF, or a CDA R2 document (XML).
DEPOSIT_MEDIA = {Media.PDF: "application/pdf", Media.XML: "text/xml"}


def _date(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        return None


# ------------------------------------------------------------------------------------ finding a patient
def ins_systems(*, production: bool, _: Gettext) -> list[tuple[str, str]]:
    """The INS assigning authorities offered (test and demo INS outside production only)."""
    systems = [(INS_NIR_OID, _("INS-NIR (numéro de sécurité sociale)")), (INS_NIA_OID, _("INS-NIA (numéro d'attente)"))]
    if not production:
        systems += [(INS_NIR_TEST_OID, _("INS-NIR de test")), (INS_NIR_DEMO_OID, _("INS-NIR de démonstration"))]
    return systems


@dataclass(slots=True)
class InsSearch:
    """The INS of a patient and the identity traits the professional checks it against (INSi practice)."""

    ins: str = ""
    system: str = INS_NIR_OID
    family: str = ""
    given: str = ""
    birth_date_text: str = ""
    parsed: Ins | None = None
    birth_date: dt.date | None = None
    errors: dict[str, str] = field(default_factory=dict)


def read_ins_search(data: Mapping[str, str], *, production: bool, _: Gettext) -> InsSearch:
    form = InsSearch(
        ins="".join(data.get("ins", "").split()).upper()[:20],
        system=data.get("system", INS_NIR_OID).strip(),
        family=data.get("family", "").strip()[:100],
        given=data.get("given", "").strip()[:100],
        birth_date_text=data.get("birth_date", "").strip()[:10],
    )
    if form.system not in {oid for oid, _label in ins_systems(production=production, _=_)}:
        form.errors["system"] = _("Choisissez l'autorité d'affectation de l'INS.")
    if not form.ins:
        form.errors["ins"] = _("Saisissez l'INS du patient (15 caractères).")
    elif "system" not in form.errors:
        try:
            form.parsed = parse_ins_value(f"urn:oid:{form.system}", form.ins, allow_test=not production)
        except IdentifierError as exc:
            if len(form.ins) != 15:
                form.errors["ins"] = _("Un INS compte 15 caractères : 13 chiffres et une clé de 2 chiffres.")
            elif "key" in str(exc):
                form.errors["ins"] = _("La clé de cet INS ne correspond pas : vérifiez la saisie.")
            else:
                form.errors["ins"] = _("Cet INS n'est pas valide : vérifiez la saisie.")
    if not form.family:
        form.errors["family"] = _("Saisissez le nom de naissance du patient.")
    if not form.given:
        form.errors["given"] = _("Saisissez le premier prénom de naissance du patient.")
    form.birth_date = _date(form.birth_date_text)
    if form.birth_date is None:
        form.errors["birth_date"] = _("Saisissez la date de naissance du patient (jj/mm/aaaa).")
    return form


# ------------------------------------------------------------------------------------ depositing
@dataclass(slots=True)
class Deposit:
    """The deposit form: metadata typed by the professional (value-set codes) and the file."""

    title: str = ""
    type_code: str = ""
    facility: str = ""
    setting: str = ""
    service_date: str = ""
    flags: list[str] = field(default_factory=list)
    replaces: str = ""
    media: Media | None = None
    data: bytes = b""
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def is_cda(self) -> bool:
        return self.media is Media.XML

    @property
    def field_errors(self) -> dict[str, str]:
        """The errors tied to a field (for the summary that links to them)."""
        return {k: v for k, v in self.errors.items() if k != GENERAL}


def type_options() -> list[tuple[str, list[tuple[str, str, str]]]]:
    """JDV_J66 types a professional deposits, grouped by their ASS_X16 class: (class display, [(code,
    display, class display)]). Patient-expression types and the insurer's reimbursement data are left out."""
    term = terminology()
    groups: dict[str, list[tuple[str, str, str]]] = {code: [] for code in term.class_codes.codes}
    for code, coding in term.type_codes.codes.items():
        klass = term.expected_class(code)
        if klass is None or klass not in groups or is_patient_document_type(code) or code == "REMB":
            continue
        groups[klass].append((code, coding.display, term.class_codes.codes[klass].display))
    return [
        (term.class_codes.codes[klass].display, sorted(items, key=lambda i: i[1].lower()))
        for klass, items in groups.items()
        if items
    ]


def facility_options() -> list[tuple[str, str]]:
    """JDV_J61 facility types of professionals (the non-professional producers of TRE_A00 left out)."""
    return [(c.code, c.display) for c in terminology().facility_types.codes.values() if c.system != A00]


def setting_options() -> list[tuple[str, str]]:
    """JDV_J62 practice settings of professionals."""
    return [(c.code, c.display) for c in terminology().practice_settings.codes.values() if c.system != A00]


def read_deposit(data: Mapping[str, str], flags: list[str], content: bytes | None, *, _: Gettext) -> Deposit:
    """Check the form before the service: a file of an accepted kind, and for a PDF the metadata a CDA
    header would otherwise give (type, facility, practice setting, title, date of the act)."""
    term = terminology()
    form = Deposit(
        title=" ".join(data.get("title", "").split())[:300],
        type_code=data.get("type", "").strip(),
        facility=data.get("facility", "").strip(),
        setting=data.get("setting", "").strip(),
        service_date=data.get("service_date", "").strip()[:10],
        flags=[f for f in dict.fromkeys(flags) if f in CONFIDENTIALITY_FLAGS],
        replaces=data.get("replaces", "").strip()[:64],
        data=content or b"",
    )
    if not form.data:
        form.errors["file"] = _("Choisissez le document à déposer (PDF ou CDA R2).")
    else:
        form.media = detect_media(form.data)
        if form.media not in DEPOSIT_MEDIA:
            form.errors["file"] = _("Ce fichier n'est ni un PDF ni un document CDA R2 (XML).")
    if form.type_code and form.type_code not in term.type_codes:
        form.errors["type"] = _("Choisissez un type de document de la liste.")
    if form.facility and form.facility not in term.facility_types:
        form.errors["facility"] = _("Choisissez un secteur d'activité de la liste.")
    if form.setting and form.setting not in term.practice_settings:
        form.errors["setting"] = _("Choisissez un cadre d'exercice de la liste.")
    if form.service_date and _date(form.service_date) is None:
        form.errors["service_date"] = _("Saisissez une date valide (jj/mm/aaaa).")
    if form.media is Media.PDF:
        # A PDF says nothing of itself: the metadata must be typed (a CDA's header gives them).
        if not form.type_code:
            form.errors.setdefault("type", _("Choisissez le type du document."))
        if not form.facility:
            form.errors.setdefault("facility", _("Choisissez le secteur d'activité."))
        if not form.setting:
            form.errors.setdefault("setting", _("Choisissez le cadre d'exercice."))
        if not form.title:
            form.errors["title"] = _("Donnez un titre au document.")
        if not form.service_date:
            form.errors.setdefault("service_date", _("Saisissez la date de l'acte."))
    return form


def deposit_resource(form: Deposit, *, record_id: str, professional: Professional, organization: str | None) -> JSON:
    """The DocumentReference of an ITI-105 simplified publish; what a CDA header gives is left out."""
    term = terminology()
    assert form.media is not None
    attachment: JSON = {"contentType": DEPOSIT_MEDIA[form.media], "language": "fr-FR"}
    if form.title:
        attachment["title"] = form.title
    resource: JSON = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{record_id}"},
        "securityLabel": [{"coding": [{"system": TA07, "code": flag}]} for flag in form.flags],
        "content": [{"attachment": attachment}],
    }
    if form.type_code:
        hit = term.type_codes.codes[form.type_code]
        resource["type"] = {"coding": [{"system": hit.system, "code": hit.code, "display": hit.display}]}
    context: JSON = {}
    if form.facility:
        hit = term.facility_types.codes[form.facility]
        context["facilityType"] = {"coding": [{"system": hit.system, "code": hit.code, "display": hit.display}]}
    if form.setting:
        hit = term.practice_settings.codes[form.setting]
        context["practiceSetting"] = {"coding": [{"system": hit.system, "code": hit.code, "display": hit.display}]}
    if form.service_date:
        context["period"] = {"start": form.service_date}
    if context:
        resource["context"] = context
    if not form.is_cda:
        # The author of a PDF is the depositor; a CDA names its authors in its header.
        author: JSON = {
            "resourceType": "Practitioner",
            "id": "author",
            "identifier": [{"system": IDNAT_PS, "value": professional.idnat}],
            "name": [{"text": professional.display}],
        }
        resource["contained"] = [author]
        resource["author"] = [{"reference": "#author"}]
        if organization and professional.organization_idnat:
            resource["contained"].append(
                {
                    "resourceType": "Organization",
                    "id": "organization",
                    "identifier": [{"system": IDNAT_STRUCT, "value": professional.organization_idnat}],
                    "name": organization,
                }
            )
            resource["author"].append({"reference": "#organization"})
    if form.replaces:
        resource["relatesTo"] = [{"code": "replaces", "target": {"reference": f"DocumentReference/{form.replaces}"}}]
    return resource


def _field_of(expression: str | None) -> str:
    where = expression or ""
    for marker, name in (
        (".type", "type"),
        (".category", "type"),
        (".context.facilityType", "facility"),
        (".context.practiceSetting", "setting"),
        (".context.period", "service_date"),
        (".securityLabel", "flags"),
        (".relatesTo", GENERAL),
    ):
        if marker in where:
            return name
    return "file"


def deposit_errors(exc: CarnetError, *, max_bytes: int, _: Gettext, replacing: bool = False) -> dict[str, str]:
    """The service's refusal of a deposit (``replacing``: of a new version), as messages tied to the form's
    fields. A refusal never says why (a block is not revealed)."""
    if isinstance(exc, TooLarge):
        return {
            "file": _("Le fichier est trop volumineux (au plus %(size)s Mo).") % {"size": max_bytes // (1024 * 1024)}
        }
    if isinstance(exc, UnsupportedMediaType):
        return {"file": _("Ce fichier n'est ni un PDF ni un document CDA R2 (XML).")}
    if isinstance(exc, Conflict):
        if "uniqueId" in exc.message:
            return {"file": _("Ce document a déjà été déposé dans ce dossier.")}
        return {GENERAL: _("Le document à remplacer n'est plus la version en cours.")}
    if isinstance(exc, Forbidden):
        if not replacing:
            return {GENERAL: _("Vous ne pouvez pas déposer de document dans ce dossier.")}
        return {GENERAL: _("Vous ne pouvez pas faire cela : seul l'auteur du document ou sa structure le remplace.")}
    errors: dict[str, str] = {}
    problems = exc.problems if isinstance(exc, Invalid) else []
    for problem in problems:
        name = _field_of(problem.expression)
        text = problem.message
        if "INS mismatch" in text:
            message = _("Ce document CDA concerne un autre patient : son INS n'est pas celui du dossier.")
        elif "setId" in text:
            message = _("La nouvelle version d'un CDA garde le setId du document qu'elle remplace.")
        elif "does not exist in this record" in text:
            message = _("Le document à remplacer n'existe pas dans ce dossier.")
        elif name == "type" and "CDA code" in text:
            message = _("Ce type ne correspond pas au code du document CDA : laissez le champ vide pour le reprendre.")
        elif name == "type" and "not a DMP type code" in text:
            message = _("Le type de ce document CDA n'est pas un type accepté par le DMP.")
        elif name == "type":
            message = _("Choisissez le type du document.")
        elif name == "facility":
            message = _("Choisissez le secteur d'activité.")
        elif name == "setting":
            message = _("Choisissez le cadre d'exercice.")
        elif name == "file" and ("CDA" in text or "XML" in text) and problem.code is not IssueCode.BUSINESS_RULE:
            message = _("Ce fichier n'est pas un document CDA R2 lisible.")
        else:
            message = _("Le document ne respecte pas les règles du DMP : %(detail)s") % {"detail": text}
        errors.setdefault(name, message)
    return errors or {
        GENERAL: _("Le document ne respecte pas les règles du DMP : %(detail)s") % {"detail": exc.message}
    }


# ------------------------------------------------------------------------------------ emergency access
@dataclass(slots=True)
class EmergencyRequest:
    mode: str = EmergencyMode.BREAK_GLASS.value
    reason: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def emergency_mode(self) -> EmergencyMode:
        return EmergencyMode(self.mode)


def read_emergency(data: Mapping[str, str], *, _: Gettext) -> EmergencyRequest:
    form = EmergencyRequest(mode=data.get("mode", "").strip(), reason=" ".join(data.get("reason", "").split())[:1000])
    if form.mode not in {m.value for m in EmergencyMode}:
        form.errors["mode"] = _("Choisissez le mode d'accès en urgence.")
        form.mode = EmergencyMode.BREAK_GLASS.value
    if len(form.reason) < MIN_REASON:
        form.errors["reason"] = _("Expliquez la raison de l'accès en urgence (au moins %(n)s caractères).") % {
            "n": MIN_REASON
        }
    return form


def emergency_refusal(exc: Forbidden, *, _: Gettext) -> str:
    """Why the emergency access was refused, without telling a blocked professional that they are."""
    if "opposed access in emergencies" in exc.message:
        return _("Le patient s'est opposé à l'accès à son dossier en urgence (bris de glace).")
    if "opposed access by the regulation centre" in exc.message:
        return _("Le patient s'est opposé à l'accès du centre de régulation à son dossier.")
    if "médecins régulateurs" in exc.message:
        return _("L'accès en mode régulation est réservé aux médecins régulateurs d'un SAMU - centre 15.")
    return _("L'accès en urgence à ce dossier ne vous est pas ouvert.")
