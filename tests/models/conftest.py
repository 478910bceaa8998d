"""One tiny base per test session, built in a temporary cache (never in the user's ~/.cache)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run ~10× faster on one thread when the 2 shared cores are busy."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
