"""Shared fixtures: a private cache with the tiny base, a small procedural dataset."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def adapters_cache(t2ibench_cache: Path):
    """``T2IBENCH_CACHE``: the session's folder (tests/conftest.py; the tiny base is built there
    once)."""
    return t2ibench_cache


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory: pytest.TempPathFactory):
    from t2ibench.data import load_dataset, make_demo_dataset

    root = make_demo_dataset(tmp_path_factory.mktemp("demo") / "ds", size=64, seed=0)
    return load_dataset(root)


@pytest.fixture()
def tiny_pipe(adapters_cache: Path):
    """A fresh tiny SD1.5-like pipeline (random weights, real CLIP tokenizer), fp32 on CPU."""
    from t2ibench.models import load_base

    return load_base("tiny")
