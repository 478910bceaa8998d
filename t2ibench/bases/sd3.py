"""Stable Diffusion 3 / 3.5 (Medium, Large): SD3Transformer2DModel (MMDiT joint blocks), CLIP-L
and OpenCLIP bigG (penultimate hidden states side by side, zero-padded to T5's width, then T5-XXL's
tokens after them; both pooled embeddings concatenated), a 16-channel VAE with shift and scale,
rectified-flow training with logit-normal σ and the scheduler's shift 3.0 (SD3 paper, Esser et
al. 2024, §3.1 and §5.3.2; ``scheduler_config.json`` ``shift: 3.0``); flow-Euler 28 steps, CFG 3.5
(SD3.5 Large's card), 1024 px.

Adapter keys: diffusers / PEFT ``transformer.transformer_blocks.N.attn.to_q``; kohya sd-scripts
``lora_unet_joint_blocks_N_x_block_attn_qkv`` (SAI's MMDiT names, fused qkv; mapped onto diffusers'
layers by :func:`sai_targets`) and ``lora_te1_`` / ``lora_te2_`` / ``lora_te3_``. T5 is never
adapted here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from t2ibench.architectures import (
    CostFigures,
    GenerationDefaults,
    Objective,
    TextEncoderPart,
    register_architecture,
    train_sample_s_from_generation,
)
from t2ibench.bases.flux import MMDiTBase, remap_fused_lora
from t2ibench.bases.sd15 import UNET_PRESETS

_ATTN = (
    r"transformer_blocks\.\d+\.attn2?\."
    r"(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)"
)
_MLP = r"transformer_blocks\.\d+\.(ff|ff_context)\.net\.(0\.proj|2)"
SD3_PRESETS = {
    "attn-only": {"unet": (_ATTN,), "te": UNET_PRESETS["attn-only"]["te"]},
    "attn-mlp": {"unet": (_ATTN, _MLP), "te": UNET_PRESETS["attn-mlp"]["te"]},
    "full": {"unet": (r".+",), "te": UNET_PRESETS["attn-mlp"]["te"]},
}


# SAI's MMDiT module names (kohya form, as sd-scripts' SD3 LoRAs save them) → diffusers'
# SD3Transformer2DModel paths, after diffusers 0.42 ``loaders/single_file_utils.py``
# ``convert_sd3_transformer_checkpoint_to_diffusers`` (lines 2018-2209): qkv chunked into three
# (2057-2080, attn2 2111-2122), proj → to_out.0 / to_add_out, mlp.fc1/fc2 → ff(.context).net.0.proj
# / net.2, adaLN_modulation.1 → norm1(_context).linear, swapped (shift, scale) → (scale, shift)
# in the last, context-pre-only block (2154-2163) and the final layer (2202-2207).
_SAI_BLOCK = {
    "x_block": {
        "attn_qkv": ["attn_to_q", "attn_to_k", "attn_to_v"],
        "attn_proj": ["attn_to_out_0"],
        "attn2_qkv": ["attn2_to_q", "attn2_to_k", "attn2_to_v"],
        "attn2_proj": ["attn2_to_out_0"],
        "mlp_fc1": ["ff_net_0_proj"],
        "mlp_fc2": ["ff_net_2"],
        "adaLN_modulation_1": ["norm1_linear"],
    },
    "context_block": {
        "attn_qkv": ["attn_add_q_proj", "attn_add_k_proj", "attn_add_v_proj"],
        "attn_proj": ["attn_to_add_out"],
        "mlp_fc1": ["ff_context_net_0_proj"],
        "mlp_fc2": ["ff_context_net_2"],
        "adaLN_modulation_1": ["norm1_context_linear"],
    },
}
_SAI_TOP = {
    "x_embedder_proj": "pos_embed_proj",
    "t_embedder_mlp_0": "time_text_embed_timestep_embedder_linear_1",
    "t_embedder_mlp_2": "time_text_embed_timestep_embedder_linear_2",
    "y_embedder_mlp_0": "time_text_embed_text_embedder_linear_1",
    "y_embedder_mlp_2": "time_text_embed_text_embedder_linear_2",
    "context_embedder": "context_embedder",
    "final_layer_linear": "proj_out",
}
_SAI = re.compile(r"joint_blocks_(\d+)_(x_block|context_block)_(.+)")


def sai_targets(stem: str, num_layers: int) -> tuple[list[str], bool] | None:
    """The diffusers kohya paths of a kohya SD3 stem, and whether its output halves swap (the
    last block's context modulation and the final layer's)."""
    if not stem.startswith("lora_unet_"):
        return None
    path = stem[len("lora_unet_") :]
    if path in _SAI_TOP:
        return [_SAI_TOP[path]], False
    if path == "final_layer_adaLN_modulation_1":
        return ["norm_out_linear"], True
    m = _SAI.fullmatch(path)
    if m is None:
        return None
    block, stream, name = int(m.group(1)), m.group(2), m.group(3)
    parts = _SAI_BLOCK[stream].get(name)
    if parts is None:
        return None
    swap = stream == "context_block" and name == "adaLN_modulation_1" and block == num_layers - 1
    return [f"transformer_blocks_{block}_{p}" for p in parts], swap


class SD3(MMDiTBase):
    single_file_parts: ClassVar[dict[str, tuple[str, ...]]] = {
        "CLIP-L": ("text_encoders.clip_l.",),
        "CLIP-G": ("text_encoders.clip_g.",),
        "T5": ("text_encoders.t5xxl.",),
        "VAE": ("first_stage_model.", "vae."),
    }

    def adapter_state(self, tensors: Mapping[str, Any], pipe: Any) -> dict[str, Any]:
        """kohya sd-scripts SD3 LoRAs on SAI's names onto diffusers' layers
        (:func:`t2ibench.bases.flux.remap_fused_lora`)."""
        model = pipe.transformer
        layers = int(model.config.num_layers)
        return remap_fused_lora(tensors, model, lambda stem: sai_targets(stem, layers), self.title)

    def bundled_variant(self, keys: list[str]) -> str:
        """SD3.5 Medium (MMDiT-X: a second attention in its first blocks, ``attn2``) or Large (38
        blocks), as diffusers' ``infer_diffusers_model_type`` tells them; SD3 Medium is not
        bundled."""
        from t2ibench.architectures import BaseModelError

        bare = [k.removeprefix("model.diffusion_model.") for k in keys]
        if any(k.startswith("joint_blocks.") and ".attn2." in k for k in bare):
            return "sd3.5-medium"
        if any(k.startswith("joint_blocks.37.") for k in bare):
            return "sd3.5-large"
        raise BaseModelError(
            "an SD3 single file that is neither SD3.5 Medium nor Large (SD3 Medium?): its "
            "configs are not bundled; pass its diffusers folder as config=DIR"
        )

    def condition(self, pipe: Any, captions: Sequence[str], device: Any) -> dict[str, Any]:
        import torch

        hidden, pooled = [], []
        for tokenizer, encoder in (
            (pipe.tokenizer, pipe.text_encoder),
            (pipe.tokenizer_2, pipe.text_encoder_2),
        ):
            out = encoder(self.ids(tokenizer, captions, device, 77), output_hidden_states=True)
            pooled.append(out[0])
            hidden.append(out.hidden_states[-2])
        clip = torch.cat(hidden, dim=-1)
        t5 = pipe.text_encoder_3(self.ids(pipe.tokenizer_3, captions, device, 256))[0]
        clip = torch.nn.functional.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
        return {"ehs": torch.cat([clip, t5], dim=-2), "pooled": torch.cat(pooled, dim=-1)}

    def predict(self, pipe: Any, noisy: Any, t: Any, cond: Mapping[str, Any]) -> Any:
        model = pipe.transformer
        return model(
            hidden_states=noisy.to(model.dtype),
            timestep=t.to(model.dtype),  # SD3 takes t in [0, 1000]
            encoder_hidden_states=cond["ehs"].to(model.dtype),
            pooled_projections=cond["pooled"].to(model.dtype),
            return_dict=False,
        )[0]


register_architecture(
    SD3(
        name="sd3",
        label="SD3",
        description="Stable Diffusion 3 / 3.5 (MMDiT, CLIP-L + bigG + T5-XXL, flow matching)",
        pipeline_classes=("StableDiffusion3Pipeline",),
        denoiser="transformer",
        text_encoders=(
            TextEncoderPart("te1", "text_encoder", "lora_te1", "CLIP ViT-L/14"),
            TextEncoderPart("te2", "text_encoder_2", "lora_te2", "OpenCLIP ViT-bigG/14"),
            TextEncoderPart("te3", "text_encoder_3", "lora_te3", "T5-XXL", trainable=False),
        ),
        presets=SD3_PRESETS,
        generation=GenerationDefaults(
            resolution=1024, steps=28, guidance_scale=3.5, scheduler="flow-euler"
        ),
        objective=Objective(
            "flow_matching",
            timestep_sampling="logit_normal",
            shift=3.0,
            description="velocity (noise − x), σ logit-normal shifted by 3.0",
        ),
        key_conventions={
            "diffusers/PEFT, SimpleTuner, ai-toolkit": "transformer.<diffusers path>.lora_A/B",
            "kohya sd-scripts": "lora_unet_joint_blocks_N_(x|context)_block_attn_qkv (SAI "
            "names, fused qkv split in three), lora_te1_/lora_te2_/lora_te3_",
            "t2ibench": "lora_unet_<diffusers path>",
        },
        checkpoint_markers=(
            "joint_blocks.0.context_block.adaLN_modulation.1.bias",
            "model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias",
        ),
        adapter_markers=(
            r"joint_blocks[._]\d+[._](x_block|context_block)",  # SAI / kohya names
            r"^lora_te[123]_",  # CLIP-L, bigG, T5 (shared with SDXL / FLUX but for T5)
            r"^text_encoder_3\.",
            # SD3.5 Medium's MMDiT-X second attention (a UNet's attn2 sits deeper in its path)
            r"^(lora_unet_|transformer\.)?transformer_blocks[._]\d+[._]attn2[._]",
        ),
        # Assumed, not measured: SD3.5 Large (8 B) at 1024 px, 28 steps with CFG: Replicate's
        # example run time for stabilityai/stable-diffusion-3.5-large, ~8.8 s (hardware not
        # stated; taken as an A100-class card); training by train_sample_s_from_generation.
        cost=CostFigures(
            image_s=8.8,
            train_sample_s=train_sample_s_from_generation(8.8, 28, 2),
            gpu="A100-class (not stated)",
            source="Replicate's example run time, SD3.5 Large, 28 steps (8.8 s)",
        ),
    )
)
