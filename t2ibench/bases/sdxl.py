"""Stable Diffusion XL: UNet2DConditionModel with SDXL's micro-conditioning, two text encoders
(CLIP ViT-L/14 and OpenCLIP ViT-bigG/14; penultimate hidden states concatenated, the pooled bigG
embedding and the size / crop ``time_ids`` as added conditions), epsilon on SD's scaled-linear
schedule; Euler, CFG 5 (diffusers' default), 1024 px.

Loads a local ``StableDiffusionXLPipeline`` folder, or a single ``.safetensors`` (SGM layout) with
SDXL base 1.0's bundled diffusers configs (``t2ibench/bases/configs``) or its own config folder
(``config``; never a download), or a hub id from the
local cache. Adapter files: kohya ``lora_unet_`` + ``lora_te1_`` / ``lora_te2_`` (t2ibench writes
the UNet keys on diffusers module paths; sd-scripts' own SDXL files name the UNet the SGM way,
``lora_unet_input_blocks_4_1_...``), diffusers ``unet.`` / ``text_encoder.`` / ``text_encoder_2.``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from t2ibench.architectures import (
    CostFigures,
    GenerationDefaults,
    Objective,
    TextEncoderPart,
    register_architecture,
    train_sample_s_from_generation,
)
from t2ibench.bases.sd15 import UNET_PRESETS, UNetBase

# SDXL also conditions on the pooled text embedding and the image size through ``add_embedding``.
SDXL_PRESETS = {
    **UNET_PRESETS,
    "full": {
        **UNET_PRESETS["full"],
        "unet": (*UNET_PRESETS["full"]["unet"], r"add_embedding\.linear_[12]"),
    },
}


_SGM_RESNET = {
    "in_layers_2": "conv1",
    "out_layers_3": "conv2",
    "emb_layers_1": "time_emb_proj",
    "skip_connection": "conv_shortcut",
}
_SGM_TOP = {
    "input_blocks_0_0": "conv_in",
    "out_2": "conv_out",
    "time_embed_0": "time_embedding_linear_1",
    "time_embed_2": "time_embedding_linear_2",
    "label_emb_0_0": "add_embedding_linear_1",
    "label_emb_0_2": "add_embedding_linear_2",
}
_SGM_BLOCK = re.compile(r"(input_blocks|output_blocks)_(\d+)_(\d+)_(.+)|(middle_block)_(\d+)_(.+)")


def sgm_to_diffusers(path: str, layers_per_block: int) -> str:
    """A UNet module path in SGM names (``input_blocks_4_1_transformer_blocks_0_attn1_to_q``, as
    sd-scripts' SDXL LoRAs write it) in diffusers' (``down_blocks_1_attentions_0_...``), from the
    layout of the original SDXL UNet (``sgm/modules/diffusionmodules/openaimodel.py``): input
    block 0 is ``conv_in``; then each level has ``layers_per_block`` (resnet, attention) pairs and a
    downsampler; the middle block is resnet, attention, resnet; each output level has one pair
    more and ends with an upsampler. Paths that are not SGM come back unchanged."""
    for old, new in _SGM_TOP.items():
        if path == old:
            return new
    m = _SGM_BLOCK.fullmatch(path)
    if m is None:
        return path
    if m.group(5):
        kind, i, k, rest = m.group(5), int(m.group(6)), 0, m.group(7)
    else:
        kind, i, k, rest = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
    span = layers_per_block + 1
    if kind == "middle_block":
        head = {0: "mid_block_resnets_0", 1: "mid_block_attentions_0", 2: "mid_block_resnets_1"}[i]
    elif kind == "input_blocks":
        level, j = (i - 1) // span, (i - 1) % span
        if j == layers_per_block:  # the level's downsampler (``op``)
            return f"down_blocks_{level}_downsamplers_0_conv"
        head = f"down_blocks_{level}_{'resnets' if k == 0 else 'attentions'}_{j}"
    else:
        level, j = i // span, i % span
        if k == 2 or (k == 1 and rest == "conv"):  # the level's upsampler
            return f"up_blocks_{level}_upsamplers_0_conv"
        head = f"up_blocks_{level}_{'resnets' if k == 0 else 'attentions'}_{j}"
    if "_resnets_" in head:
        rest = _SGM_RESNET.get(rest, rest)
    return f"{head}_{rest}"


class SDXL(UNetBase):
    def adapter_state(self, tensors: Mapping[str, Any], pipe: Any) -> dict[str, Any]:
        layers = int(pipe.unet.config.layers_per_block)
        out = {}
        for key, value in tensors.items():
            stem, _, suffix = key.partition(".")
            if stem.startswith("lora_unet_"):
                stem = "lora_unet_" + sgm_to_diffusers(stem[len("lora_unet_") :], layers)
            out[f"{stem}.{suffix}"] = value
        return out

    def load(self, kind: str, where: Any, *, dtype: Any, allow_pickle: bool, config: Any) -> Any:
        from diffusers import StableDiffusionXLPipeline

        from t2ibench.architectures import dtype_kwarg, hub_pipeline, wrap_load

        common = {dtype_kwarg(): dtype}
        if kind == "folder":
            return wrap_load(
                lambda: StableDiffusionXLPipeline.from_pretrained(
                    where, local_files_only=True, **common
                ),
                where,
            )
        if kind == "hub":
            return hub_pipeline(StableDiffusionXLPipeline, where, common)
        from t2ibench.bases.bundled import load_single_file

        return load_single_file(
            StableDiffusionXLPipeline,
            where,
            config,
            self.title,
            lambda keys: "sdxl-base-1.0",
            {"CLIP-L": ("conditioner.embedders.0.",), "CLIP-G": ("conditioner.embedders.1.",)},
            common,
        )

    def condition(self, pipe: Any, captions: Sequence[str], device: Any) -> dict[str, Any]:
        import torch

        hidden = []
        pooled = None
        for tokenizer, encoder in (
            (pipe.tokenizer, pipe.text_encoder),
            (pipe.tokenizer_2, pipe.text_encoder_2),
        ):
            out = encoder(self.tokens(tokenizer, captions, device), output_hidden_states=True)
            pooled = out[0]  # the last encoder's projected pooled output (text_embeds)
            hidden.append(out.hidden_states[-2])  # penultimate layer, as SDXL was trained
        return {"ehs": torch.cat(hidden, dim=-1), "pooled": pooled}

    def predict(self, pipe: Any, noisy: Any, t: Any, cond: Mapping[str, Any]) -> Any:
        import torch

        unet = pipe.unet
        h, w = (int(s) * pipe.vae_scale_factor for s in noisy.shape[-2:])
        # (original size, crop top-left, target size): an uncropped image at its own size
        time_ids = torch.tensor([[h, w, 0, 0, h, w]], device=noisy.device, dtype=unet.dtype)
        added = {
            "text_embeds": cond["pooled"].to(unet.dtype),
            "time_ids": time_ids.repeat(noisy.shape[0], 1),
        }
        return unet(
            noisy.to(unet.dtype), t, cond["ehs"].to(unet.dtype), added_cond_kwargs=added
        ).sample


register_architecture(
    SDXL(
        name="sdxl",
        label="SDXL",
        description="Stable Diffusion XL 1.0 (UNet 2.6 B, CLIP-L + OpenCLIP bigG, epsilon)",
        pipeline_classes=("StableDiffusionXLPipeline",),
        denoiser="unet",
        text_encoders=(
            TextEncoderPart("te1", "text_encoder", "lora_te1", "CLIP ViT-L/14 (OpenAI)"),
            TextEncoderPart("te2", "text_encoder_2", "lora_te2", "OpenCLIP ViT-bigG/14"),
        ),
        presets=SDXL_PRESETS,
        generation=GenerationDefaults(
            resolution=1024, steps=30, guidance_scale=5.0, scheduler="euler"
        ),
        objective=Objective("epsilon", description="noise prediction, scaled-linear DDPM betas"),
        key_conventions={
            "kohya sd-scripts": "lora_unet_<SGM path> (input_blocks_4_1_...), lora_te1_/lora_te2_",
            "t2ibench / LyCORIS kohya wrapper": "lora_unet_<diffusers path>, lora_te1_/lora_te2_",
            "diffusers/PEFT": "unet.<path>, text_encoder.<path>, text_encoder_2.<path>",
            "LyCORIS save_weights": "lycoris_<diffusers path> (SimpleTuner, UNet only)",
        },
        checkpoint_markers=(
            "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias",
            "conditioner.embedders.1.model.positional_embedding",
        ),
        adapter_markers=(
            r"^lora_te[12]_",  # CLIP-L and bigG (SD3 shares both names, FLUX the first)
            r"attentions[._]\d+[._]transformer_blocks[._][1-9]",  # SDXL's 2- and 10-deep blocks
            # sd-scripts' SGM names: attention in output blocks 0-2 (SD1.x: 3-11), 10-deep blocks
            r"^lora_unet_output_blocks_[0-2]_1_transformer_blocks_",
            r"^lora_unet_(input_blocks_[78]|middle_block)_1_transformer_blocks_[1-9]_",
            r"add_embedding[._]linear",
        ),
        # Assumed, not measured: diffusers' "Accelerate inference of text-to-image diffusion
        # models" tutorial (80 GB A100, SDXL base 1.0, 1024 px, 30 steps, batch 1, bf16 + SDPA:
        # 3.315 s; its collated_results_sdxl.csv); training from that by the rule in
        # train_sample_s_from_generation (CFG: 2 forwards a step).
        cost=CostFigures(
            image_s=3.3,
            train_sample_s=train_sample_s_from_generation(3.3, 30, 2),
            gpu="A100 80GB",
            source="diffusers fast_diffusion tutorial (SDXL, 30 steps, bf16 + SDPA: 3.3 s)",
        ),
    )
)
