"""A tiny Stable Diffusion 1.5 look-alike with random weights, built from configs (no hub).

Same classes and module names as SD1.5 (``UNet2DConditionModel`` with ``CrossAttnDownBlock2D`` /
``Transformer2DModel`` / ``ResnetBlock2D`` / down- and upsamplers, a 4-level ``AutoencoderKL`` with
SD's 8× latent factor, ``CLIPTextModel``, the real CLIP tokenizer and SD1.5's DDIM schedule), so
adapter presets, single-file conversion and generation run the same code as on the real model, but
the whole folder is a few MB and a UNet step on CPU takes milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from t2ibench.errors import ConfigError
from t2ibench.fsutil import atomic_folder, file_sha256
from t2ibench.models.sd15 import SD15_SCHEDULER

MARKER = "t2ibench-tiny-base.json"
# Bump when the recipe below changes so cached folders are rebuilt instead of silently reused.
RECIPE_VERSION = 2


def _unet_config(resolution: int) -> dict:
    return dict(
        sample_size=resolution // 8,
        in_channels=4,
        out_channels=4,
        # Three levels instead of SD's four; the third channel change of SD is kept by 32 → 64, so
        # ``conv_shortcut`` exists, and the last down block has no attention, as in SD.
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64, 64),
        layers_per_block=2,
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=16,
        act_fn="silu",
        center_input_sample=False,
        downsample_padding=1,
        flip_sin_to_cos=True,
        freq_shift=0,
        mid_block_scale_factor=1,
        norm_eps=1e-5,
        use_linear_projection=False,  # SD1.5's 1×1 conv proj_in/proj_out
    )


def _vae_config(resolution: int) -> dict:
    return dict(
        in_channels=3,
        out_channels=3,
        # Four levels like SD's VAE, so the latent is 1/8 of the image side.
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=resolution,
        scaling_factor=0.18215,
        act_fn="silu",
    )


def _text_config() -> dict:
    return dict(
        vocab_size=49408,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        projection_dim=32,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=1,
    )


def _folder_digest(folder: Path) -> str:
    """sha256 over every file (relative path + content) except the marker."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MARKER):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0")
        h.update(bytes.fromhex(file_sha256(path)))
    return h.hexdigest()


def _expected_marker(seed: int, resolution: int) -> dict:
    return {"recipe": RECIPE_VERSION, "seed": seed, "resolution": resolution}


def _is_valid(folder: Path, seed: int, resolution: int) -> bool:
    marker = folder / MARKER
    if not marker.is_file():
        return False
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    want = _expected_marker(seed, resolution)
    if any(data.get(k) != v for k, v in want.items()):
        return False
    return data.get("sha256") == _folder_digest(folder)


def build_tiny_pipeline(*, seed: int = 0, resolution: int = 64):
    """The tiny pipeline in memory (random weights from ``seed``; tokenizer files in a temp dir)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from t2ibench.models.tokenizer import write_clip_tokenizer

    if resolution % 64 or resolution < 64:
        raise ConfigError(f"tiny base resolution: {resolution} is not a positive multiple of 64")
    # fork_rng: building the base must not move the caller's global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**_unet_config(resolution))
        torch.manual_seed(seed + 1)
        vae = AutoencoderKL(**_vae_config(resolution))
        torch.manual_seed(seed + 2)
        text_encoder = CLIPTextModel(CLIPTextConfig(**_text_config()))
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(Path(tmp)))
    return StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=DDIMScheduler(**SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def make_tiny_base(folder: Path, *, seed: int = 0, resolution: int = 64) -> Path:
    """Write (or reuse) a complete diffusers ``StableDiffusionPipeline`` folder with random weights.

    Deterministic: the same ``seed`` and ``resolution`` give byte-identical files. A folder that
    already holds this build (marker + content hash match) is reused; otherwise the build happens in
    a temporary sibling folder that is renamed into place, so ``folder`` is never half-written.
    """
    from t2ibench.models.tokenizer import write_clip_tokenizer

    folder = Path(folder).expanduser().absolute()
    if _is_valid(folder, seed, resolution):
        return folder
    if folder.exists() and not (folder / MARKER).is_file() and any(folder.iterdir()):
        raise ConfigError(
            f"{folder}: exists and is not a t2ibench tiny base (no {MARKER}); choose an empty folder"
        )
    # A stale tiny base (other seed/recipe, or damaged) is swapped out; another process finishing
    # the same build first is kept.
    with atomic_folder(folder, lambda f: _is_valid(f, seed, resolution)) as tmp:
        pipe = build_tiny_pipeline(seed=seed, resolution=resolution)
        pipe.save_pretrained(tmp, safe_serialization=True)
        # transformers 5 saves only tokenizer.json; vocab.json + merges.txt let transformers 4
        # (and any BPE reader) load the same tokenizer too.
        write_clip_tokenizer(tmp / "tokenizer")
        _normalise_saved_configs(tmp)
        marker = {**_expected_marker(seed, resolution), "sha256": _folder_digest(tmp)}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
    return folder


def _normalise_saved_configs(folder: Path) -> None:
    """Drop fields that would make two builds differ (none today besides key order); sort keys."""
    for path in folder.rglob("*.json"):
        if path.name in {"vocab.json", "tokenizer.json"}:
            continue
        data = json.loads(path.read_text())
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
