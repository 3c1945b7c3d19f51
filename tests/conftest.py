from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from conformance.loader import load_cases

pytest_plugins = ["pytester"]  # tests/test_pytest_plugin.py runs pytest sessions of its own


@pytest.fixture(scope="session")
def shipped_cases():
    return load_cases()


def pytest_configure(config):
    """The property tests use the fast, derandomised profile unless --hypothesis-profile names another; the
    reference cache lives in a temporary directory, never the user's (removed at the end)."""
    from hypothesis import settings

    import conformance.fuzz  # registers the bce-ci and bce-nightly profiles  # noqa: F401
    from conformance.cache import ENV

    config.reference_cache = os.environ[ENV] = tempfile.mkdtemp(prefix="bce-cache-")

    if config.getoption("hypothesis_profile", None) is None:
        settings.load_profile("bce-ci")


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "reference_cache", ""), ignore_errors=True)
