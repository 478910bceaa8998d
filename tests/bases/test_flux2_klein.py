"""The ``flux2-klein`` base plug-in on a tiny random FLUX.2 [klein]-class folder saved here (a
tiny Qwen2 tokenizer built offline, Qwen3, the FLUX.2 VAE with batch-norm statistics): loaded
through the plug-in, latents exactly as ``Flux2KleinPipeline`` decodes them, one LoRA epoch, the
file re-applied, images generated; BFL-named files mapped onto diffusers' layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.bases.bases_testutil import bfl_lora_tensors, delta_w, make_tiny_flux2_klein


@pytest.fixture(scope="module")
def klein_folder(tmp_path_factory) -> Path:
    return make_tiny_flux2_klein(tmp_path_factory.mktemp("klein") / "tiny-klein")


@pytest.fixture(scope="module")
def klein_pipe(klein_folder):
    from t2ibench.models import load_base

    return load_base(klein_folder)


@pytest.fixture(scope="module")
def trained(klein_folder, klein_pipe, tmp_path_factory):
    from t2ibench.adapters import load_trainer_config, train_run
    from t2ibench.data import make_demo_dataset

    demo = make_demo_dataset(tmp_path_factory.mktemp("demo") / "demo")
    cfg = load_trainer_config("lora").replace(
        resolution=64, min_bucket_reso=64, max_bucket_reso=64, batch_size=4, warmup_steps=0,
        preset="attn-mlp", lr=1e-2,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("klein-train")
    return train_run(
        "lora", demo, str(klein_folder), out, cfg, epochs=1, progress=False, pipe=klein_pipe
    )


def test_latents_are_what_the_pipeline_decodes(klein_pipe):
    """``normalize_latents`` is the exact inverse of ``Flux2KleinPipeline.__call__``'s steps
    before ``vae.decode`` (bn de-normalise, unpatchify), and equals its ``_encode_vae_image``."""
    from t2ibench.architectures import architecture_of_pipe

    arch = architecture_of_pipe(klein_pipe)
    assert arch.name == "flux2-klein" and arch.objective.kind == "flow_matching"
    vae = klein_pipe.vae
    assert not torch.allclose(vae.bn.running_mean, torch.zeros(16))
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    x = arch.normalize_latents(vae, z)
    assert x.shape == (2, 16, 4, 4)
    mean = vae.bn.running_mean.view(1, -1, 1, 1)
    std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps)
    back = klein_pipe._unpatchify_latents(x * std + mean)  # __call__'s lines before decode
    assert torch.allclose(back, z, atol=1e-6)
    img = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        ours = arch.normalize_latents(vae, vae.encode(img).latent_dist.mode())
        theirs = klein_pipe._encode_vae_image(img, generator=None)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_prediction_is_the_pipelines_transformer_call(klein_pipe):
    """``predict`` feeds the transformer as ``__call__`` does (packed tokens, position ids,
    ``t/1000``, the ``encode_prompt`` embeddings) and unpacks to (B, C, H, W)."""
    from t2ibench.architectures import architecture_of_pipe

    arch = architecture_of_pipe(klein_pipe)
    gen = torch.Generator().manual_seed(2)
    noisy = torch.randn(1, 16, 4, 4, generator=gen)
    t = torch.tensor([700.0])
    with torch.no_grad():
        cond = arch.condition(klein_pipe, ["a photo of sks dog"], "cpu")
        pred = arch.predict(klein_pipe, noisy, t, cond)
        packed, ids = klein_pipe.prepare_latents(1, 4, 64, 64, torch.float32, "cpu", None, noisy)
        embeds, txt_ids = klein_pipe.encode_prompt("a photo of sks dog", max_sequence_length=32)
        ref = klein_pipe.transformer(
            hidden_states=packed, timestep=t / 1000, guidance=None,
            encoder_hidden_states=embeds, txt_ids=txt_ids, img_ids=ids, return_dict=False,
        )[0]  # fmt: skip
    assert torch.allclose(cond["embeds"], embeds)
    unpacked = klein_pipe._unpack_latents_with_ids(ref, ids, 4, 4)
    assert torch.allclose(pred, unpacked, atol=1e-6)


def test_lora_epoch_reapplies_and_generates(trained, klein_pipe):
    from safetensors import safe_open

    from t2ibench.adapters import apply_adapter
    from t2ibench.pipeline.generate import GenerationSettings, generate_batch
    from t2ibench.prompts import GenerationJob

    assert np.isfinite(trained.losses).all()
    (ckpt,) = trained.checkpoints
    with safe_open(str(ckpt), framework="pt") as f:
        stems = {k.split(".")[0] for k in f.keys()}
    assert {s.split("_")[1] for s in stems} == {"unet"}  # Qwen3 is never adapted
    for stem in (
        "lora_unet_transformer_blocks_0_attn_add_q_proj",
        "lora_unet_transformer_blocks_0_ff_context_linear_in",
        "lora_unet_single_transformer_blocks_0_attn_to_qkv_mlp_proj",
    ):
        assert stem in stems
    job = GenerationJob(leaf="x", prompt_type="t", prompt="a photo of sks dog", seed=3, index=0)
    settings = GenerationSettings(steps=2, height=64, width=64, scheduler="flow-euler")
    base = np.asarray(generate_batch(klein_pipe, [job], settings)[0], dtype=np.int16)
    with apply_adapter(klein_pipe, ckpt):
        tuned = np.asarray(generate_batch(klein_pipe, [job], settings)[0], dtype=np.int16)
    assert base.shape == (64, 64, 3) and np.abs(tuned - base).max() > 0
    assert np.array_equal(np.asarray(generate_batch(klein_pipe, [job], settings)[0]), base)


@pytest.mark.parametrize("form", ["kohya", "ai-toolkit", "comfyui", "transformer"])
def test_bfl_named_file_gives_the_diffusers_files_delta_w(klein_pipe, tmp_path, form):
    """A LoRA saved on BFL's FLUX.2 names (double-block qkv fused, single-block ``linear1`` /
    ``linear2``, the final layer's (shift, scale) modulation) gives the same ΔW, layer by layer,
    as the same LoRA saved on diffusers' names (qkv as three layers, scale/shift swapped); in
    kohya's form and in the dotted forms of ai-toolkit (``diffusion_model.<BFL path>.lora_A``),
    ComfyUI (``diffusion_model.<BFL path>.lora_down`` + ``alpha``) and ``transformer.``."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(0)
    r, d = 2, 16
    model = klein_pipe.transformer
    lin1 = model.single_transformer_blocks[0].attn.to_qkv_mlp_proj.out_features
    mlp_in = model.transformer_blocks[0].ff.linear_in.out_features
    bfl_shapes = {  # BFL's dotted path → (rows, cols)
        "double_blocks.0.img_attn.qkv": (3 * d, d),
        "double_blocks.0.txt_attn.qkv": (3 * d, d),
        "double_blocks.0.img_mlp.0": (mlp_in, d),
        "double_blocks.0.txt_attn.proj": (d, d),
        "single_blocks.0.linear1": (lin1, d),
        "single_blocks.0.linear2": (d, model.single_transformer_blocks[0].attn.to_out.in_features),
        "final_layer.adaLN_modulation.1": (2 * d, d),
        "txt_in": (d, model.context_embedder.in_features),
    }
    targets_of = {
        "double_blocks.0.img_attn.qkv": ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k", "transformer_blocks.0.attn.to_v"],
        "double_blocks.0.txt_attn.qkv": ["transformer_blocks.0.attn.add_q_proj", "transformer_blocks.0.attn.add_k_proj", "transformer_blocks.0.attn.add_v_proj"],
        "double_blocks.0.img_mlp.0": ["transformer_blocks.0.ff.linear_in"],
        "double_blocks.0.txt_attn.proj": ["transformer_blocks.0.attn.to_add_out"],
        "single_blocks.0.linear1": ["single_transformer_blocks.0.attn.to_qkv_mlp_proj"],
        "single_blocks.0.linear2": ["single_transformer_blocks.0.attn.to_out"],
        "final_layer.adaLN_modulation.1": ["norm_out.linear"],
        "txt_in": ["context_embedder"],
    }  # fmt: skip
    bfl, diff = {}, {}
    for path, (rows, cols) in bfl_shapes.items():
        down = torch.randn(r, cols, generator=gen)
        up = torch.randn(rows, r, generator=gen)
        bfl |= bfl_lora_tensors(path, down, up, form, alpha=1.0)
        # the diffusers file as diffusers' converters lay it out (alpha/r folded into B)
        targets = targets_of[path]
        if path.startswith("final_layer.adaLN"):
            shift, scale = up.chunk(2)
            up = torch.cat([scale, shift])
        for target, part in zip(targets, up.chunk(len(targets)), strict=True):
            diff[f"transformer.{target}.lora_A.weight"] = down.clone()
            diff[f"transformer.{target}.lora_B.weight"] = part * 0.5
    save_file(bfl, str(tmp_path / "bfl.safetensors"))
    (tmp_path / "diffusers").mkdir()
    save_file(diff, str(tmp_path / "diffusers" / "pytorch_lora_weights.safetensors"))
    ours = delta_w(klein_pipe, tmp_path / "bfl.safetensors")
    theirs = delta_w(klein_pipe, tmp_path / "diffusers" / "pytorch_lora_weights.safetensors")
    assert set(ours) == set(theirs) and len(ours) == 12
    for name in ours:
        assert torch.allclose(ours[name], theirs[name], atol=1e-5), name


def test_bfl_named_lokr_on_a_fused_qkv_is_refused_in_one_line(klein_pipe, tmp_path):
    from safetensors.torch import save_file

    from t2ibench.adapters import apply_adapter
    from t2ibench.errors import T2IBenchError

    stem = "lora_unet_double_blocks_0_img_attn_qkv"
    path = tmp_path / "lokr.safetensors"
    save_file(
        {f"{stem}.lokr_w1": torch.ones(2, 2), f"{stem}.lokr_w2": torch.ones(24, 8)}, str(path)
    )
    with pytest.raises(T2IBenchError, match="fused FLUX.2 klein layer holds lokr_w1; only LoRA"):
        apply_adapter(klein_pipe, path)
