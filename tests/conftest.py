from __future__ import annotations

import pytest

from conformance.loader import load_cases


@pytest.fixture(scope="session")
def shipped_cases():
    return load_cases()
