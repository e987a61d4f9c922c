"""The habilitation matrix: which document types a profession (and specialty) may read.

A versioned data file (``data/matrice_habilitation.csv``, replaceable with CARNET_HABILITATION_MATRIX).
Rules are matched by profession (exact, ``R94:*`` for a family, ``*``), specialty and type; the most
specific matching rule wins (a specific type beats ``*``, then a specific specialty beats ``*``), a deny
beats an allow of the same specificity, and nothing matching means no access. The médecin traitant and
administrator professionals are not subject to it (the policy checks that, not this module).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from carnet.terminology import terminology

_MAX_ANSWERS = 100_000


_UNLISTED = "\x00unlisted"  # a type code no row names: what a profession reads of types the file does not list


@dataclass(frozen=True, slots=True)
class TypeFilter:
    """``include``: exactly ``codes``; otherwise every type but ``codes``."""

    include: bool
    codes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rule:
    profession: str
    specialty: str
    type_code: str
    allow: bool
    established: bool
    source: str

    def matches_profession(self, profession: str) -> bool:
        if self.profession == "*":
            return True
        if self.profession.endswith(":*"):
            return profession.startswith(self.profession[:-1])
        return self.profession == profession

    def specificity(self) -> tuple[int, int, int]:
        return (self.type_code != "*", self.specialty != "*", self.profession != "*" and ":*" not in self.profession)


class HabilitationMatrix:
    """Loaded rules, with per-(profession, specialty) answers computed once."""

    def __init__(self, rules: list[Rule], version: str) -> None:
        self.rules = rules
        self.version = version
        self._allowed: dict[tuple[str, str | None], frozenset[str]] = {}
        self._answers: dict[tuple[str, str | None, str], bool] = {}
        self._filters: dict[tuple[str, str | None], TypeFilter] = {}

    @classmethod
    def parse(cls, text: str) -> HabilitationMatrix:
        version = "unversioned"
        lines = []
        for line in text.splitlines():
            if line.startswith("#"):
                if line.lower().startswith("# version:"):
                    version = line.split(":", 1)[1].strip()
                continue
            lines.append(line)
        rules = []
        for number, row in enumerate(csv.DictReader(lines), start=2):
            effect = (row.get("effect") or "").strip()
            if effect not in ("allow", "deny"):
                raise ValueError(f"habilitation matrix row {number}: effect must be allow or deny")
            rules.append(
                Rule(
                    profession=row["profession"].strip(),
                    specialty=row["specialty"].strip() or "*",
                    type_code=row["type"].strip() or "*",
                    allow=effect == "allow",
                    established=row.get("status", "").strip() == "established",
                    source=row.get("source", ""),
                )
            )
        return cls(rules, version)

    def allows(self, profession: str, specialty: str | None, type_code: str) -> bool:
        """Whether this profession (and specialty) may read documents of this type (memoized)."""
        key = (profession, specialty, type_code)
        answer = self._answers.get(key)
        if answer is None:
            if len(self._answers) > _MAX_ANSWERS:  # bounded, whatever codes callers bring
                self._answers.clear()
            answer = self._answers[key] = self._evaluate(profession, specialty, type_code)
        return answer

    def _evaluate(self, profession: str, specialty: str | None, type_code: str) -> bool:
        best: tuple[int, int, int] | None = None
        allowed = False
        for rule in self.rules:
            if not rule.matches_profession(profession):
                continue
            if rule.specialty not in ("*", specialty) or rule.type_code not in ("*", type_code):
                continue
            rank = rule.specificity()
            if best is None or rank > best:
                best, allowed = rank, rule.allow
            elif rank == best and not rule.allow:
                allowed = False
        return allowed

    def type_filter(self, profession: str, specialty: str | None) -> TypeFilter:
        """The document types this profession may read, as the shorter of the two lists SQL can use.

        A profession whose rules allow an unlisted type (a ``*`` allow wins for any code the rows do
        not name) is described by the known types it may *not* read; otherwise by those it may.
        Either way the filter agrees with ``allows`` for every code, known or not.
        """
        key = (profession, specialty)
        cached = self._filters.get(key)
        if cached is None:
            known = set(terminology().type_codes.codes) | set(terminology().type_to_class)
            if self.allows(profession, specialty, _UNLISTED):
                cached = TypeFilter(False, tuple(sorted(c for c in known if not self.allows(profession, specialty, c))))
            else:
                cached = TypeFilter(True, tuple(sorted(self.allowed_types(profession, specialty))))
            self._filters[key] = cached
        return cached

    def allowed_types(self, profession: str, specialty: str | None) -> frozenset[str]:
        """Every DMP type code this profession may read (for SQL filters)."""
        key = (profession, specialty)
        cached = self._allowed.get(key)
        if cached is None:
            codes = set(terminology().type_codes.codes) | set(terminology().type_to_class)
            cached = frozenset(code for code in codes if self.allows(profession, specialty, code))
            self._allowed[key] = cached
        return cached


@cache
def _load(path: str | None) -> HabilitationMatrix:
    if path is None:
        text = resources.files("carnet.access").joinpath("data", "matrice_habilitation.csv").read_text("utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return HabilitationMatrix.parse(text)


def matrix(path: Path | None = None) -> HabilitationMatrix:
    """The matrix in force: the configured file, or the one shipped with Carnet."""
    return _load(str(path) if path is not None else None)
