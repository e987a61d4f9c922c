"""OperationOutcome builders and the one mapping from domain errors to HTTP statuses."""

from __future__ import annotations

import orjson
from starlette.responses import Response

from carnet.errors import (
    CarnetError,
    Conflict,
    Forbidden,
    Invalid,
    IssueCode,
    NotAllowed,
    NotFound,
    PreconditionFailed,
    Problem,
    TooLarge,
    Unauthenticated,
    UnsupportedMediaType,
)

FHIR_JSON = "application/fhir+json; charset=utf-8"


def status_of(error: CarnetError) -> int:
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, Forbidden):
        return 403
    if isinstance(error, Unauthenticated):
        return 401
    if isinstance(error, UnsupportedMediaType):
        return 415
    if isinstance(error, Invalid):
        return 422 if error.unprocessable else 400
    if isinstance(error, TooLarge):
        return 413
    if isinstance(error, Conflict):
        return 409
    if isinstance(error, PreconditionFailed):
        return 412
    if isinstance(error, NotAllowed):
        return 405
    return 500


def outcome(problems: list[Problem], severity: str = "error") -> dict[str, object]:
    issues = []
    for problem in problems:
        issue: dict[str, object] = {"severity": severity, "code": problem.code.value, "diagnostics": problem.message}
        if problem.expression:
            issue["expression"] = [problem.expression]
        issues.append(issue)
    return {"resourceType": "OperationOutcome", "issue": issues}


def outcome_response(
    status: int, problems: list[Problem], *, headers: dict[str, str] | None = None, severity: str = "error"
) -> Response:
    return Response(
        orjson.dumps(outcome(problems, severity)), status_code=status, media_type=FHIR_JSON, headers=headers
    )


def error_response(error: CarnetError) -> Response:
    status = status_of(error)
    headers = {"WWW-Authenticate": 'Bearer realm="carnet"'} if status == 401 else None
    if status == 405:
        headers = {"Allow": "GET, PATCH, DELETE"}
    return outcome_response(status, error.problems, headers=headers)


def information(message: str) -> dict[str, object]:
    return outcome([Problem(message, code=IssueCode.PROCESSING)], severity="information")
