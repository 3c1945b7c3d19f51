"""The project's hypothesis settings profiles: `bce-ci` (fast, the same every run) and `bce-nightly` (deep)."""
from __future__ import annotations

from hypothesis import HealthCheck, settings

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
SETTINGS = {
    "ci": settings(max_examples=50, derandomize=True, database=None, deadline=None,
                   suppress_health_check=_QUIET),  # a gate must not flicker
    "nightly": settings(max_examples=10_000, deadline=None, suppress_health_check=_QUIET),
}
"""The settings of `fuzz --profile ci|nightly`."""
PROFILES = {name: f"bce-{name}" for name in SETTINGS}
"""The names under which `register` gives them to hypothesis (pytest's `--hypothesis-profile bce-ci`)."""


def register() -> None:
    """Register the profiles with hypothesis; the pytest plugin and the project's tests call it, importing registers
    nothing."""
    for name, values in SETTINGS.items():
        settings.register_profile(PROFILES[name], values)
