"""The one gate to patient data: every read, search and write asks ``policy.decide``."""

from carnet.access.policy import Action, Decision, DocumentFacts, decide, document_visibility, require

__all__ = ["Action", "Decision", "DocumentFacts", "decide", "document_visibility", "require"]
