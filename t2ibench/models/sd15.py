"""Stable Diffusion 1.5's component configs, bundled so single-file checkpoints load offline.

``from_single_file`` needs a diffusers config folder for the pipeline's parts; without one it asks
the hub. These are the values of the ``stable-diffusion-v1-5/stable-diffusion-v1-5`` repository
(UNet 859,520,964 and CLIP-L 123,060,480 parameters, checked by the tests on the ``meta`` device),
with DDIM and no safety checker, written on demand into the t2ibench cache with the CLIP tokenizer.
The same configs size adapters on the real architecture (:func:`build_sd15` on the ``meta`` device).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from t2ibench.fsutil import atomic_folder, cache_root

# SD1.5's noise schedule and DDIM settings (scheduler/scheduler_config.json of the hub repo).
SD15_SCHEDULER = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "trained_betas": None,
}

UNET = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
}
VAE = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
TEXT_ENCODER = {
    "architectures": ["CLIPTextModel"],
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "model_type": "clip_text_model",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "projection_dim": 768,
    "vocab_size": 49408,
}
MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "feature_extractor": [None, None],
    "requires_safety_checker": False,
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "DDIMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
# Bump when a value above changes so the cached folder is rewritten.
VERSION = 1

UNET_PARAMS = 859_520_964
TEXT_ENCODER_PARAMS = 123_060_480


def build_sd15(device: str = "meta") -> tuple[Any, Any]:
    """``(unet, text_encoder)`` with SD1.5's architecture; on ``meta`` no memory is used.

    On a real device the weights are random (the full-size benchmark step uses that).
    """
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device(device):
        unet = UNet2DConditionModel.from_config(UNET)
        text_encoder = CLIPTextModel(CLIPTextConfig.from_dict(TEXT_ENCODER))
    return unet, text_encoder


def sd15_config_folder(cache: Path | None = None) -> Path:
    """A diffusers config folder (no weights) for SD1.5, for ``from_single_file(config=...)``."""
    from t2ibench.models.tokenizer import write_clip_tokenizer

    folder = (cache or cache_root()) / f"sd15-config-v{VERSION}"
    if _complete(folder):
        return folder
    with atomic_folder(folder, _complete) as tmp:
        files = {
            "unet/config.json": UNET,
            "vae/config.json": VAE,
            "text_encoder/config.json": TEXT_ENCODER,
            "scheduler/scheduler_config.json": {"_class_name": "DDIMScheduler", **SD15_SCHEDULER},
        }
        for rel, data in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        write_clip_tokenizer(tmp / "tokenizer")
        # model_index.json last: its presence marks a complete folder.
        (tmp / "model_index.json").write_text(
            json.dumps(MODEL_INDEX, indent=2, sort_keys=True) + "\n"
        )
    return folder


def _complete(folder: Path) -> bool:
    return (folder / "model_index.json").is_file()
