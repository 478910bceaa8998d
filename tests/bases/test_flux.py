"""The ``flux`` base plug-in on a tiny random FLUX.1-class folder saved here: loaded through the
plug-in, one LoRA epoch with the flow-matching objective (transformer + CLIP-L, T5 frozen), the
file re-applied, images generated through ``FluxPipeline``. SD3's are in ``test_sd3.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.bases.bases_testutil import bfl_lora_tensors, delta_w, make_tiny_flux


@pytest.fixture(scope="module")
def flux_folder(tmp_path_factory) -> Path:
    return make_tiny_flux(tmp_path_factory.mktemp("flux") / "tiny-flux")


@pytest.fixture(scope="module")
def flux_pipe(flux_folder):
    from t2ibench.models import load_base

    return load_base(flux_folder)


@pytest.fixture(scope="module")
def trained(flux_folder, flux_pipe, tmp_path_factory):
    from t2ibench.adapters import load_trainer_config, train_run
    from t2ibench.data import make_demo_dataset

    demo = make_demo_dataset(tmp_path_factory.mktemp("demo") / "demo")
    cfg = load_trainer_config("lora").replace(
        resolution=64, min_bucket_reso=64, max_bucket_reso=64, batch_size=4, warmup_steps=0,
        preset="attn-mlp", lr=1e-2,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("flux-train")
    return train_run(
        "lora", demo, str(flux_folder), out, cfg, epochs=1, progress=False, pipe=flux_pipe
    )


def test_flow_matching_shift_is_the_schedulers():
    """σ' = sσ/(1+(s−1)σ) is FlowMatchEulerDiscreteScheduler's static shift."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from t2ibench.bases.objectives import shifted_sigmas

    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    u = torch.linspace(1000, 1, 1000) / 1000  # its unshifted training sigmas
    assert torch.allclose(shifted_sigmas(u, 3.0), sched.sigmas.float(), atol=1e-6)


def test_loads_through_the_flux_plugin(flux_pipe):
    from t2ibench.architectures import architecture_of_pipe

    arch = architecture_of_pipe(flux_pipe)
    assert type(flux_pipe).__name__ == "FluxPipeline" and arch.name == "flux"
    assert arch.objective.kind == "flow_matching"


def test_lora_on_transformer_and_clip_not_t5(trained):
    from safetensors import safe_open

    (ckpt,) = trained.checkpoints
    with safe_open(str(ckpt), framework="pt") as f:
        keys = list(f.keys())
    assert {k.split("_")[1] for k in keys} == {"unet", "te1"}
    stems = {k.split(".")[0] for k in keys}
    # joint attention of both streams, the single block's attention and MLP
    for stem in (
        "lora_unet_transformer_blocks_0_attn_add_q_proj",
        "lora_unet_transformer_blocks_0_ff_context_net_2",
        "lora_unet_single_transformer_blocks_0_proj_mlp",
    ):
        assert stem in stems
    assert np.isfinite(trained.losses).all()


def test_saved_file_applies_and_generates(trained, flux_pipe):
    from t2ibench.adapters import apply_adapter
    from t2ibench.pipeline.generate import GenerationSettings, generate_batch
    from t2ibench.prompts import GenerationJob

    job = GenerationJob(leaf="x", prompt_type="t", prompt="a photo of sks dog", seed=3, index=0)
    settings = GenerationSettings(steps=2, height=64, width=64, scheduler="flow-euler")
    base = np.asarray(generate_batch(flux_pipe, [job], settings)[0], dtype=np.int16)
    with apply_adapter(flux_pipe, trained.checkpoints[-1]):
        tuned = np.asarray(generate_batch(flux_pipe, [job], settings)[0], dtype=np.int16)
    assert base.shape == (64, 64, 3) and np.abs(tuned - base).max() > 0
    assert np.array_equal(np.asarray(generate_batch(flux_pipe, [job], settings)[0]), base)


def test_diffusers_flux_file_applies(trained, flux_pipe, tmp_path):
    """A FLUX LoRA in diffusers / ai-toolkit naming (``transformer.<path>.lora_A.weight``) is
    read onto the same layers as t2ibench's own file: same output."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from t2ibench.adapters import apply_adapter

    tensors = {}
    with safe_open(str(trained.checkpoints[-1]), framework="pt") as f:
        for key in f.keys():
            stem, _, suffix = key.partition(".")
            if not stem.startswith("lora_unet_") or suffix == "alpha":
                continue
            rank = f.get_tensor(f"{stem}.lora_down.weight").shape[0]
            scale = float(f.get_tensor(f"{stem}.alpha")) / rank
            path = flux_pipe.transformer  # find the dotted module path of this kohya stem
            name = next(
                n for n, _ in path.named_modules() if "lora_unet_" + n.replace(".", "_") == stem
            )
            t = f.get_tensor(key).float()
            if suffix == "lora_down.weight":
                tensors[f"transformer.{name}.lora_A.weight"] = t
            else:  # diffusers files without metadata are read at scale 1: fold alpha/r in
                tensors[f"transformer.{name}.lora_B.weight"] = t * scale
    path = tmp_path / "pytorch_lora_weights.safetensors"
    save_file(tensors, str(path))
    x = torch.randn(1, 4, 16)  # (batch, tokens, inner width 2 heads × 8)
    block = flux_pipe.transformer.single_transformer_blocks[0].proj_mlp
    with apply_adapter(flux_pipe, trained.checkpoints[-1]), torch.no_grad():
        ours = block(x)
    with apply_adapter(flux_pipe, path), torch.no_grad():
        theirs = block(x)
    assert torch.allclose(ours, theirs, atol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(block(x), ours, atol=1e-5)


def test_kohya_bfl_named_file_applies_split_over_q_k_v(flux_pipe, tmp_path):
    """sd-scripts' FLUX LoRAs name BFL's fused modules (``double_blocks_0_img_attn_qkv``,
    ``single_blocks_0_linear1`` = q, k, v and the MLP in); each diffusers layer gets its rows of
    ``up`` with the shared ``down``: the same ΔW."""
    from safetensors.torch import save_file

    from t2ibench.adapters import apply_adapter

    gen = torch.Generator().manual_seed(0)
    r, d, mlp = 2, 16, 64
    fused = {
        "lora_unet_double_blocks_0_img_attn_qkv": 3 * d,
        "lora_unet_single_blocks_0_linear1": 3 * d + mlp,
        "lora_unet_double_blocks_0_txt_mlp_2": d,  # one-to-one: ff_context.net.2
    }
    tensors = {}
    for stem, rows in fused.items():
        cols = mlp if stem.endswith("mlp_2") else d
        tensors[f"{stem}.lora_down.weight"] = torch.randn(r, cols, generator=gen)
        tensors[f"{stem}.lora_up.weight"] = torch.randn(rows, r, generator=gen)
        tensors[f"{stem}.alpha"] = torch.tensor(1.0)  # scale 1/2
    path = tmp_path / "kohya-flux.safetensors"
    save_file(tensors, str(path))
    model = flux_pipe.transformer
    x = torch.randn(3, d, generator=gen)
    checks = [  # (layer, stem, rows of up)
        (model.transformer_blocks[0].attn.to_k, "lora_unet_double_blocks_0_img_attn_qkv", (d, 2 * d)),
        (model.single_transformer_blocks[0].attn.to_v, "lora_unet_single_blocks_0_linear1", (2 * d, 3 * d)),
        (model.single_transformer_blocks[0].proj_mlp, "lora_unet_single_blocks_0_linear1", (3 * d, 3 * d + mlp)),
    ]  # fmt: skip
    with torch.no_grad():
        before = [layer(x) for layer, _, _ in checks]
        with apply_adapter(flux_pipe, path) as handle:
            after = [layer(x) for layer, _, _ in checks]
            assert len(handle.network) == 3 + 4 + 1
    for (_, stem, (a, b)), y0, y1 in zip(checks, before, after, strict=True):
        down, up = tensors[f"{stem}.lora_down.weight"], tensors[f"{stem}.lora_up.weight"][a:b]
        assert torch.allclose(y1 - y0, x @ down.T @ up.T * 0.5, atol=1e-5)


@pytest.mark.parametrize("form", ["kohya", "ai-toolkit", "comfyui", "transformer"])
def test_bfl_named_file_gives_the_diffusers_files_delta_w(flux_pipe, tmp_path, form):
    """A FLUX.1 LoRA on BFL's names, in kohya's form and the dotted forms of ai-toolkit /
    ComfyUI (``diffusion_model.double_blocks.0.img_attn.qkv.lora_A``), gives the same ΔW, layer
    by layer, as the LoRA on diffusers' names: fused q/k/v(/MLP) split, and the final layer's
    (shift, scale) modulation swapped to ``norm_out.linear``'s (scale, shift)."""
    from safetensors.torch import save_file

    model = flux_pipe.transformer
    d = 16
    lin1 = model.single_transformer_blocks[0]
    b0, s0 = "transformer_blocks.0", "single_transformer_blocks.0"
    cases = {  # BFL's dotted path → (rows, cols, diffusers targets, swapped)
        "double_blocks.0.img_attn.qkv": (3 * d, d, [f"{b0}.attn.to_q", f"{b0}.attn.to_k", f"{b0}.attn.to_v"], False),
        "double_blocks.0.txt_mod.lin": (model.transformer_blocks[0].norm1_context.linear.out_features, d, [f"{b0}.norm1_context.linear"], False),
        "single_blocks.0.linear1": (3 * d + lin1.proj_mlp.out_features, d, [f"{s0}.attn.to_q", f"{s0}.attn.to_k", f"{s0}.attn.to_v", f"{s0}.proj_mlp"], False),
        "final_layer.adaLN_modulation.1": (2 * d, d, ["norm_out.linear"], True),
        "final_layer.linear": (model.proj_out.out_features, d, ["proj_out"], False),
    }  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    bfl, diff = {}, {}
    for path, (rows, cols, targets, swapped) in cases.items():
        down, up = torch.randn(2, cols, generator=gen), torch.randn(rows, 2, generator=gen)
        bfl |= bfl_lora_tensors(path, down, up, form, alpha=1.0)  # scale 1/2
        if swapped:
            shift, scale = up.chunk(2)
            up = torch.cat([scale, shift])
        splits = [model.get_submodule(t).out_features for t in targets]
        for target, part in zip(targets, up.split(splits), strict=True):
            diff[f"transformer.{target}.lora_A.weight"] = down.clone()
            diff[f"transformer.{target}.lora_B.weight"] = part * 0.5
    save_file(bfl, str(tmp_path / "bfl.safetensors"))
    (tmp_path / "diffusers").mkdir()
    save_file(diff, str(tmp_path / "diffusers" / "pytorch_lora_weights.safetensors"))
    ours = delta_w(flux_pipe, tmp_path / "bfl.safetensors")
    theirs = delta_w(flux_pipe, tmp_path / "diffusers" / "pytorch_lora_weights.safetensors")
    assert set(ours) == set(theirs) and len(ours) == 3 + 1 + 4 + 1 + 1
    for name in ours:
        assert torch.allclose(ours[name], theirs[name], atol=1e-5), name
