"""Demo data: named personas and realistic documents, loaded idempotently by ``carnet demo``."""
