"""One router per FHIR resource type (plus the transaction endpoint and the capability statement)."""
