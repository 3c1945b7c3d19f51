"""Conformance harness for binary cross-entropy losses: cases, backends, comparison and reports.

The public API (docs/api.md): `run` the suite on backends, `load_cases` to choose cases, the records it
returns (`Run`, `Result`, `Status`, `BackendInfo`), and the adapter types a backend implements.
"""
from .adapter import Availability, Backend, GradientBackend, Rejected, Unsupported
from .api import entries, run
from .case import Case
from .isolation import Settings
from .loader import load_cases
from .registry import Entry
from .results import BackendInfo, Result, Run, Status

__all__ = ["Availability", "Backend", "BackendInfo", "Case", "Entry", "GradientBackend", "Rejected", "Result", "Run",
           "Settings", "Status", "Unsupported", "entries", "load_cases", "run"]
