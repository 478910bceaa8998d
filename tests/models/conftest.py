"""One tiny base per test session, built in a temporary cache (never in the user's ~/.cache).

One torch thread is set for the whole suite in ``tests/conftest.py``."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def t2i_cache(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("t2ibench-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("T2IBENCH_CACHE", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="session")
def tiny_folder(t2i_cache):
    from t2ibench.models.loading import tiny_base_folder

    return tiny_base_folder()
