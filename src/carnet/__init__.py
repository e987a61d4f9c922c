"""Carnet: a patient-controlled shared health record."""

__version__ = "0.1.0"
