"""Identifiers of professionals (IdNat_PS, RPPS, ADELI) and structures (IdNat_Struct).

IdNat_PS (OID 1.2.250.1.71.4.2.1) = a one-character prefix + the identifier it qualifies:
``0`` ADELI, ``1`` cabinet ADELI, ``3`` FINESS, ``4`` SIREN, ``5`` SIRET, ``6`` cabinet RPPS, ``8`` RPPS.
IdNat_Struct (OID 1.2.250.1.71.4.2.2): ``0`` cabinet ADELI, ``1`` FINESS, ``2`` SIREN, ``3`` SIRET,
``4`` RPPS-rang. RPPS numbers are 11 digits whose last digit is a Luhn key; the ANS example documents
use fictitious numbers that fail it, so the Luhn check is enforced only in production.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from carnet.identifiers.ins import IdentifierError

IDNAT_PS_OID = "1.2.250.1.71.4.2.1"
IDNAT_STRUCT_OID = "1.2.250.1.71.4.2.2"
RPPS_OID = "1.2.250.1.71.4.2.1"

PS_PREFIXES = {
    "0": "ADELI",
    "1": "cabinet ADELI",
    "3": "FINESS",
    "4": "SIREN",
    "5": "SIRET",
    "6": "cabinet RPPS",
    "8": "RPPS",
}
STRUCT_PREFIXES = {"0": "cabinet ADELI", "1": "FINESS", "2": "SIREN", "3": "SIRET", "4": "RPPS-rang"}


def luhn_valid(number: str) -> bool:
    """The Luhn check used by RPPS and SIREN/SIRET numbers."""
    if not number.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def validate_rpps(rpps: str, *, check_luhn: bool) -> str:
    rpps = rpps.strip()
    if not re.fullmatch(r"[0-9]{11}", rpps):
        raise IdentifierError(f"an RPPS number has 11 digits, got {rpps!r}")
    if check_luhn and not luhn_valid(rpps):
        raise IdentifierError(f"RPPS {rpps} fails its Luhn check digit")
    return rpps


@dataclass(frozen=True, slots=True)
class IdNatPs:
    value: str

    @property
    def kind(self) -> str:
        return PS_PREFIXES[self.value[0]]

    @property
    def rpps(self) -> str | None:
        return self.value[1:] if self.value[0] == "8" else None


@dataclass(frozen=True, slots=True)
class IdNatStruct:
    value: str

    @property
    def kind(self) -> str:
        return STRUCT_PREFIXES.get(self.value[0], "technical")


def parse_idnat_ps(value: str, *, check_luhn: bool) -> IdNatPs:
    value = (value or "").strip()
    if not value:
        raise IdentifierError("the professional's national identifier (IdNat_PS) is empty")
    prefix = value[0]
    if prefix not in PS_PREFIXES:
        raise IdentifierError(
            f"IdNat_PS {value!r} starts with {prefix!r}; expected one of 0, 1, 3, 4, 5, 6 or 8 (8 + RPPS)"
        )
    rest = value[1:]
    if not rest or not rest.isalnum() or len(value) > 30:
        raise IdentifierError(f"IdNat_PS {value!r} must be its prefix followed by an alphanumeric identifier")
    if prefix == "8":
        validate_rpps(rest, check_luhn=check_luhn)
    elif prefix == "0" and not re.fullmatch(r"[0-9]{9}", rest):
        raise IdentifierError(f"IdNat_PS {value!r}: an ADELI number has 9 digits")
    return IdNatPs(value)


def parse_idnat_struct(value: str, *, check_luhn: bool) -> IdNatStruct:
    value = (value or "").strip()
    if not value or not value.isalnum() or len(value) > 30:
        raise IdentifierError(f"IdNat_Struct {value!r} must be a prefix followed by an alphanumeric identifier")
    prefix, rest = value[0], value[1:]
    if prefix == "1" and len(rest) != 9:
        raise IdentifierError(f"IdNat_Struct {value!r}: a FINESS number has 9 characters")
    if prefix == "2" and not (len(rest) == 9 and rest.isdigit()):
        raise IdentifierError(f"IdNat_Struct {value!r}: a SIREN has 9 digits")
    if prefix == "3" and not (len(rest) == 14 and rest.isdigit()):
        raise IdentifierError(f"IdNat_Struct {value!r}: a SIRET has 14 digits")
    if prefix in "23" and check_luhn and not luhn_valid(rest):
        raise IdentifierError(f"IdNat_Struct {value!r} fails its Luhn check digit")
    if prefix == "4" and not (len(rest) >= 12 and rest.isdigit()):
        raise IdentifierError(f"IdNat_Struct {value!r}: RPPS-rang is the 11-digit RPPS and the rank")
    return IdNatStruct(value)
