"""FLUX.1 (dev / schnell): FluxTransformer2DModel (19 double-stream MMDiT blocks with joint
text-image attention, 38 single-stream blocks), CLIP-L pooled + T5-XXL text conditioning, a
16-channel VAE with shift and scale, rectified-flow (flow matching) training; flow-Euler 28 steps,
distilled guidance 3.5, 1024 px (diffusers' FLUX.1-dev defaults).

Training follows kohya sd-scripts' recommended FLUX LoRA settings (docs: ``--timestep_sampling
shift --discrete_flow_shift 3.1582 --model_prediction_type raw --guidance_scale 1.0``): σ
logit-normal, the velocity target, the guidance embedding fed 1.0; σ shifted as the sampler shifts
(with the scheduler's dynamic shifting by the image size, sd-scripts' ``flux_shift``: 3.1582 at
1024 px). Generation without a guidance embedding is true classifier-free guidance
(``call_kwargs``). The T5 encoder is never adapted (as in sd-scripts, ai-toolkit and diffusers'
FLUX LoRA script); CLIP-L can be (kohya ``lora_te1_``).

Adapter keys: diffusers / ai-toolkit / SimpleTuner ``transformer.transformer_blocks.N.attn.to_q``
and ``transformer.single_transformer_blocks.N...``; kohya sd-scripts names BFL's
modules ``lora_unet_double_blocks_N_img_attn_qkv`` / ``lora_unet_single_blocks_N_linear1`` (fused
q/k/v), ComfyUI the same dotted (``diffusion_model.double_blocks.N.img_attn.qkv``); t2ibench writes
``lora_unet_<diffusers path>``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from t2ibench.architectures import (
    BaseArchitecture,
    CostFigures,
    GenerationDefaults,
    Objective,
    TextEncoderPart,
    register_architecture,
    train_sample_s_from_generation,
)
from t2ibench.bases.sd15 import UNET_PRESETS

_ATTN = (
    r"(single_)?transformer_blocks\.\d+\.attn\."
    r"(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)"
)
_MLP = (
    r"transformer_blocks\.\d+\.(ff|ff_context)\.net\.(0\.proj|2)",
    r"single_transformer_blocks\.\d+\.(proj_mlp|proj_out)",
)
_TE = UNET_PRESETS["attn-mlp"]["te"]  # CLIP-L's attention and MLP
FLUX_PRESETS = {
    "attn-only": {"unet": (_ATTN,), "te": UNET_PRESETS["attn-only"]["te"]},
    "attn-mlp": {"unet": (_ATTN, *_MLP), "te": _TE},
    # + the AdaLN modulations, embedders and the output projection: every Linear
    "full": {"unet": (r".+",), "te": _TE},
}


def _module(model: Any, kohya_path: str) -> Any:
    """The module of ``model`` whose dotted name, with dots as ``_``, is ``kohya_path``."""
    for name, module in model.named_modules():
        if name.replace(".", "_") == kohya_path:
            return module
    raise KeyError(kohya_path)


#: kohya sd-scripts' recommended FLUX.1 shift (``--discrete_flow_shift``)
FLUX_SHIFT = 3.1582


class MMDiTBase(BaseArchitecture):
    """A transformer base with flow matching (FLUX here; SD3 and FLUX.2 share the loading)."""

    #: part → key prefixes (any one enough) a single file must hold to load with the bundled
    #: configs alone (they carry no weights): an all-in-one file, as ComfyUI's
    single_file_parts: ClassVar[dict[str, tuple[str, ...]]] = {}

    def bundled_variant(self, keys: list[str]) -> str:
        """The bundled config (``t2ibench/bases/configs/<name>``) of a single file's keys."""
        raise NotImplementedError

    def load(self, kind: str, where: Any, *, dtype: Any, allow_pickle: bool, config: Any) -> Any:
        import diffusers

        from t2ibench.architectures import dtype_kwarg, hub_pipeline

        cls = getattr(diffusers, self.pipeline_classes[0])
        common = {dtype_kwarg(): dtype}
        if kind == "folder":
            return self.load_folder(where, dtype)
        if kind == "hub":
            return hub_pipeline(cls, where, common)
        from t2ibench.bases.bundled import load_single_file

        return load_single_file(
            cls, where, config, self.title, self.bundled_variant, self.single_file_parts, common
        )

    def training_loss(
        self, pipe, latents, captions, gen, scheduler, *, autocast=None, before_predict=None
    ):
        from t2ibench.bases.objectives import flow_matching_mse

        return flow_matching_mse(
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
    def ids(tokenizer: Any, captions: Sequence[str], device: Any, limit: int = 512) -> Any:
        return tokenizer(
            list(captions),
            padding="max_length",
            max_length=min(int(tokenizer.model_max_length), limit),
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(device)


# BFL module names (as sd-scripts saves FLUX.1 LoRAs) → diffusers' FluxTransformer2DModel
# paths, from diffusers' published checkpoint conversion (scripts/convert_flux_to_diffusers.py).
# A list: the fused projection's rows, in order, split over those modules.
_BFL_DOUBLE = {
    "img_attn_qkv": ["attn_to_q", "attn_to_k", "attn_to_v"],
    "img_attn_proj": ["attn_to_out_0"],
    "img_mlp_0": ["ff_net_0_proj"],
    "img_mlp_2": ["ff_net_2"],
    "img_mod_lin": ["norm1_linear"],
    "txt_attn_qkv": ["attn_add_q_proj", "attn_add_k_proj", "attn_add_v_proj"],
    "txt_attn_proj": ["attn_to_add_out"],
    "txt_mlp_0": ["ff_context_net_0_proj"],
    "txt_mlp_2": ["ff_context_net_2"],
    "txt_mod_lin": ["norm1_context_linear"],
}
_BFL_SINGLE = {
    "linear1": ["attn_to_q", "attn_to_k", "attn_to_v", "proj_mlp"],
    "linear2": ["proj_out"],
    "modulation_lin": ["norm_linear"],
}
_BFL_TOP = {
    "img_in": "x_embedder",
    "txt_in": "context_embedder",
    "time_in_in_layer": "time_text_embed_timestep_embedder_linear_1",
    "time_in_out_layer": "time_text_embed_timestep_embedder_linear_2",
    "vector_in_in_layer": "time_text_embed_text_embedder_linear_1",
    "vector_in_out_layer": "time_text_embed_text_embedder_linear_2",
    "guidance_in_in_layer": "time_text_embed_guidance_embedder_linear_1",
    "guidance_in_out_layer": "time_text_embed_guidance_embedder_linear_2",
    "final_layer_linear": "proj_out",
}
#: (shift, scale) in BFL's final layer, (scale, shift) in diffusers' ``norm_out``: diffusers 0.42
#: ``single_file_utils.py`` lines 2480-2486 and ``lora_conversion_utils.py`` lines 646-657 swap it
_BFL_SWAPPED = {"final_layer_adaLN_modulation_1": "norm_out_linear"}
_BFL = re.compile(r"(double_blocks|single_blocks)_(\d+)_(.+)")


def remap_fused_lora(
    tensors: Mapping[str, Any],
    model: Any,
    targets_of: Callable[[str], tuple[list[str], bool] | None],
    family: str,
) -> dict[str, Any]:
    """kohya tensors named after the original (BFL / SAI) modules, onto diffusers' modules.

    ``targets_of(stem)`` gives the diffusers kohya paths a stem's module became and whether its
    output halves are swapped (the original's ``adaLN_modulation`` is (shift, scale), diffusers'
    ``AdaLayerNormContinuous`` (scale, shift): ``swap_scale_shift`` in diffusers'
    ``loaders/single_file_utils.py``), or None for a stem kept as it is. A fused projection
    (``qkv``) is ``up @ down``; its row blocks are the parts' ΔW, so each part keeps ``down`` and
    takes its rows of ``up`` (the same ΔW exactly); a swap reorders the rows of ``up``. Only LoRA
    tensors split or reorder this way; another method on such a layer is refused in one line."""
    import torch

    from t2ibench.errors import ConfigError

    grouped: dict[str, dict[str, Any]] = {}
    for key, value in tensors.items():
        stem, _, suffix = key.partition(".")
        grouped.setdefault(stem, {})[suffix] = value
    out: dict[str, Any] = {}
    for stem, group in grouped.items():
        found = targets_of(stem)
        if found is None:
            out.update({f"{stem}.{k}": v for k, v in group.items()})
            continue
        targets, swap = found
        if len(targets) == 1 and not swap:
            out.update({f"lora_unet_{targets[0]}.{k}": v for k, v in group.items()})
            continue
        other = sorted(set(group) - {"lora_down.weight", "lora_up.weight", "alpha"})
        if other:
            what = "a fused" if len(targets) > 1 else "a (shift, scale)"
            raise ConfigError(
                f"{stem}: {what} {family} layer holds {other[0]}; only LoRA tensors can be "
                "split or reordered onto diffusers' layers"
            )
        up = group["lora_up.weight"]
        if swap:
            shift, scale = up.chunk(2, dim=0)
            up = torch.cat([scale, shift], dim=0)
        start = 0
        for target in targets:
            try:
                rows = _module(model, target).out_features
            except KeyError:
                raise ConfigError(
                    f"{stem}: its diffusers layer {target} is not in this {family} model"
                ) from None
            out[f"lora_unet_{target}.lora_down.weight"] = group["lora_down.weight"]
            out[f"lora_unet_{target}.lora_up.weight"] = up[start : start + rows]
            if "alpha" in group:
                out[f"lora_unet_{target}.alpha"] = group["alpha"]
            start += rows
        if start != up.shape[0]:
            raise ConfigError(
                f"{stem}: {up.shape[0]} output rows, but its diffusers layers hold {start}"
            )
    return out


class Flux(MMDiTBase):
    single_file_parts: ClassVar[dict[str, tuple[str, ...]]] = {
        "CLIP-L": ("text_encoders.clip_l.",),
        "T5": ("text_encoders.t5xxl.",),
        "VAE": ("vae.", "first_stage_model."),
    }

    def bundled_variant(self, keys: list[str]) -> str:
        """FLUX.1 [dev] has the guidance embedding, [schnell] not (diffusers' ``flux-dev`` /
        ``flux-schnell`` test in ``infer_diffusers_model_type``)."""
        guided = any(
            k.removeprefix("model.diffusion_model.").startswith("guidance_in.") for k in keys
        )
        return "flux.1-dev" if guided else "flux.1-schnell"

    def adapter_state(self, tensors: Mapping[str, Any], pipe: Any) -> dict[str, Any]:
        """kohya sd-scripts FLUX LoRAs on BFL's names, onto diffusers' modules
        (:func:`remap_fused_lora`)."""

        return remap_fused_lora(tensors, pipe.transformer, self._bfl_targets, self.title)

    @staticmethod
    def _bfl_targets(stem: str) -> tuple[list[str], bool] | None:
        """The diffusers kohya paths of a BFL-named FLUX.1 stem, and whether its halves swap."""
        if not stem.startswith("lora_unet_"):
            return None
        path = stem[len("lora_unet_") :]
        if path in _BFL_TOP:
            return [_BFL_TOP[path]], False
        if path in _BFL_SWAPPED:
            return [_BFL_SWAPPED[path]], True
        m = _BFL.fullmatch(path)
        if m is None:
            return None
        table = _BFL_DOUBLE if m.group(1) == "double_blocks" else _BFL_SINGLE
        block = (
            "transformer_blocks" if m.group(1) == "double_blocks" else "single_transformer_blocks"
        )
        parts = table.get(m.group(3))
        if parts is None:
            return None
        return [f"{block}_{m.group(2)}_{p}" for p in parts], False

    def flow_shift(self, scheduler: Any, latents: Any) -> float:
        """The sampler's shift for this image size: with ``use_dynamic_shifting`` (FLUX.1's
        scheduler config) ``exp(mu)``, ``mu`` linear in the packed image-token count exactly as
        ``FluxPipeline.__call__`` computes it (``calculate_shift``); at 1024 px (4096 tokens) that
        is ``exp(1.15)`` = kohya's 3.1582, which is kohya sd-scripts' ``--timestep_sampling
        flux_shift`` (``library/flux_train_utils.py``, ``get_noisy_model_input_and_timesteps``).
        Without dynamic shifting: the objective's static shift."""
        import math

        cfg = scheduler.config
        if not cfg.get("use_dynamic_shifting", False):
            return self.objective.shift
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        h, w = latents.shape[-2:]
        mu = calculate_shift(
            (h // 2) * (w // 2),  # 2×2-packed latent tokens
            cfg.get("base_image_seq_len", 256),
            cfg.get("max_image_seq_len", 4096),
            cfg.get("base_shift", 0.5),
            cfg.get("max_shift", 1.15),
        )
        return math.exp(mu)

    @staticmethod
    def sequence_length(pipe: Any) -> int:
        """T5 tokens per prompt: the tokenizer's declared length, at most FLUX.1's 512 (the same
        length :meth:`condition` trains with)."""
        return int(min(512, pipe.tokenizer_2.model_max_length))

    def call_kwargs(self, pipe: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        """FluxPipeline's names for the protocol's settings. A transformer with FLUX.1-dev's
        distilled guidance embedding takes ``guidance_scale`` as that embedding; one without
        (``guidance_embeds`` false: schnell, a base trained with caption dropout) is guided by true
        classifier-free guidance (``true_cfg_scale``) against the negative prompt, the empty
        caption when none is given (set the guidance scale to 1 for none: schnell's way). The T5
        length is the tokenizer's (:meth:`sequence_length`), as in training."""
        out = dict(kwargs)
        if getattr(pipe, "tokenizer_2", None) is not None:
            out["max_sequence_length"] = self.sequence_length(pipe)
        if not pipe.transformer.config.guidance_embeds and "guidance_scale" in out:
            out["true_cfg_scale"] = out.pop("guidance_scale")
            if out.get("negative_prompt") is None:
                prompt = out.get("prompt")
                n = len(prompt) if isinstance(prompt, list) else 1
                out["negative_prompt"] = [""] * n if isinstance(prompt, list) else ""
        return super().call_kwargs(pipe, out)

    def condition(self, pipe: Any, captions: Sequence[str], device: Any) -> dict[str, Any]:
        pooled = pipe.text_encoder(self.ids(pipe.tokenizer, captions, device)).pooler_output
        t5 = pipe.text_encoder_2(self.ids(pipe.tokenizer_2, captions, device))[0]
        return {"pooled": pooled, "t5": t5}

    def predict(self, pipe: Any, noisy: Any, t: Any, cond: Mapping[str, Any]) -> Any:
        import torch

        model = pipe.transformer
        b, c, h, w = noisy.shape
        packed = pipe._pack_latents(noisy, b, c, h, w)
        img_ids = pipe._prepare_latent_image_ids(b, h // 2, w // 2, noisy.device, model.dtype)
        txt_ids = torch.zeros(cond["t5"].shape[1], 3, device=noisy.device, dtype=model.dtype)
        guidance = None
        if model.config.guidance_embeds:
            guidance = torch.ones(b, device=noisy.device, dtype=torch.float32)
        out = model(
            hidden_states=packed.to(model.dtype),
            timestep=(t / 1000).to(model.dtype),
            guidance=guidance,
            pooled_projections=cond["pooled"].to(model.dtype),
            encoder_hidden_states=cond["t5"].to(model.dtype),
            txt_ids=txt_ids,
            img_ids=img_ids,
            return_dict=False,
        )[0]
        sf = pipe.vae_scale_factor
        return pipe._unpack_latents(out, h * sf, w * sf, sf)


register_architecture(
    Flux(
        name="flux",
        label="FLUX.1",
        description="FLUX.1 dev/schnell (12 B MMDiT, CLIP-L pooled + T5-XXL, flow matching)",
        pipeline_classes=("FluxPipeline",),
        denoiser="transformer",
        text_encoders=(
            TextEncoderPart("te1", "text_encoder", "lora_te1", "CLIP ViT-L/14 (pooled)"),
            TextEncoderPart("te2", "text_encoder_2", "lora_te2", "T5-XXL", trainable=False),
        ),
        presets=FLUX_PRESETS,
        generation=GenerationDefaults(
            resolution=1024, steps=28, guidance_scale=3.5, scheduler="flow-euler"
        ),
        objective=Objective(
            "flow_matching",
            timestep_sampling="logit_normal",
            shift=FLUX_SHIFT,
            description="velocity (noise − x), σ logit-normal shifted as the sampler shifts "
            "(FLUX.1's dynamic shift: 3.1582 at 1024 px, kohya's)",
        ),
        key_conventions={
            "diffusers/PEFT, ai-toolkit, SimpleTuner": "transformer.<diffusers path>.lora_A/B",
            "kohya sd-scripts": "lora_unet_double_blocks_N_img_attn_qkv, "
            "lora_unet_single_blocks_N_linear1 (BFL names, fused qkv), lora_te1_ (CLIP-L)",
            "ComfyUI": "diffusion_model.double_blocks.N.img_attn.qkv.lora_down/up (BFL names)",
            "t2ibench": "lora_unet_<diffusers path>",
        },
        checkpoint_markers=(
            "double_blocks.0.img_attn.norm.key_norm.scale",
            "model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale",
        ),
        adapter_markers=(
            r"^lora_te1_",  # CLIP-L (SDXL and SD3 share the name)
            # FLUX.1's single blocks: separate q/k/v and an MLP projection (FLUX.2 fuses them)
            r"single_transformer_blocks[._]\d+[._](attn[._]to_[qkv]\b|proj_mlp)",
            r"(double|single)_blocks[._]\d+[._]",  # BFL module names
        ),
        # Assumed, not measured: FLUX.1-dev at 1024 px in 16-bit, 30 steps in 6.2 s on an
        # RTX 4090 (gigagpu.com's FLUX.1-dev benchmark, diffusers 0.30), so 5.8 s for 28; dev is
        # guidance-distilled: one forward a step; training by train_sample_s_from_generation.
        cost=CostFigures(
            image_s=5.8,
            train_sample_s=train_sample_s_from_generation(5.8, 28, 1),
            gpu="RTX 4090",
            source="gigagpu.com FLUX.1-dev benchmark (30 steps, fp16: 6.2 s), scaled to 28",
        ),
    )
)
