"""Shared fixtures: tiny encoders built once per session into a temporary cache, small test images."""

from __future__ import annotations

from pathlib import Path

import pytest
from encoders_testutil import noise_image
from PIL import Image


@pytest.fixture(scope="session", autouse=True)
def tiny_cache(t2ibench_cache: Path) -> Path:
    """Tiny models go to the session's folder (tests/conftest.py), never to the user's ~/.cache."""
    return t2ibench_cache


@pytest.fixture
def nonsquare_images() -> list[Image.Image]:
    """A landscape 80×48 and a portrait 48×80 image (PIL sizes are width × height)."""
    return [noise_image(80, 48, seed=1), noise_image(48, 80, seed=2)]
