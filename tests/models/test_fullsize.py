"""``make_random_from_config_tree``: a config tree → a loadable diffusers folder of random weights,
streamed one tensor at a time (here on a tiny SD3-class tree; full size in tests/slow)."""

from __future__ import annotations

import math

import pytest
import torch

from tests.bases.bases_testutil import make_tiny_sd3


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tiny_sd3(tmp_path_factory.mktemp("tree") / "sd3")


def test_random_folder_loads_with_the_trees_classes_and_sane_weights(tree, tmp_path):
    from safetensors.torch import load_file

    from t2ibench.models import load_base
    from t2ibench.models.fullsize import make_random_from_config_tree

    out = make_random_from_config_tree(tmp_path / "a", tree, dtype=torch.bfloat16, seed=1)
    pipe = load_base(out, dtype=torch.bfloat16)
    assert type(pipe).__name__ == "StableDiffusion3Pipeline"
    ref = load_base(tree)
    # the same architecture: every parameter name and shape of the tree's own model
    for part in ("transformer", "text_encoder", "text_encoder_2", "text_encoder_3", "vae"):
        got = {k: v.shape for k, v in getattr(pipe, part).state_dict().items()}
        want = {k: v.shape for k, v in getattr(ref, part).state_dict().items()}
        assert got == want, part
    state = load_file(str(out / "transformer" / "diffusion_pytorch_model.safetensors"))
    # real buffers are written as they are (SD3's sin-cos position table), not random
    torch.testing.assert_close(
        state["pos_embed.pos_embed"].float(), ref.transformer.pos_embed.pos_embed.float()
    )
    for key, value in state.items():
        if key == "pos_embed.pos_embed":
            continue
        assert value.dtype == torch.bfloat16, key
        if value.ndim >= 2 and value.numel() >= 256:
            std = value.float().std().item()
            assert math.isclose(std, 1 / math.sqrt(value[0].numel()), rel_tol=0.25), key
        elif value.ndim == 1:
            assert set(value.float().unique().tolist()) == ({0.0} if "bias" in key else {1.0})


def test_same_seed_same_bytes_other_seed_other_weights(tree, tmp_path):
    from t2ibench.models.fullsize import make_random_from_config_tree

    name = "transformer/diffusion_pytorch_model.safetensors"
    a = make_random_from_config_tree(tmp_path / "a", tree, dtype=torch.bfloat16, seed=1)
    b = make_random_from_config_tree(tmp_path / "b", tree, dtype=torch.bfloat16, seed=1)
    c = make_random_from_config_tree(tmp_path / "c", tree, dtype=torch.bfloat16, seed=2)
    assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / name).read_bytes() != (c / name).read_bytes()
