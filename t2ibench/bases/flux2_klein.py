"""FLUX.2 [klein] (4 B / 9 B): Flux2Transformer2DModel (double-stream blocks, single-stream blocks
with fused ``to_qkv_mlp_proj``), a Qwen3 text encoder (hidden states of layers 9, 18, 27 stacked),
the FLUX.2 VAE (32 channels, 2×2 patchified, normalised by its batch-norm statistics), rectified
flow; flow-Euler, 1024 px. The distilled klein samples in 4 steps without guidance (diffusers'
``Flux2KleinPipeline``, ``is_distilled``); the base (undistilled) klein takes 50 steps, CFG 4.

Loads a local ``Flux2KleinPipeline`` folder (or a hub id from the local cache) and generates
through it; adapters on the transformer are read and applied like any other base's. **Training is
refused in one line**: its latents need the VAE's patchify + batch-norm normalisation and its
conditioning the Qwen3 chat-template prompt, neither wired into t2ibench's loop yet.

Adapter keys: diffusers ``transformer.single_transformer_blocks.N.attn.to_qkv_mlp_proj``,
``transformer.transformer_blocks.N.ff.linear_in``; BFL names ``double_blocks`` /
``single_blocks`` (shared with FLUX.1) are recognised, not mapped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from t2ibench.architectures import (
    GenerationDefaults,
    Objective,
    register_architecture,
)
from t2ibench.bases.flux import MMDiTBase
from t2ibench.errors import ConfigError

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


class Flux2Klein(MMDiTBase):
    def _refuse(self) -> None:
        raise ConfigError(
            "flux2-klein: training is not supported yet (its latents need the FLUX.2 VAE's "
            "patchify + batch-norm normalisation and its prompts the Qwen3 chat template); "
            "load, generate and evaluate-checkpoints work"
        )

    def condition(self, pipe: Any, captions: Sequence[str], device: Any) -> dict[str, Any]:
        self._refuse()
        return {}

    def predict(self, pipe: Any, noisy: Any, t: Any, cond: Mapping[str, Any]) -> Any:
        self._refuse()

    def training_scheduler(self, pipe: Any) -> Any:
        self._refuse()


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
            description="velocity (noise − x); training not wired (see the module)",
        ),
        key_conventions={
            "diffusers/PEFT": "transformer.<diffusers path> (to_qkv_mlp_proj, ff.linear_in)",
            "BFL names": "double_blocks / single_blocks (recognised, not mapped)",
            "t2ibench": "lora_unet_<diffusers path>",
        },
        adapter_markers=(
            r"to_qkv_mlp_proj",
            r"transformer_blocks[._]\d+[._]ff(_context)?[._]linear_(in|out)",
            r"(double|single)_blocks[._]\d+[._]",  # BFL module names, as FLUX.1's
        ),
    )
)
