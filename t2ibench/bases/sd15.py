"""Stable Diffusion 1.5 (and the tiny / toy look-alikes): UNet2DConditionModel, one CLIP-L text
encoder, epsilon prediction on SD's scaled-linear DDPM schedule, DDIM 30 steps, CFG 7, 512 px.

Loads a local ``StableDiffusionPipeline`` folder, a single ``.safetensors`` in the original
(CompVis / A1111) layout with the bundled SD1.5 configs (:mod:`t2ibench.models.sd15`), a pickle
``.ckpt`` only when allowed, or a hub id from the local cache. The plain attention processor is
pinned (no SDPA / xformers choice), so CPU runs are bit-reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from t2ibench.architectures import (
    BaseArchitecture,
    GenerationDefaults,
    Objective,
    TextEncoderPart,
    register_architecture,
)
from t2ibench.errors import ConfigError

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")

# Transformer2DModel blocks in the UNet: every down/mid/up ``attentions.N`` subtree.
_UNET_TRANSFORMER = r"(down_blocks\.\d+|up_blocks\.\d+|mid_block)\.attentions\.\d+\."
UNET_ATTN = _UNET_TRANSFORMER + r"transformer_blocks\.\d+\.attn[12]\.(to_q|to_k|to_v|to_out\.0)"
UNET_ATTN_MLP = _UNET_TRANSFORMER + r".+"
UNET_RESNET = (
    r"(down_blocks\.\d+|up_blocks\.\d+|mid_block)\.resnets\.\d+\."
    r"(conv1|conv2|conv_shortcut|time_emb_proj)"
)
UNET_SAMPLERS = r"(down_blocks\.\d+\.downsamplers|up_blocks\.\d+\.upsamplers)\.0\.conv"
UNET_ENDS = r"conv_in|conv_out|time_embedding\.linear_[12]"

# transformers >= 5 dropped the ``text_model.`` level of CLIPTextModel; kohya keys keep it.
TE_ATTN = r"(text_model\.)?encoder\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|out_proj)"
TE_MLP = r"(text_model\.)?encoder\.layers\.\d+\.mlp\.(fc1|fc2)"

#: attn-only / attn-mlp / full on diffusers' UNet and CLIP names. On SD1.5 this gives PROTOCOL's
#: counts: attn-only UNet 128 + TE 48, attn-mlp 192 + 72, full 282 + 72.
UNET_PRESETS = {
    "attn-only": {"unet": (UNET_ATTN,), "te": (TE_ATTN,)},
    "attn-mlp": {"unet": (UNET_ATTN_MLP,), "te": (TE_ATTN, TE_MLP)},
    "full": {
        "unet": (UNET_ATTN_MLP, UNET_RESNET, UNET_SAMPLERS, UNET_ENDS),
        "te": (TE_ATTN, TE_MLP),
    },
}


class UNetBase(BaseArchitecture):
    """A UNet2DConditionModel base with CLIP text encoder(s) (SD1.5 here, SDXL extends it)."""

    def finish(self, pipe: Any, attention: str) -> None:
        from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

        if attention == "plain":
            processor = AttnProcessor()
        elif attention == "sdpa":
            processor = AttnProcessor2_0()
        else:
            raise ConfigError(f"attention: {attention!r} is not 'plain' or 'sdpa'")
        for part in (pipe.unet, pipe.vae):
            part.set_attn_processor(processor)

    def training_loss(
        self, pipe, latents, captions, gen, scheduler, *, autocast=None, before_predict=None
    ):
        from t2ibench.bases.objectives import diffusion_mse

        return diffusion_mse(
            self,
            pipe,
            latents,
            captions,
            gen,
            scheduler,
            autocast=autocast,
            before_predict=before_predict,
        )

    @staticmethod
    def tokens(tokenizer: Any, captions: Sequence[str], device: Any) -> Any:
        return tokenizer(
            list(captions),
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(device)


class SD15(UNetBase):
    def load(self, kind: str, where: Any, *, dtype: Any, allow_pickle: bool, config: Any) -> Any:
        from diffusers import StableDiffusionPipeline

        from t2ibench.architectures import BaseModelError, dtype_kwarg, hub_pipeline, wrap_load

        common = {dtype_kwarg(): dtype, "safety_checker": None, "requires_safety_checker": False}
        if kind == "folder":
            return wrap_load(
                lambda: StableDiffusionPipeline.from_pretrained(
                    where, local_files_only=True, **common
                ),
                where,
            )
        if kind == "hub":
            return hub_pipeline(StableDiffusionPipeline, where, common)
        path = Path(where)
        suffix = path.suffix.lower()
        if suffix in PICKLE_SUFFIXES and not allow_pickle:
            raise BaseModelError(
                f"{path}: pickle checkpoints ({suffix}) can run code when loaded; convert it to "
                ".safetensors, or pass allow_pickle=True (--allow-pickle) to read it with "
                "weights_only=True"
            )
        if suffix != ".safetensors" and suffix not in PICKLE_SUFFIXES:
            raise BaseModelError(
                f"{path}: unknown checkpoint type {suffix!r}; expected .safetensors"
            )
        if config is None:
            from t2ibench.models.sd15 import sd15_config_folder

            config_folder = sd15_config_folder()
        else:
            config_folder = Path(config).expanduser()
            if not (config_folder / "model_index.json").is_file():
                raise BaseModelError(
                    f"{config_folder}: config must be a local diffusers folder with "
                    "model_index.json"
                )
        # diffusers reads pickles with torch.load(weights_only=True) (load_state_dict).
        return wrap_load(
            lambda: StableDiffusionPipeline.from_single_file(
                str(path), config=str(config_folder), local_files_only=True, **common
            ),
            path,
        )

    def condition(self, pipe: Any, captions: Sequence[str], device: Any) -> dict[str, Any]:
        return {"ehs": pipe.text_encoder(self.tokens(pipe.tokenizer, captions, device))[0]}

    def predict(self, pipe: Any, noisy: Any, t: Any, cond: Mapping[str, Any]) -> Any:
        unet = pipe.unet
        return unet(noisy.to(unet.dtype), t, cond["ehs"].to(unet.dtype)).sample


register_architecture(
    SD15(
        name="sd15",
        label="SD1.5",
        description="Stable Diffusion 1.x (UNet 860 M, CLIP ViT-L/14 text encoder, epsilon)",
        pipeline_classes=("StableDiffusionPipeline",),
        denoiser="unet",
        text_encoders=(TextEncoderPart("te", "text_encoder", "lora_te", "CLIP ViT-L/14 (OpenAI)"),),
        presets=UNET_PRESETS,
        generation=GenerationDefaults(
            resolution=512, steps=30, guidance_scale=7.0, scheduler="ddim"
        ),
        objective=Objective("epsilon", description="noise prediction, scaled-linear DDPM betas"),
        key_conventions={
            "kohya": "lora_unet_<diffusers path>, lora_te_text_model_<path> (sd-scripts, LyCORIS)",
            "diffusers/PEFT": "unet.<path>.lora_A.weight, text_encoder.<path>...",
            "LyCORIS save_weights": "lycoris_<path> (SimpleTuner)",
        },
        # An SD1.x checkpoint has no key of its own (SD2 and SDXL do): the fallback below.
        checkpoint_markers=(),
        # Adapters: kohya / diffusers names with SD1.5's first-level attention (SDXL's first
        # level has none), or its one-encoder ``lora_te_`` prefix.
        adapter_markers=(
            r"^lora_unet_down_blocks_0_attentions_",
            r"^lora_unet_up_blocks_3_attentions_",
            r"^(unet\.|base_model\.model\.)?down_blocks\.0\.attentions\.",
            r"^lycoris_down_blocks_0_attentions_",
        ),
        fallback=True,
    )
)
