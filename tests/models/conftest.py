"""One tiny base per test session, built in a temporary cache (never in the user's ~/.cache).

One torch thread is set for the whole suite in ``tests/conftest.py``."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def t2i_cache(t2ibench_cache):
    """The session's ``T2IBENCH_CACHE`` (tests/conftest.py)."""
    return t2ibench_cache


@pytest.fixture(scope="session")
def tiny_folder(t2i_cache):
    from t2ibench.models.loading import tiny_base_folder

    return tiny_base_folder()
