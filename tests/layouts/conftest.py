"""The layout tests' fixtures (helpers: layout_testing.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def clip_b32_mixed(tmp_path_factory) -> str:
    """A tiny random CLIP ViT-B/32 in the real loader's folder format whose image–prompt cosines
    are not all negative (the default tiny one's are), so CLIP-T's clamp matters."""
    import torch

    from t2ibench.encoders import clip, clip_b32

    folder = tmp_path_factory.mktemp("clip-b32-seed2")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        clip.build_tiny(folder, model_cfg=clip_b32.TINY_MODEL_CFG)
    return str(folder)
