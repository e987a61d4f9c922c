"""Domain errors. No HTTP here: ``fhir/outcomes.py`` maps them to OperationOutcomes and statuses.

Hierarchy::

    CarnetError
    ├── NotFound            the resource does not exist *or* the caller may not know it exists (404)
    ├── Forbidden           the caller knows the resource exists but may not do this (403)
    ├── Unauthenticated     no valid credentials (401)
    ├── Invalid             bad input; carries one Problem per fault (400 / 422)
    │   └── UnsupportedMediaType   content is not one of the accepted media types (415)
    ├── TooLarge            content over the configured limit (413)
    ├── Conflict            clashes with the current state, e.g. a duplicate uniqueId (409)
    ├── PreconditionFailed  If-Match / conditional operation did not hold (412)
    └── NotAllowed          the operation does not exist for this element or resource (405)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class IssueCode(enum.StrEnum):
    """FHIR ``IssueType`` codes used by Carnet."""

    INVALID = "invalid"
    STRUCTURE = "structure"
    REQUIRED = "required"
    VALUE = "value"
    INVARIANT = "invariant"
    SECURITY = "security"
    LOGIN = "login"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not-found"
    NOT_SUPPORTED = "not-supported"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    TOO_LONG = "too-long"
    CODE_INVALID = "code-invalid"
    BUSINESS_RULE = "business-rule"
    PROCESSING = "processing"
    EXCEPTION = "exception"


@dataclass(frozen=True, slots=True)
class Problem:
    """One fault in the input, located by a FHIRPath expression when it concerns an element."""

    message: str
    expression: str | None = None
    code: IssueCode = IssueCode.INVALID


class CarnetError(Exception):
    """Base of every error Carnet raises on purpose."""

    default_code = IssueCode.PROCESSING

    def __init__(self, message: str, *, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or [Problem(message, code=self.default_code)]


class NotFound(CarnetError):
    """Missing, or not visible to the caller: the two must look the same."""

    default_code = IssueCode.NOT_FOUND

    def __init__(self, message: str = "Resource not found") -> None:
        super().__init__(message)


class Forbidden(CarnetError):
    default_code = IssueCode.FORBIDDEN


class Unauthenticated(CarnetError):
    default_code = IssueCode.LOGIN


_UNPROCESSABLE = frozenset({IssueCode.BUSINESS_RULE, IssueCode.CODE_INVALID, IssueCode.INVARIANT})


class Invalid(CarnetError):
    """Bad input. ``unprocessable`` marks a well-formed request that breaks a business rule (422)."""

    default_code = IssueCode.INVALID

    def __init__(self, message: str, *, problems: list[Problem] | None = None, unprocessable: bool = False) -> None:
        super().__init__(message, problems=problems)
        self.unprocessable = unprocessable

    @classmethod
    def at(cls, expression: str, message: str, code: IssueCode = IssueCode.INVALID) -> Invalid:
        """One fault at one element. Business-rule and terminology faults are 422, the others 400."""
        return cls(message, problems=[Problem(message, expression, code)], unprocessable=code in _UNPROCESSABLE)


class UnsupportedMediaType(Invalid):
    default_code = IssueCode.NOT_SUPPORTED


class TooLarge(CarnetError):
    default_code = IssueCode.TOO_LONG


class Conflict(CarnetError):
    default_code = IssueCode.CONFLICT


class PreconditionFailed(CarnetError):
    default_code = IssueCode.CONFLICT


class NotAllowed(CarnetError):
    default_code = IssueCode.NOT_SUPPORTED
