"""The ``carnet`` command line (Typer)."""

from carnet.cli.main import app, main

__all__ = ["app", "main"]
