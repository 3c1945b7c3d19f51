from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from conformance import profiles
from conformance.loader import load_cases

pytest_plugins = ["pytester"]  # tests/test_pytest_plugin.py runs pytest sessions of its own

ROOT = Path(__file__).resolve().parent.parent
SHARED_CACHE = "bce_reference_cache"
"""The key of the session's reference cache directory in an xdist worker's `workerinput`."""


@pytest.fixture(scope="session", autouse=True)
def _in_the_repository():
    """Paths the tests name (cases/document.yaml) are the repository's, wherever pytest was started from
    (session scope: before any module's fixtures)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        yield


@pytest.fixture(scope="session")
def shipped_cases():
    return load_cases()


@pytest.hookimpl(tryfirst=True)  # before hypothesis's plugin loads a --hypothesis-profile
def pytest_configure(config):
    """The property tests use the fast, derandomised profile unless --hypothesis-profile names another; the
    reference cache lives in a temporary directory, never the user's: one for the session, which the xdist
    workers share (each reference is computed once, whichever worker needs it first), removed at the end."""
    from hypothesis import settings

    from conformance.cache import ENV

    worker = getattr(config, "workerinput", None)
    if worker is None:  # the controller, or a session without xdist
        config.reference_cache = os.environ[ENV] = tempfile.mkdtemp(prefix="bce-cache-")
    else:
        os.environ[ENV] = worker[SHARED_CACHE]
    profiles.register()
    if config.getoption("hypothesis_profile", None) is None:
        settings.load_profile(profiles.PROFILES["ci"])


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """pytest-xdist, in the controller: hand each worker the session's reference cache directory."""
    node.workerinput[SHARED_CACHE] = node.config.reference_cache


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "reference_cache", ""), ignore_errors=True)  # the controller's: after the workers
