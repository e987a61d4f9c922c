"""DMP value sets shipped with Carnet: sizes, ASS_X16, code-system aliases, categories and format codes."""

from __future__ import annotations

import pytest

from carnet.terminology.valuesets import (
    CONFIDENTIALITY_FLAGS,
    CONFIDENTIALITY_LEVELS,
    HL7_CONFIDENTIALITY,
    IHE_FORMAT_CODES,
    LOINC,
    NOS,
    UNREFERENCED_CDA_FORMAT,
    Coding,
    Terminology,
    ValueSet,
    canonical_system,
    terminology,
)

A03 = f"{NOS}/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
A04 = f"{NOS}/TRE_A04-Loinc/FHIR/TRE-A04-Loinc"
A05 = f"{NOS}/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire"
A06 = f"{NOS}/TRE_A06-FormatCodeComplementaire/FHIR/TRE-A06-FormatCodeComplementaire"
A07 = f"{NOS}/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"
A08 = f"{NOS}/TRE_A08-HL7Confidentiality/FHIR/TRE-A08-HL7Confidentiality"
A11 = f"{NOS}/TRE_A11-IheFormatCode/FHIR/TRE-A11-IheFormatCode"
R02 = f"{NOS}/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite"
A01 = f"{NOS}/TRE_A01-CadreExercice/FHIR/TRE-A01-CadreExercice"
SNOMED = "http://snomed.info/sct"
T = terminology()


def test_terminology_is_loaded_once() -> None:
    assert terminology() is terminology()
    assert isinstance(T, Terminology)


@pytest.mark.parametrize(
    ("value_set", "size"),
    [
        (T.type_codes, 102),  # JDV_J66
        (T.class_codes, 12),  # JDV_J57
        (T.format_codes, 62),  # JDV_J60
        (T.practice_settings, 11),  # JDV_J62
        (T.confidentiality, 6),  # JDV_J58: N, R, V and the three visibility flags
    ],
    ids=["J66", "J57", "J60", "J62", "J58"],
)
def test_value_set_sizes(value_set: ValueSet, size: int) -> None:
    assert len(value_set) == size
    assert len(value_set.codes) == size


def test_ass_x16_has_103_rows() -> None:
    assert len(T.type_to_class) == 103


def test_value_set_oids() -> None:
    assert T.type_codes.oid == "1.2.250.1.213.1.1.5.7"
    assert T.class_codes.oid == "1.2.250.1.213.1.1.5.6"
    assert T.format_codes.oid == "1.2.250.1.213.1.1.5.8"
    assert T.practice_settings.oid == "1.2.250.1.213.1.1.5.4"


def test_only_format_codes_match_on_code_alone() -> None:
    assert T.format_codes.match_code_only is True
    assert T.type_codes.match_code_only is False
    assert T.class_codes.match_code_only is False
    assert T.confidentiality.match_code_only is False


# ---------------------------------------------------------------- ASS_X16 type → class


@pytest.mark.parametrize(
    ("type_code", "class_code"),
    [
        ("11488-4", "10"),  # CR de consultation → Compte rendu
        ("11502-2", "10"),  # CR d'examens biologiques
        ("18748-4", "31"),  # CR d'imagerie → Imagerie médicale
        ("60591-5", "11"),  # Synthèse du dossier médical
        ("11369-6", "52"),  # Historique des vaccinations → Certificat
        ("REMB", "60"),  # Données de remboursement
    ],
)
def test_expected_class(type_code: str, class_code: str) -> None:
    assert T.expected_class(type_code) == class_code


@pytest.mark.parametrize("type_code", ["99999-9", "", "remb", "11488-4 "])
def test_expected_class_of_an_unknown_type_is_none(type_code: str) -> None:
    assert T.expected_class(type_code) is None


def test_every_dmp_type_code_has_a_class_in_the_class_value_set() -> None:
    for code in T.type_codes.codes:
        assert T.expected_class(code) in T.class_codes, code


def test_class_coding() -> None:
    coding = T.class_coding("10")
    assert coding == Coding(A03, "10", "Compte rendu")
    assert T.class_coding("99") is None


# ---------------------------------------------------------------- lookup and code-system aliases


@pytest.mark.parametrize("system", [LOINC, "urn:oid:2.16.840.1.113883.6.1", "2.16.840.1.113883.6.1", A04])
def test_loinc_type_code_accepted_under_every_loinc_spelling(system: str) -> None:
    coding = T.type_codes.lookup(system, "11488-4")
    assert coding == Coding(LOINC, "11488-4", "CR ou fiche de consultation ou de visite")


@pytest.mark.parametrize("system", [SNOMED, A05, "urn:oid:1.2.250.1.213.1.1.4.12", None, ""])
def test_loinc_type_code_refused_under_another_system(system: str | None) -> None:
    assert T.type_codes.lookup(system, "11488-4") is None


@pytest.mark.parametrize("system", [A05, "urn:oid:1.2.250.1.213.1.1.4.12", "1.2.250.1.213.1.1.4.12"])
def test_ans_type_code_accepted_under_its_system(system: str) -> None:
    coding = T.type_codes.lookup(system, "REMB")
    assert coding is not None
    assert coding.system == A05
    assert coding.display == "Données de remboursement"


def test_ans_type_code_refused_under_loinc() -> None:
    assert T.type_codes.lookup(LOINC, "REMB") is None


@pytest.mark.parametrize("code", [None, "", "00000-0", "11488-4 "])
def test_lookup_of_a_missing_or_unknown_code_is_none(code: str | None) -> None:
    assert T.type_codes.lookup(LOINC, code) is None


@pytest.mark.parametrize(
    "system", [HL7_CONFIDENTIALITY, A08, "urn:oid:2.16.840.1.113883.5.25", "2.16.840.1.113883.5.25"]
)
def test_confidentiality_level_accepted_under_hl7_and_ans_systems(system: str) -> None:
    coding = T.confidentiality.lookup(system, "N")
    assert coding == Coding(HL7_CONFIDENTIALITY, "N", "Normal")


@pytest.mark.parametrize("system", [A07, "urn:oid:1.2.250.1.213.1.1.4.13"])
def test_visibility_flags_live_in_the_a07_system(system: str) -> None:
    for flag in CONFIDENTIALITY_FLAGS:
        coding = T.confidentiality.lookup(system, flag)
        assert coding is not None
        assert coding.system == A07
    assert T.confidentiality.lookup(system, "N") is None
    assert T.confidentiality.lookup(HL7_CONFIDENTIALITY, "MASQUE_PS") is None


def test_confidentiality_levels_and_flags_are_all_in_j58() -> None:
    assert set(CONFIDENTIALITY_LEVELS) | set(CONFIDENTIALITY_FLAGS) == set(T.confidentiality.codes)
    assert sorted(CONFIDENTIALITY_FLAGS.values()) == [1, 2, 4]  # one bit each


@pytest.mark.parametrize(
    "system", [IHE_FORMAT_CODES, A11, "urn:oid:1.3.6.1.4.1.19376.1.2.3", "1.3.6.1.4.1.19376.1.2.3", A06, None]
)
def test_format_codes_match_on_code_under_any_format_system(system: str | None) -> None:
    coding = T.format_codes.lookup(system, "urn:ihe:iti:xds-sd:pdf:2008")
    assert coding is not None
    assert coding.code == "urn:ihe:iti:xds-sd:pdf:2008"
    assert coding.system == A11


def test_ans_format_code_found_under_the_ihe_system() -> None:
    coding = T.format_codes.lookup(IHE_FORMAT_CODES, "urn:ans:ci-sis:bio-ep-bio:2022")
    assert coding is not None
    assert coding.system == A06


@pytest.mark.parametrize("system", [LOINC, SNOMED, "urn:oid:1.2.3"])
def test_format_codes_refused_under_a_non_format_system(system: str) -> None:
    assert T.format_codes.lookup(system, "urn:ihe:iti:xds-sd:pdf:2008") is None


def test_unknown_format_code_is_refused_even_under_the_ihe_system() -> None:
    assert T.format_codes.lookup(IHE_FORMAT_CODES, "urn:ihe:iti:xds-sd:gif:2010") is None


@pytest.mark.parametrize(
    ("value_set", "system", "code"),
    [
        (T.practice_settings, A01, "AMBULATOIRE"),
        (T.practice_settings, "urn:oid:1.2.250.1.213.1.1.4.9", "ETABLISSEMENT"),
        (T.practice_settings, "1.2.250.1.213.1.1.4.6", "EXP_PATIENT"),
        (T.facility_types, R02, "SA07"),
        (T.facility_types, "1.2.250.1.71.4.2.4", "SA25"),
        (T.class_codes, "urn:oid:1.2.250.1.213.1.1.4.1", "31"),
    ],
)
def test_cda_code_systems_are_accepted_as_bare_oids(value_set: ValueSet, system: str, code: str) -> None:
    assert value_set.lookup(system, code) is not None


def test_practice_setting_under_the_wrong_ans_table_is_refused() -> None:
    assert T.practice_settings.lookup(R02, "AMBULATOIRE") is None


@pytest.mark.parametrize(
    ("system", "canonical"),
    [
        (None, None),
        (LOINC, LOINC),
        ("urn:oid:2.16.840.1.113883.6.1", LOINC),
        (" 2.16.840.1.113883.6.1 ", LOINC),
        (A04, LOINC),
        ("urn:oid:2.16.840.1.113883.5.25", HL7_CONFIDENTIALITY),
        (IHE_FORMAT_CODES, A11),
        (SNOMED, SNOMED),  # unknown systems pass through
        ("1.2.3.4", "urn:oid:1.2.3.4"),
        ("", ""),
    ],
)
def test_canonical_system(system: str | None, canonical: str | None) -> None:
    assert canonical_system(system) == canonical


def test_contains_checks_codes() -> None:
    assert "11488-4" in T.type_codes
    assert "REMB" in T.type_codes
    assert "XXXX" not in T.type_codes
    assert 10 not in T.class_codes


# ---------------------------------------------------------------- patient categories


@pytest.mark.parametrize(
    ("type_code", "class_code", "category"),
    [
        ("11502-2", "10", "BIOLOGIE"),  # the type decides before the class
        ("DOCPAT05", "10", "BIOLOGIE"),
        ("75492-9", "10", "DEPISTAG"),
        ("87273-9", "52", "CAR_VAC"),
        ("EXPPAT_3", "90", "DIR_ANT"),
        ("DOCPAT08", "11", "SYNTH_PML"),
        ("REMB", "60", "REMB"),
        ("11488-4", "10", "CPT_REND"),
        ("60591-5", "11", "SYNTHESE"),
        ("18748-4", "31", "RADIO_SC"),
        ("57833-6", "42", "ORD_SOIN"),
        ("X", "43", "ORD_SOIN"),
        ("X", "44", "ORD_SOIN"),
        ("X", "45", "ORD_SOIN"),
        ("X", "52", "CERT_MED"),
        ("X", "60", "REMB"),
        ("X", "90", "AUTR_DOC"),
        ("X", "95", "DOC_ADM"),
        ("X", "99", "AUTR_DOC"),
        ("", "", "AUTR_DOC"),
    ],
)
def test_patient_category(type_code: str, class_code: str, category: str) -> None:
    assert T.patient_category(type_code, class_code) == category


def test_every_dmp_type_has_a_patient_category_from_its_class() -> None:
    known = {"BIOLOGIE", "DEPISTAG", "CAR_VAC", "DIR_ANT", "SYNTH_PML", "REMB"}
    known |= {"CPT_REND", "SYNTHESE", "RADIO_SC", "ORD_SOIN", "CERT_MED", "AUTR_DOC", "DOC_ADM"}
    for code in T.type_codes.codes:
        class_code = T.expected_class(code)
        assert class_code is not None
        assert T.patient_category(code, class_code) in known


# ---------------------------------------------------------------- format codes of structured CDA


@pytest.mark.parametrize(
    ("templates", "format_code"),
    [
        (["1.2.250.1.213.1.1.1.55"], "urn:ihe:lab:xd-lab:2008"),
        (["1.3.6.1.4.1.19376.1.3.3"], "urn:ihe:lab:xd-lab:2008"),
        (["2.16.840.1.113883.2.8.2.1", "1.2.250.1.213.1.1.1.1", "1.2.250.1.213.1.1.1.37"], "urn:asip:ci-sis:vac:2019"),
        (["1.2.250.1.213.1.1.1.13"], "urn:asip:ci-sis:vsm:2012"),
        (["1.2.250.1.213.1.1.1.59"], "urn:ans:ci-sis:trod:2024"),
        (["1.3.6.1.4.1.19376.1.9.1.1.1"], "urn:ihe:pharm:pre:2010"),
        (["1.2.250.1.213.1.1.1.13", "1.2.250.1.213.1.1.1.55"], "urn:asip:ci-sis:vsm:2012"),  # first match wins
        (["2.16.840.1.113883.2.8.2.1", "1.2.250.1.213.1.1.1.1"], UNREFERENCED_CDA_FORMAT),
        ([], UNREFERENCED_CDA_FORMAT),
    ],
)
def test_format_for_templates(templates: list[str], format_code: str) -> None:
    assert T.format_for_templates(templates) == format_code


def test_template_format_codes_are_dmp_format_codes() -> None:
    assert UNREFERENCED_CDA_FORMAT == "urn:asipSante:modelesHorsProfils:2011"
    for code in {*T.template_formats.values(), UNREFERENCED_CDA_FORMAT}:
        assert code in T.format_codes, code


# ---------------------------------------------------------------- professions


def test_profession_status() -> None:
    assert T.is_active_profession("10")  # Médecin
    assert T.is_active_profession("21")  # Pharmacien
    assert not T.is_active_profession("35")  # deprecated
    assert not T.is_active_profession("93")
    assert not T.is_active_profession("00")
