"""Terminology: the DMP value sets as data files, and the rules that join them (type → class)."""

from carnet.terminology.valuesets import (
    CONFIDENTIALITY_FLAGS,
    Coding,
    Terminology,
    ValueSet,
    terminology,
)

__all__ = ["CONFIDENTIALITY_FLAGS", "Coding", "Terminology", "ValueSet", "terminology"]
