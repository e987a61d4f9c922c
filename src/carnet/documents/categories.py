"""The categories a patient sees their documents under (Mon espace santé, reference/dmp.md §6.2).

Mon espace santé shows documents in nine categories, not by DMP class. The table below maps every
DMP type code (JDV_J66) to one of them: first by type (the exceptions), otherwise by the class
ASS_X16 assigns to the type (JDV_J57). The mapping is Carnet's reading of the reference (the real
one is server-side in Mon espace santé and not published); it is the one table both portals use.

================  ===============================  ==========================================================
category          label                            what falls in it
================  ===============================  ==========================================================
SYNTHESE          Ma santé en résumé               class 11 (synthèses, VSM, profil médical DOCPAT08, document
                                                   de liaison d'urgence …)
ORD_SOIN          Ordonnances et soins             classes 42 (prescriptions), 43 (dispensations), 44 (plans
                                                   et protocoles de soins), 45 (traitements administrés)
RADIO_SC          Radio, écho, scanner, IRM        class 31 (imagerie)
BIOLOGIE          Résultats de biologie            types 11502-2 (CR de biologie), 60568-3 (anatomo-pathologie),
                                                   51969-4 (génétique moléculaire), 96173-0 (TROD), DOCPAT05
DEPISTAG          Prévention et dépistages         types 75492-9, 75482-0 (actes de dépistage, de prévention),
                                                   11369-6, 87273-9 (vaccinations), 68817-6 (bilan de
                                                   prévention de l'enfant), 83869-8 (plan personnalisé de
                                                   prévention), DOCPAT06
CPT_REND          Comptes rendus                   class 10 (comptes rendus) except the types above
CERT_MED          Certificats                      class 52 (certificats, déclarations) except vaccinations
DOC_ADM           Pièces administratives           class 95 (documents de gestion, attestations)
AUTR_DOC          Autres                           classes 60 (remboursements), 90 (documents du patient:
                                                   directives anticipées, volontés …) and anything unknown
================  ===============================  ==========================================================

A patient's own upload is typed by the category they choose (``UPLOAD_TYPES``): the DMP's
patient-expression types, one per category (``DOCPAT01`` … ``DOCPAT09``, ``EXPPAT_2``).
"""

from __future__ import annotations

import enum
import functools

from carnet.terminology import terminology


class Category(enum.StrEnum):
    SYNTHESE = "SYNTHESE"
    ORD_SOIN = "ORD_SOIN"
    RADIO_SC = "RADIO_SC"
    BIOLOGIE = "BIOLOGIE"
    DEPISTAG = "DEPISTAG"
    CPT_REND = "CPT_REND"
    CERT_MED = "CERT_MED"
    DOC_ADM = "DOC_ADM"
    AUTR_DOC = "AUTR_DOC"


# The labels of Mon espace santé (French; the portals translate them).
LABELS: dict[Category, str] = {
    Category.SYNTHESE: "Ma santé en résumé",
    Category.ORD_SOIN: "Ordonnances et soins",
    Category.RADIO_SC: "Radio, écho, scanner, IRM",
    Category.BIOLOGIE: "Résultats de biologie",
    Category.CPT_REND: "Comptes rendus",
    Category.DEPISTAG: "Prévention et dépistages",
    Category.CERT_MED: "Certificats",
    Category.DOC_ADM: "Pièces administratives",
    Category.AUTR_DOC: "Autres",
}

BY_TYPE: dict[str, Category] = {
    "11502-2": Category.BIOLOGIE,
    "60568-3": Category.BIOLOGIE,
    "51969-4": Category.BIOLOGIE,
    "96173-0": Category.BIOLOGIE,
    "DOCPAT05": Category.BIOLOGIE,
    "75492-9": Category.DEPISTAG,
    "75482-0": Category.DEPISTAG,
    "11369-6": Category.DEPISTAG,
    "87273-9": Category.DEPISTAG,
    "68817-6": Category.DEPISTAG,
    "83869-8": Category.DEPISTAG,
    "DOCPAT06": Category.DEPISTAG,
}

BY_CLASS: dict[str, Category] = {
    "10": Category.CPT_REND,
    "11": Category.SYNTHESE,
    "31": Category.RADIO_SC,
    "42": Category.ORD_SOIN,
    "43": Category.ORD_SOIN,
    "44": Category.ORD_SOIN,
    "45": Category.ORD_SOIN,
    "52": Category.CERT_MED,
    "60": Category.AUTR_DOC,
    "90": Category.AUTR_DOC,
    "95": Category.DOC_ADM,
}

# The patient-expression type a patient's upload takes, by the category they chose.
UPLOAD_TYPES: dict[Category, str] = {
    Category.SYNTHESE: "DOCPAT01",
    Category.ORD_SOIN: "DOCPAT02",
    Category.CPT_REND: "DOCPAT03",
    Category.RADIO_SC: "DOCPAT04",
    Category.BIOLOGIE: "DOCPAT05",
    Category.DEPISTAG: "DOCPAT06",
    Category.CERT_MED: "DOCPAT07",
    Category.DOC_ADM: "DOCPAT09",
    Category.AUTR_DOC: "EXPPAT_2",
}


def category_of(type_code: str, class_code: str | None = None) -> Category:
    """The category a document of this type (and class) is shown under."""
    found = BY_TYPE.get(type_code)
    if found is not None:
        return found
    klass = class_code or terminology().expected_class(type_code)
    return BY_CLASS.get(klass or "", Category.AUTR_DOC)


@functools.cache
def type_codes(category: Category) -> frozenset[str]:
    """Every DMP type code (JDV_J66) shown under ``category``: what a category filter searches for."""
    return frozenset(code for code in terminology().type_codes.codes if category_of(code) is category)


def parse(value: str | None) -> Category | None:
    """A category from a form value, or None (unknown values are ignored)."""
    try:
        return Category(value) if value else None
    except ValueError:
        return None
