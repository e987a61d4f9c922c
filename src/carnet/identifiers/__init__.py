"""National identifiers: INS (patients), IdNat_PS and RPPS (professionals), IdNat_Struct (structures)."""

from carnet.identifiers.ins import (
    INS_NIA_OID,
    INS_NIR_DEMO_OID,
    INS_NIR_OID,
    INS_NIR_TEST_OID,
    INS_OIDS,
    IdentifierError,
    IdentityStatus,
    Ins,
    InsKind,
    nir_key,
    parse_ins,
)
from carnet.identifiers.professionals import (
    IDNAT_PS_OID,
    IDNAT_STRUCT_OID,
    IdNatPs,
    IdNatStruct,
    luhn_valid,
    parse_idnat_ps,
    parse_idnat_struct,
    validate_rpps,
)

__all__ = [
    "IDNAT_PS_OID",
    "IDNAT_STRUCT_OID",
    "INS_NIA_OID",
    "INS_NIR_DEMO_OID",
    "INS_NIR_OID",
    "INS_NIR_TEST_OID",
    "INS_OIDS",
    "IdNatPs",
    "IdNatStruct",
    "IdentifierError",
    "IdentityStatus",
    "Ins",
    "InsKind",
    "luhn_valid",
    "nir_key",
    "parse_idnat_ps",
    "parse_idnat_struct",
    "parse_ins",
    "validate_rpps",
]
