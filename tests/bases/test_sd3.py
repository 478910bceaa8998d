"""The ``sd3`` base plug-in on a tiny SD3-class folder saved here: three text encoders (T5
frozen), the MMDiT joint blocks (the last one context-pre-only), flow matching with shift 3; one
LoRA epoch, re-applied, images generated; kohya SD3 files (SAI's names) mapped onto diffusers'."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.bases.bases_testutil import bfl_lora_tensors, delta_w, make_tiny_sd3


@pytest.fixture(scope="module")
def sd3_folder(tmp_path_factory):
    return make_tiny_sd3(tmp_path_factory.mktemp("sd3") / "tiny-sd3")


@pytest.fixture(scope="module")
def sd3_pipe(sd3_folder):
    from t2ibench.models import load_base

    return load_base(sd3_folder)


def test_sd3_loads_trains_applies_and_generates(sd3_folder, sd3_pipe, tmp_path_factory):
    from safetensors import safe_open

    from t2ibench.adapters import apply_adapter, load_trainer_config, train_run
    from t2ibench.architectures import architecture_of_pipe
    from t2ibench.data import make_demo_dataset
    from t2ibench.pipeline.generate import GenerationSettings, generate_batch
    from t2ibench.prompts import GenerationJob

    pipe = sd3_pipe
    assert architecture_of_pipe(pipe).name == "sd3"
    demo = make_demo_dataset(tmp_path_factory.mktemp("demo3") / "demo")
    cfg = load_trainer_config("lora").replace(
        resolution=64, min_bucket_reso=64, max_bucket_reso=64, batch_size=4, warmup_steps=0,
        preset="attn-only", lr=1e-2,
    )  # fmt: skip
    res = train_run(
        "lora", demo, str(sd3_folder), tmp_path_factory.mktemp("sd3-train"), cfg, epochs=1,
        progress=False, pipe=pipe,
    )  # fmt: skip
    with safe_open(str(res.checkpoints[-1]), framework="pt") as f:
        parts = {k.split("_")[1] for k in f.keys()}
    assert parts == {"unet", "te1", "te2"}  # T5 (te3) is never adapted
    job = GenerationJob(leaf="x", prompt_type="t", prompt="a photo of sks dog", seed=3, index=0)
    settings = GenerationSettings(steps=2, height=64, width=64, scheduler="flow-euler")
    base = np.asarray(generate_batch(pipe, [job], settings)[0], dtype=np.int16)
    with apply_adapter(pipe, res.checkpoints[-1]):
        tuned = np.asarray(generate_batch(pipe, [job], settings)[0], dtype=np.int16)
    assert np.abs(tuned - base).max() > 0


@pytest.mark.parametrize("form", ["kohya", "comfyui"])
def test_kohya_sd3_file_gives_the_diffusers_files_delta_w(sd3_pipe, tmp_path, form):
    """sd-scripts' SD3 LoRAs name SAI's MMDiT modules (``joint_blocks_N_x_block_attn_qkv``
    fused, ``context_block``, ``adaLN_modulation_1`` in (shift, scale) order): the same ΔW, layer
    by layer, as the LoRA on diffusers' names (q/k/v apart, the last block's context modulation
    and the final layer's in (scale, shift) order). ComfyUI's dotted form of SAI's names
    (``diffusion_model.joint_blocks.0.x_block.attn.qkv.lora_down.weight``) alike."""
    from safetensors.torch import save_file

    model = sd3_pipe.transformer
    d, last = 16, model.config.num_layers - 1
    assert model.transformer_blocks[last].context_pre_only
    ff_in = model.transformer_blocks[0].ff.net[0].proj.out_features
    ada0 = model.transformer_blocks[0].norm1_context.linear.out_features
    b0, bl = "transformer_blocks.0", f"transformer_blocks.{last}"
    cases = {  # SAI's dotted path → (rows, cols, diffusers targets, swapped)
        "joint_blocks.0.x_block.attn.qkv": (3 * d, d, [f"{b0}.attn.to_q", f"{b0}.attn.to_k", f"{b0}.attn.to_v"], False),
        f"joint_blocks.{last}.context_block.attn.qkv": (3 * d, d, [f"{bl}.attn.add_q_proj", f"{bl}.attn.add_k_proj", f"{bl}.attn.add_v_proj"], False),
        "joint_blocks.0.context_block.attn.proj": (d, d, [f"{b0}.attn.to_add_out"], False),
        "joint_blocks.0.x_block.mlp.fc1": (ff_in, d, [f"{b0}.ff.net.0.proj"], False),
        "joint_blocks.0.context_block.adaLN_modulation.1": (ada0, d, [f"{b0}.norm1_context.linear"], False),
        f"joint_blocks.{last}.context_block.adaLN_modulation.1": (2 * d, d, [f"{bl}.norm1_context.linear"], True),
        "final_layer.adaLN_modulation.1": (2 * d, d, ["norm_out.linear"], True),
        "context_embedder": (d, model.context_embedder.in_features, ["context_embedder"], False),
    }  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    kohya, diff = {}, {}
    for stem, (rows, cols, targets, swapped) in cases.items():
        down, up = torch.randn(2, cols, generator=gen), torch.randn(rows, 2, generator=gen)
        kohya |= bfl_lora_tensors(stem, down, up, form, alpha=1.0)  # scale 1/2
        if swapped:
            shift, scale = up.chunk(2)
            up = torch.cat([scale, shift])
        for target, part in zip(targets, up.chunk(len(targets)), strict=True):
            diff[f"transformer.{target}.lora_A.weight"] = down.clone()
            diff[f"transformer.{target}.lora_B.weight"] = part * 0.5
    save_file(kohya, str(tmp_path / "kohya-sd3.safetensors"))
    (tmp_path / "diffusers").mkdir()
    save_file(diff, str(tmp_path / "diffusers" / "pytorch_lora_weights.safetensors"))
    ours = delta_w(sd3_pipe, tmp_path / "kohya-sd3.safetensors")
    theirs = delta_w(sd3_pipe, tmp_path / "diffusers" / "pytorch_lora_weights.safetensors")
    assert set(ours) == set(theirs) and len(ours) == 12
    for name in ours:
        assert torch.allclose(ours[name], theirs[name], atol=1e-5), name
