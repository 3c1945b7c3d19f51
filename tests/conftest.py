from __future__ import annotations

import pytest

from conformance.loader import load_cases

pytest_plugins = ["pytester"]  # tests/test_pytest_plugin.py runs pytest sessions of its own


@pytest.fixture(scope="session")
def shipped_cases():
    return load_cases()


def pytest_configure(config):
    """The property tests use the fast, derandomised profile unless --hypothesis-profile names another."""
    import conformance.fuzz  # registers the bce-ci and bce-nightly profiles  # noqa: F401
    from hypothesis import settings

    if config.getoption("hypothesis_profile", None) is None:
        settings.load_profile("bce-ci")
