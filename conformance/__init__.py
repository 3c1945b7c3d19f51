"""Conformance harness for binary cross-entropy losses: cases, backends, comparison and reports."""
from .adapter import Availability, Backend, GradientBackend, Rejected, Unsupported

__all__ = ["Availability", "Backend", "GradientBackend", "Rejected", "Unsupported"]
