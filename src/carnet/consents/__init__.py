"""Patient decisions (authorizations, blocks, emergency and confidentiality preferences) and
professionals' declarations (care team, médecin traitant), as FHIR Consent resources."""
