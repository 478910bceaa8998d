"""The toy base model's parts: the real CLIP tokenizer (built offline), tiny text encoder and UNet.

The pipeline folder (``t2ibench/toy/weights/base``) is a plain diffusers ``StableDiffusionPipeline``
folder — ``model_index.json``, ``unet``, ``vae``, ``text_encoder``, ``tokenizer``, ``scheduler`` — so
it loads through exactly the code path of a local SD1.5 folder.
"""

from __future__ import annotations

from pathlib import Path

from t2ibench.models.sd15 import SD15_SCHEDULER

TEXT_CONFIG = dict(
    vocab_size=49408,
    hidden_size=64,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=77,
    projection_dim=64,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)

UNET_CONFIG = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(64, 128),
    layers_per_block=1,
    cross_attention_dim=64,
    attention_head_dim=8,
    norm_num_groups=16,
)

# SD1.5's training noise schedule; DDIM with SD1.5's settings is what the protocol samples with.
SCHEDULE = SD15_SCHEDULER


def clip_tokenizer():
    """The real CLIP BPE tokenizer (49,408 tokens), written offline by ``t2ibench.models``."""
    import tempfile

    from transformers import CLIPTokenizer

    from t2ibench.models.tokenizer import write_clip_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        return CLIPTokenizer.from_pretrained(write_clip_tokenizer(Path(tmp)))


def build_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))


def build_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**UNET_CONFIG)


def noise_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(**{k: v for k, v in SCHEDULE.items() if k != "set_alpha_to_one"})


def save_pipeline(folder: Path, unet, text_encoder, vae=None) -> Path:
    """Assemble and save the fp16 diffusers folder (reuses ``folder/vae`` if ``vae`` is None)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline

    folder = Path(folder)
    if vae is None:
        vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.float32)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        unet=unet,
        scheduler=DDIMScheduler(**SCHEDULE),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(torch.float16)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
