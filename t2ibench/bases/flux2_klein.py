"""FLUX.2 [klein] (4 B / 9 B): Flux2Transformer2DModel (double-stream blocks, single-stream blocks
with fused ``to_qkv_mlp_proj``), a Qwen3 text encoder (hidden states of layers 9, 18, 27 stacked),
the FLUX.2 VAE (32 channels, 2×2 patchified, normalised by its batch-norm statistics), rectified
flow; flow-Euler, 1024 px. The distilled klein samples in 4 steps without guidance (diffusers'
``Flux2KleinPipeline``, ``is_distilled``); the base (undistilled) klein takes 50 steps, CFG 4.

Training mirrors ``Flux2KleinPipeline`` (diffusers 0.42, ``pipelines/flux2/pipeline_flux2_klein.py``):
the latents are the VAE sample 2×2-patchified and normalised with the VAE's batch-norm running
statistics, ``(patchify(z) − bn.mean) / sqrt(bn.var + eps)`` (``_encode_vae_image``; the exact
inverse of what ``__call__`` does before ``vae.decode``); the prompt embeddings come from the
pipeline's own ``encode_prompt`` (Qwen3 chat template, layers 9/18/27), Qwen3 frozen and without
gradients; the transformer sees the packed latents with their 4-axis position ids and ``t/1000``,
no guidance embedding (the pipeline passes ``guidance=None``). Flow matching, velocity target,
σ logit-normal shifted as the sampler shifts: ``exp(mu)`` with the pipeline's
``compute_empirical_mu`` of the image-token count and the base's default step count.

Adapter keys: diffusers ``transformer.single_transformer_blocks.N.attn.to_qkv_mlp_proj``,
``transformer.transformer_blocks.N.ff.linear_in``; BFL names as kohya-style trainers save them
(``lora_unet_double_blocks_N_img_attn_qkv``, ``lora_unet_single_blocks_N_linear1``, ...) and dotted
as ai-toolkit / ComfyUI save them (``diffusion_model.double_blocks.N.img_attn.qkv.lora_A``) are
mapped onto those layers, the table after diffusers' FLUX.2 conversions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from t2ibench.architectures import (
    GenerationDefaults,
    Objective,
    register_architecture,
)
from t2ibench.bases.flux import MMDiTBase, remap_fused_lora

_ATTN = (
    r"transformer_blocks\.\d+\.attn\."
    r"(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)",
    r"single_transformer_blocks\.\d+\.attn\.to_qkv_mlp_proj",  # q, k, v and the MLP in one
)
_MLP = (
    r"transformer_blocks\.\d+\.(ff|ff_context)\.(linear_in|linear_out)",
    r"single_transformer_blocks\.\d+\.attn\.to_out",
)
FLUX2_PRESETS = {
    "attn-only": {"unet": _ATTN},
    "attn-mlp": {"unet": (*_ATTN, *_MLP)},
    "full": {"unet": (r".+",)},
}

# BFL's FLUX.2 module names (kohya form) → diffusers' Flux2Transformer2DModel paths, after
# diffusers 0.42 ``loaders/single_file_utils.py`` ``convert_flux2_transformer_checkpoint_to_diffusers``
# (lines 3852-3990: the rename tables and the qkv chunk into three) and
# ``loaders/lora_conversion_utils.py`` ``_convert_non_diffusers_flux2_lora_to_diffusers`` (lines
# 2434-2578). Unlike FLUX.1, a single block's ``linear1`` stays one fused layer in diffusers
# (``to_qkv_mlp_proj``); only the double blocks' qkv split into three equal row blocks.
_BFL2_DOUBLE = {
    "img_attn_qkv": ["attn_to_q", "attn_to_k", "attn_to_v"],
    "img_attn_proj": ["attn_to_out_0"],
    "img_mlp_0": ["ff_linear_in"],
    "img_mlp_2": ["ff_linear_out"],
    "txt_attn_qkv": ["attn_add_q_proj", "attn_add_k_proj", "attn_add_v_proj"],
    "txt_attn_proj": ["attn_to_add_out"],
    "txt_mlp_0": ["ff_context_linear_in"],
    "txt_mlp_2": ["ff_context_linear_out"],
}
_BFL2_SINGLE = {"linear1": ["attn_to_qkv_mlp_proj"], "linear2": ["attn_to_out"]}
_BFL2_TOP = {
    "img_in": "x_embedder",
    "txt_in": "context_embedder",
    "time_in_in_layer": "time_guidance_embed_timestep_embedder_linear_1",
    "time_in_out_layer": "time_guidance_embed_timestep_embedder_linear_2",
    "guidance_in_in_layer": "time_guidance_embed_guidance_embedder_linear_1",
    "guidance_in_out_layer": "time_guidance_embed_guidance_embedder_linear_2",
    "double_stream_modulation_img_lin": "double_stream_modulation_img_linear",
    "double_stream_modulation_txt_lin": "double_stream_modulation_txt_linear",
    "single_stream_modulation_lin": "single_stream_modulation_linear",
    "final_layer_linear": "proj_out",
}
#: (shift, scale) in BFL's final layer, (scale, shift) in diffusers' ``norm_out``
_BFL2_SWAPPED = {"final_layer_adaLN_modulation_1": "norm_out_linear"}
_BFL2 = re.compile(r"(double_blocks|single_blocks)_(\d+)_(.+)")


def bfl2_targets(stem: str) -> tuple[list[str], bool] | None:
    """The diffusers kohya paths of a BFL-named FLUX.2 stem, and whether its halves swap."""
    if not stem.startswith("lora_unet_"):
        return None
    path = stem[len("lora_unet_") :]
    if path in _BFL2_TOP:
        return [_BFL2_TOP[path]], False
    if path in _BFL2_SWAPPED:
        return [_BFL2_SWAPPED[path]], True
    m = _BFL2.fullmatch(path)
    if m is None:
        return None
    double = m.group(1) == "double_blocks"
    parts = (_BFL2_DOUBLE if double else _BFL2_SINGLE).get(m.group(3))
    if parts is None:
        return None
    block = "transformer_blocks" if double else "single_transformer_blocks"
    return [f"{block}_{m.group(2)}_{p}" for p in parts], False


class Flux2Klein(MMDiTBase):
    def adapter_state(self, tensors: Mapping[str, Any], pipe: Any) -> dict[str, Any]:
        """BFL-named FLUX.2 LoRAs onto diffusers' layers (:func:`remap_fused_lora`)."""
        return remap_fused_lora(tensors, pipe.transformer, bfl2_targets, self.title)

    def normalize_latents(self, vae: Any, latent: Any) -> Any:
        """``Flux2KleinPipeline._encode_vae_image`` after the VAE sample: 2×2 patchify, then the
        batch-norm running statistics (B, 4C, H/2, W/2); ``__call__`` undoes exactly this before
        ``vae.decode`` (``latents * bn_std + bn_mean``, ``_unpatchify_latents``)."""
        import torch
        from diffusers import Flux2KleinPipeline

        z = Flux2KleinPipeline._patchify_latents(latent)
        mean = vae.bn.running_mean.view(1, -1, 1, 1).to(z.device, z.dtype)
        std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps)
        return (z - mean) / std.to(z.device, z.dtype)

    @staticmethod
    def sequence_length(pipe: Any) -> int:
        """Qwen3 tokens per prompt: the tokenizer's declared length, at most the pipeline's 512
        (training and generation use the same)."""
        return int(min(512, pipe.tokenizer.model_max_length))

    def flow_shift(self, scheduler: Any, latents: Any) -> float:
        """The sampler's shift for this image size: ``Flux2KleinPipeline.__call__`` sets the
        scheduler's ``mu`` to ``compute_empirical_mu(image tokens, steps)`` and, with the
        ``exponential`` time shift, σ' = e^mu σ / (1 + (e^mu − 1) σ); here with the base's
        default step count (4, the distilled klein's). Without dynamic shifting: the static one."""
        import math

        if not scheduler.config.get("use_dynamic_shifting", False):
            return self.objective.shift
        from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu

        h, w = latents.shape[-2:]  # already 2×2-patchified: one token per position
        return math.exp(compute_empirical_mu(int(h) * int(w), self.generation.steps))

    def call_kwargs(self, pipe: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        out = dict(kwargs)
        out["max_sequence_length"] = self.sequence_length(pipe)
        return super().call_kwargs(pipe, out)

    def condition(self, pipe: Any, captions: Sequence[str], device: Any) -> dict[str, Any]:
        import torch

        with torch.no_grad():  # Qwen3 is never adapted
            embeds, txt_ids = pipe.encode_prompt(
                prompt=list(captions), device=device, max_sequence_length=self.sequence_length(pipe)
            )
        return {"embeds": embeds, "txt_ids": txt_ids}

    def predict(self, pipe: Any, noisy: Any, t: Any, cond: Mapping[str, Any]) -> Any:
        model = pipe.transformer
        b, c, h, w = noisy.shape
        img_ids = pipe._prepare_latent_ids(noisy).to(noisy.device)
        out = model(
            hidden_states=pipe._pack_latents(noisy).to(model.dtype),  # (B, H·W, C)
            encoder_hidden_states=cond["embeds"].to(model.dtype),
            timestep=(t / 1000).to(model.dtype),
            img_ids=img_ids,
            txt_ids=cond["txt_ids"],
            guidance=None,
            return_dict=False,
        )[0]
        return out.permute(0, 2, 1).reshape(b, c, h, w)  # the inverse of _pack_latents


register_architecture(
    Flux2Klein(
        name="flux2-klein",
        label="FLUX.2 klein",
        description="FLUX.2 [klein] 4B/9B (MMDiT, Qwen3 text encoder, flow matching)",
        pipeline_classes=("Flux2KleinPipeline",),
        denoiser="transformer",
        text_encoders=(),  # Qwen3 is never adapted
        presets=FLUX2_PRESETS,
        generation=GenerationDefaults(
            resolution=1024, steps=4, guidance_scale=1.0, scheduler="flow-euler"
        ),
        objective=Objective(
            "flow_matching",
            timestep_sampling="logit_normal",
            shift=3.0,
            description="velocity (noise − x) on the bn-normalised patchified latents, σ "
            "logit-normal shifted as the sampler shifts (compute_empirical_mu)",
        ),
        key_conventions={
            "diffusers/PEFT": "transformer.<diffusers path> (to_qkv_mlp_proj, ff.linear_in)",
            "BFL names (kohya form)": "lora_unet_double_blocks_N_img_attn_qkv (split in three), "
            "lora_unet_single_blocks_N_linear1 (= to_qkv_mlp_proj)",
            "ai-toolkit, ComfyUI": "diffusion_model.double_blocks.N.img_attn.qkv.lora_A/B "
            "(BFL names, dotted)",
            "t2ibench": "lora_unet_<diffusers path>",
        },
        adapter_markers=(
            r"to_qkv_mlp_proj",
            r"transformer_blocks[._]\d+[._]ff(_context)?[._]linear_(in|out)",
            r"(double|single)_blocks[._]\d+[._]",  # BFL module names, as FLUX.1's
        ),
    )
)
