"""The FHIR R4 REST interface (IHE MHD / ANS PDSm): parsing, mapping and routing only, no business rule."""
