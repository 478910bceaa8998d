"""Shared fixtures: a private cache with the tiny base, a small procedural dataset, fresh copies
of the loaded tiny base."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="session")
def tiny_base(adapters_cache: Path) -> Callable[[], Any]:
    """``tiny_base()``: a fresh tiny SD1.5-like pipeline (random weights, real CLIP tokenizer),
    fp32 on CPU, equal to ``load_base("tiny")``. The base is loaded once through ``load_base``;
    each call deep-copies it (0.1 s of CPU instead of 0.5 s, most of a load being the
    tokenizer's JSON), sharing the tokenizer, which no adapter test changes."""
    from t2ibench.models import load_base

    loaded = load_base("tiny")

    def fresh() -> Any:
        return copy.deepcopy(loaded, {id(loaded.tokenizer): loaded.tokenizer})

    return fresh


@pytest.fixture()
def tiny_pipe(tiny_base: Callable[[], Any]):
    """A fresh tiny SD1.5-like pipeline (random weights, real CLIP tokenizer), fp32 on CPU."""
    return tiny_base()
