"""Shared fixtures: tiny encoders built once per session into a temporary cache, small test images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from encoders_testutil import noise_image
from PIL import Image


@pytest.fixture(scope="session", autouse=True)
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny models go to a session folder, never to the user's ~/.cache."""
    root = tmp_path_factory.mktemp("t2ibench-cache")
    old = os.environ.get("T2IBENCH_CACHE")
    os.environ["T2IBENCH_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("T2IBENCH_CACHE", None)
    else:
        os.environ["T2IBENCH_CACHE"] = old


@pytest.fixture
def nonsquare_images() -> list[Image.Image]:
    """A landscape 80×48 and a portrait 48×80 image (PIL sizes are width × height)."""
    return [noise_image(80, 48, seed=1), noise_image(48, 80, seed=2)]
