"""Small helpers for FHIR JSON handled as plain dicts (parsing is done once, at the edge).

These helpers read and build FHIR data types; they carry no business rule.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

JSON = dict[str, Any]

CARNET_CANONICAL = "https://carnet.health/fhir"
EXT_RECORD_CLOSURE = f"{CARNET_CANONICAL}/StructureDefinition/record-closure"
EXT_CONSENT_ATTESTED = f"{CARNET_CANONICAL}/StructureDefinition/record-consent-attestation"
EXT_ACCESS_STATUS = f"{CARNET_CANONICAL}/StructureDefinition/record-access-status"
EXT_IDENTITY_RELIABILITY = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability"
CS_IDENTITY_STATUS = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-identity-status"
EXT_IS_ARCHIVED = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived"
EXT_IHE_SOURCE_ID = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId"
EXT_IHE_DESIGNATION_TYPE = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-designationType"
MHD_LIST_TYPES = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"

_DATETIME = re.compile(r"^(\d{4})(-(\d{2})(-(\d{2})(T(\d{2}):(\d{2})(:(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$")


def parse_datetime(value: str) -> dt.datetime:
    """A FHIR date, dateTime or instant as an aware datetime (the start of the period it denotes).

    A dateTime with a time but no zone is read as UTC; partial dates start at their first instant.
    """
    match = _DATETIME.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a FHIR date or dateTime")
    year, _, month, _, day, _, hour, minute, _, second, fraction, zone = match.groups()
    tz: dt.tzinfo = dt.UTC
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        tz = dt.timezone(sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    micro = int((fraction or ".0")[1:7].ljust(6, "0")) if fraction else 0
    return dt.datetime(
        int(year),
        int(month or 1),
        int(day or 1),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        micro,
        tzinfo=tz,
    )


def format_instant(value: dt.datetime) -> str:
    """An instant in FHIR form, UTC, millisecond precision."""
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def codings(concept: Any) -> list[JSON]:
    """The codings of a CodeableConcept (tolerates absence)."""
    if not isinstance(concept, dict):
        return []
    found = concept.get("coding")
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def extension(resource: JSON, url: str) -> JSON | None:
    for ext in resource.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == url:
            return ext
    return None


def set_extension(resource: JSON, ext: JSON) -> None:
    """Replace (or add) the extension with the same url."""
    others = [e for e in resource.get("extension") or [] if e.get("url") != ext["url"]]
    resource["extension"] = [*others, ext]


def remove_extension(resource: JSON, url: str) -> None:
    remaining = [e for e in resource.get("extension") or [] if e.get("url") != url]
    if remaining:
        resource["extension"] = remaining
    else:
        resource.pop("extension", None)


def split_token(value: str) -> tuple[str | None, str]:
    """A token search value ``system|code`` → (system, code); ``code`` alone → (None, code)."""
    if "|" in value:
        system, _, code = value.partition("|")
        return (system or None), code
    return None, value
