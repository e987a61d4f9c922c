"""The INS (Identité nationale de santé): the matricule (NIR, or NIA while waiting for one) and its OID.

A matricule is 13 characters plus a two-digit key: ``key = 97 − (N mod 97)`` where N is the
13-character number with Corsican départements ``2A``/``2B`` replaced by ``19``/``18``.
See reference/dmp.md §1.1 (test vectors there are used by the unit tests).

Deliberately *not* checked: the sex digit range and the month range. Real NIA and some NIR carry
values outside 1–2 and 01–12 ("fictitious months"), and INSi can return them; rejecting them would
refuse real patients.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

INS_NIR_OID = "1.2.250.1.213.1.4.8"
INS_NIA_OID = "1.2.250.1.213.1.4.9"
INS_NIR_TEST_OID = "1.2.250.1.213.1.4.10"
INS_NIR_DEMO_OID = "1.2.250.1.213.1.4.11"


class InsKind(enum.StrEnum):
    NIR = "nir"
    NIA = "nia"
    TEST = "test"
    DEMO = "demo"


INS_OIDS: dict[str, InsKind] = {
    INS_NIR_OID: InsKind.NIR,
    INS_NIA_OID: InsKind.NIA,
    INS_NIR_TEST_OID: InsKind.TEST,
    INS_NIR_DEMO_OID: InsKind.DEMO,
}
OID_OF_KIND = {kind: oid for oid, kind in INS_OIDS.items()}
LEGACY_INS_OIDS = {"1.2.250.1.213.1.4.1": "INS-A", "1.2.250.1.213.1.4.2": "INS-C"}


class IdentityStatus(enum.StrEnum):
    """Identity trust level (RNIV): only QUAL allows exchanging data keyed on the INS."""

    PROV = "PROV"
    RECUP = "RECUP"
    VALI = "VALI"
    QUAL = "QUAL"


class IdentifierError(ValueError):
    """An identifier is malformed; the message says exactly what is wrong."""


_MATRICULE = re.compile(r"^[0-9]{5}(?:[0-9]{2}|2A|2B)[0-9]{6}$")


def nir_key(first13: str) -> int:
    """The control key (1..97) of a 13-character NIR/NIA (Corsica: 2A counts as 19, 2B as 18)."""
    number = first13.upper().replace("2A", "19", 1).replace("2B", "18", 1)
    if not number.isdigit():
        raise IdentifierError(f"{first13!r} is not a NIR: only digits and 2A/2B are allowed")
    return 97 - (int(number) % 97)


@dataclass(frozen=True, slots=True)
class Ins:
    """A validated INS: 15-character matricule and the kind given by its OID."""

    value: str
    kind: InsKind

    @property
    def oid(self) -> str:
        return OID_OF_KIND[self.kind]

    @property
    def system(self) -> str:
        return f"urn:oid:{self.oid}"

    @property
    def is_test(self) -> bool:
        return self.kind in (InsKind.TEST, InsKind.DEMO)


def system_to_oid(system: str | None) -> str | None:
    if system is None:
        return None
    return system[len("urn:oid:") :] if system.startswith("urn:oid:") else system


def parse_ins(system: str | None, value: str | None, *, allow_test: bool) -> Ins:
    """Validate an INS given as a FHIR identifier (system ``urn:oid:…``) or a CDA id (root OID).

    ``allow_test`` accepts the test and demo OIDs, as every environment but production does.
    """
    oid = system_to_oid(system)
    if not oid:
        raise IdentifierError("the INS has no system: expected urn:oid:1.2.250.1.213.1.4.8 (INS-NIR)")
    if oid in LEGACY_INS_OIDS:
        raise IdentifierError(
            f"{LEGACY_INS_OIDS[oid]} ({oid}) is an obsolete calculated INS; use the INS-NIR or INS-NIA"
        )
    kind = INS_OIDS.get(oid)
    if kind is None:
        raise IdentifierError(f"{oid} is not an INS assigning authority (INS-NIR, INS-NIA, test or demo)")
    if kind in (InsKind.TEST, InsKind.DEMO) and not allow_test:
        raise IdentifierError(f"test and demo INS ({oid}) are refused in production")
    if value is None or not value.strip():
        raise IdentifierError("the INS has no value")
    matricule = value.strip().upper()
    if len(matricule) != 15:
        raise IdentifierError(f"an INS matricule has 15 characters (13 + 2-digit key), got {len(matricule)}")
    if not _MATRICULE.match(matricule[:13]):
        raise IdentifierError(
            "an INS matricule is 13 digits (département 2A/2B allowed at positions 6–7) followed by its key"
        )
    if not matricule[13:].isdigit():
        raise IdentifierError("the last two characters of an INS are its numeric key")
    expected = nir_key(matricule[:13])
    if int(matricule[13:]) != expected:
        raise IdentifierError(f"the INS key is {matricule[13:]} but should be {expected:02d}")
    return Ins(matricule, kind)
