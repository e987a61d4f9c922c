"""Load the DMP value sets shipped in ``data/`` and answer membership questions.

A value set knows which code-system URIs (and their ``urn:oid:`` forms, as found in CDA and XDS)
mean the same code system, so ``http://loinc.org``, ``urn:oid:2.16.840.1.113883.6.1`` and the ANS
``TRE_A04-Loinc`` URI are accepted alike for a LOINC type code.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

NOS = "https://mos.esante.gouv.fr/NOS"
LOINC = "http://loinc.org"
HL7_CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
IHE_FORMAT_CODES = "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode"

# Code system aliases: every accepted spelling of a system → its canonical URI.
_SYSTEM_ALIASES: dict[str, list[str]] = {
    LOINC: ["urn:oid:2.16.840.1.113883.6.1", f"{NOS}/TRE_A04-Loinc/FHIR/TRE-A04-Loinc"],
    f"{NOS}/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire": ["urn:oid:1.2.250.1.213.1.1.4.12"],
    f"{NOS}/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument": ["urn:oid:1.2.250.1.213.1.1.4.1"],
    f"{NOS}/TRE_A10-NomenclatureURN/FHIR/TRE-A10-NomenclatureURN": [],
    f"{NOS}/TRE_A12-NomenclatureASTM/FHIR/TRE-A12-NomenclatureASTM": ["urn:oid:1.2.250.1.213.1.1.4.14"],
    HL7_CONFIDENTIALITY: [
        "urn:oid:2.16.840.1.113883.5.25",
        f"{NOS}/TRE_A08-HL7Confidentiality/FHIR/TRE-A08-HL7Confidentiality",
    ],
    f"{NOS}/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument": ["urn:oid:1.2.250.1.213.1.1.4.13"],
    f"{NOS}/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite": ["urn:oid:1.2.250.1.71.4.2.4"],
    f"{NOS}/TRE_A00-ProducteurDocNonPS/FHIR/TRE-A00-ProducteurDocNonPS": ["urn:oid:1.2.250.1.213.1.1.4.6"],
    f"{NOS}/TRE_A01-CadreExercice/FHIR/TRE-A01-CadreExercice": ["urn:oid:1.2.250.1.213.1.1.4.9"],
    f"{NOS}/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante": ["urn:oid:1.2.250.1.71.1.2.7"],
    f"{NOS}/TRE_R01-EnsembleSavoirFaire-CISIS/FHIR/TRE-R01-EnsembleSavoirFaire-CISIS": ["urn:oid:1.2.250.1.71.1.2.8"],
    # Format codes are globally unique URNs; the IHE format-code system and the ANS tables all carry them.
    f"{NOS}/TRE_A06-FormatCodeComplementaire/FHIR/TRE-A06-FormatCodeComplementaire": [
        "urn:oid:1.2.250.1.213.1.1.4.2.282"
    ],
    f"{NOS}/TRE_A11-IheFormatCode/FHIR/TRE-A11-IheFormatCode": [
        IHE_FORMAT_CODES,
        "urn:oid:1.3.6.1.4.1.19376.1.2.3",
    ],
    f"{NOS}/TRE_A09-DICOMuidRegistry/FHIR/TRE-A09-DICOMuidRegistry": ["urn:oid:1.2.840.10008.2.6.1"],
}
FORMAT_SYSTEMS = frozenset(
    f"{NOS}/{name}"
    for name in (
        "TRE_A06-FormatCodeComplementaire/FHIR/TRE-A06-FormatCodeComplementaire",
        "TRE_A11-IheFormatCode/FHIR/TRE-A11-IheFormatCode",
        "TRE_A09-DICOMuidRegistry/FHIR/TRE-A09-DICOMuidRegistry",
        "TRE_A10-NomenclatureURN/FHIR/TRE-A10-NomenclatureURN",
    )
)
_CANONICAL: dict[str, str] = {}
for _canonical, _aliases in _SYSTEM_ALIASES.items():
    _CANONICAL[_canonical] = _canonical
    for _alias in _aliases:
        _CANONICAL[_alias] = _canonical


def canonical_system(system: str | None) -> str | None:
    """The canonical URI of a code system given in any accepted spelling (URI, urn:oid:, bare OID)."""
    if system is None:
        return None
    system = system.strip()
    if system and system[0].isdigit():  # a bare OID, as CDA codeSystem attributes carry
        system = f"urn:oid:{system}"
    return _CANONICAL.get(system, system)


@dataclass(frozen=True, slots=True)
class Coding:
    system: str
    code: str
    display: str


@dataclass(slots=True)
class ValueSet:
    """A DMP value set: codes with their canonical system and display."""

    name: str
    oid: str | None
    codes: dict[str, Coding] = field(default_factory=dict)
    # Format codes are unique URNs and their system varies between publishers: match on code only.
    match_code_only: bool = False

    def lookup(self, system: str | None, code: str | None) -> Coding | None:
        if not code:
            return None
        coding = self.codes.get(code)
        if coding is None:
            return None
        if self.match_code_only and (system is None or canonical_system(system) in FORMAT_SYSTEMS):
            return coding
        return coding if canonical_system(system) == coding.system else None

    def __contains__(self, code: object) -> bool:
        return code in self.codes

    def __len__(self) -> int:
        return len(self.codes)


def _read_csv(filename: str) -> list[dict[str, str]]:
    text = resources.files("carnet.terminology").joinpath("data", filename).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def _load(name: str, filename: str, oid: str | None, *, match_code_only: bool = False) -> ValueSet:
    vs = ValueSet(name, oid, match_code_only=match_code_only)
    for row in _read_csv(filename):
        system = canonical_system(row["system"]) or row["system"]
        vs.codes[row["code"]] = Coding(system, row["code"], row["display"])
    return vs


UNREFERENCED_CDA_FORMAT = "urn:asipSante:modelesHorsProfils:2011"

# Confidentiality flags that are not the N/R/V level: each is one bit of the index bitmask.
CONFIDENTIALITY_FLAGS: dict[str, int] = {
    "MASQUE_PS": 1,
    "INVISIBLE_PATIENT": 2,
    "INVISIBLE_REPRESENTANTS_LEGAUX": 4,
}
CONFIDENTIALITY_LEVELS = ("N", "R", "V")

# MES patient-facing categories (reference/dmp.md §2.4 and G6): type first, then class.
_CATEGORY_BY_TYPE = {
    "11502-2": "BIOLOGIE",
    "60568-3": "BIOLOGIE",
    "96173-0": "BIOLOGIE",
    "DOCPAT05": "BIOLOGIE",
    "75492-9": "DEPISTAG",
    "75482-0": "DEPISTAG",
    "DOCPAT06": "DEPISTAG",
    "11369-6": "CAR_VAC",
    "87273-9": "CAR_VAC",
    "96874-3": "CAR_VAC",
    "EXPPAT_3": "DIR_ANT",
    "DOCPAT08": "SYNTH_PML",
    "REMB": "REMB",
}
_CATEGORY_BY_CLASS = {
    "10": "CPT_REND",
    "11": "SYNTHESE",
    "31": "RADIO_SC",
    "42": "ORD_SOIN",
    "43": "ORD_SOIN",
    "44": "ORD_SOIN",
    "45": "ORD_SOIN",
    "52": "CERT_MED",
    "60": "REMB",
    "90": "AUTR_DOC",
    "95": "DOC_ADM",
}


class Terminology:
    """Every value set Carnet validates against, loaded once from the package data."""

    def __init__(self) -> None:
        self.type_codes = _load("JDV_J66_TypeCode_DMP", "JDV_J66_TypeCode_DMP.csv", "1.2.250.1.213.1.1.5.7")
        self.class_codes = _load("JDV_J57_ClassCode_DMP", "JDV_J57_ClassCode_DMP.csv", "1.2.250.1.213.1.1.5.6")
        self.confidentiality = _load(
            "JDV_J58_ConfidentialityCode_DMP", "JDV_J58_ConfidentialityCode_DMP.csv", "1.2.250.1.213.1.1.5.9"
        )
        self.format_codes = _load(
            "JDV_J60_FormatCode_DMP", "JDV_J60_FormatCode_DMP.csv", "1.2.250.1.213.1.1.5.8", match_code_only=True
        )
        self.facility_types = _load(
            "JDV_J61_HealthcareFacilityTypeCode_DMP", "JDV_J61_HealthcareFacilityTypeCode_DMP.reconstructed.csv", None
        )
        self.practice_settings = _load(
            "JDV_J62_PracticeSettingCode_DMP", "JDV_J62_PracticeSettingCode_DMP.csv", "1.2.250.1.213.1.1.5.4"
        )
        self.content_types = _load(
            "JDV_J59_ContentTypeCode_DMP", "JDV_J59_ContentTypeCode_DMP.csv", "1.2.250.1.213.1.1.5.2"
        )
        self.author_specialties = _load("JDV_J56_AuthorSpecialty_DMP", "JDV_J56_AuthorSpecialty_DMP.csv", None)
        self.professions = _load("TRE_G15_ProfessionSante", "TRE_G15_ProfessionSante.csv", "1.2.250.1.71.1.2.7")
        self.specialties = _load("TRE_R01_EnsembleSavoirFaire", "TRE_R01_EnsembleSavoirFaire_CISIS.subset.csv", None)
        self.social_professions = ValueSet("TRE_R94_ProfessionSocial", None)
        r94 = f"{NOS}/TRE_R94-ProfessionSocial/FHIR/TRE-R94-ProfessionSocial"
        for row in _read_csv("JDV_J65_SubjectRole_DMP.csv"):
            if row["system"] == r94:
                self.social_professions.codes[row["code"]] = Coding(r94, row["code"], row["display"])
        self.profession_status = {r["code"]: r["status"] for r in _read_csv("TRE_G15_ProfessionSante_status.csv")}
        self.template_formats = {
            r["template_root"]: r["format_code"] for r in _read_csv("ASS_A11_template_to_format.partial.csv")
        }
        self.type_to_class: dict[str, str] = {}
        for row in _read_csv("ASS_X16_type_to_class_DMP.csv"):
            self.type_to_class[row["type_code"]] = row["class_code"]

    def expected_class(self, type_code: str) -> str | None:
        """The class ASS_X16 assigns to a type code."""
        return self.type_to_class.get(type_code)

    def format_for_templates(self, template_roots: list[str]) -> str:
        """The format code of a structured CDA from its templateIds (partial ASS_A11, then the generic code)."""
        for root in template_roots:
            if root in self.template_formats:
                return self.template_formats[root]
        return UNREFERENCED_CDA_FORMAT

    def class_coding(self, class_code: str) -> Coding | None:
        return self.class_codes.codes.get(class_code)

    def patient_category(self, type_code: str, class_code: str) -> str:
        """The Mon espace santé category a document is shown under."""
        return _CATEGORY_BY_TYPE.get(type_code) or _CATEGORY_BY_CLASS.get(class_code, "AUTR_DOC")

    def is_active_profession(self, code: str) -> bool:
        return self.profession_status.get(code) == "active"


@cache
def terminology() -> Terminology:
    """The loaded value sets (read from the package once per process)."""
    return Terminology()
