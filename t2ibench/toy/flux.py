"""The toy FLUX-class base: a tiny stock diffusers ``FluxPipeline`` folder (``weights/flux``).

Same architecture class as FLUX.1: ``FluxTransformer2DModel`` (double-stream blocks with joint
text-image attention, then single-stream blocks, 3-axis RoPE, AdaLN modulation from the timestep
and the pooled CLIP embedding), a T5 encoder for the token sequence and a CLIP text encoder for the
pooled vector, and ``FlowMatchEulerDiscreteScheduler`` with FLUX.1's resolution-dependent shift.
Toy-sized: 32 px images through the toy base's VAE (factor 4, 8×8×4 latents, packed 2×2 into 16
image tokens), both text encoders on the real 49,408-token CLIP tokenizer (no T5 vocabulary ships
offline; ``T5EncoderModel`` reads CLIP token ids), 24 tokens per prompt.

It is trained, sampled and adapted by the FLUX plug-in (``t2ibench.bases.flux``), from what the
folder declares: rectified flow, x_t = (1 − σ)·x₀ + σ·ε, the model predicts ε − x₀; σ logit-normal
with the scheduler's dynamic shift (the one the pipeline samples with); no guidance embedding, so
true classifier-free guidance against the empty caption; 24 T5 tokens (the tokenizer's length).
"""

from __future__ import annotations

from pathlib import Path

from t2ibench.toy.base import TEXT_CONFIG, clip_tokenizer

# Tokens per prompt for both encoders (toy prompts need ≤ 18), declared as the tokenizers' max
# length: at 77 / 512 the joint attention would spend most of its CPU time on padding.
SEQ_LEN = 24

# Pooled-vector encoder: small, it only feeds the AdaLN modulation (as CLIP-L does in FLUX.1).
CLIP_CONFIG = dict(
    TEXT_CONFIG, hidden_size=32, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2
)
T5_CONFIG = dict(
    vocab_size=49408,  # CLIP token ids (see the module docstring)
    d_model=64,
    d_kv=16,
    d_ff=192,
    num_layers=2,
    num_heads=4,
    relative_attention_num_buckets=16,
    relative_attention_max_distance=32,
    feed_forward_proj="gated-gelu",  # T5 v1.1, as FLUX.1's T5-XXL
    dropout_rate=0.0,
    pad_token_id=49407,
    eos_token_id=49407,
    decoder_start_token_id=49407,
)
TRANSFORMER_CONFIG = dict(
    patch_size=1,
    in_channels=16,  # 4 latent channels × 2×2 packing
    num_layers=2,  # double-stream (joint attention) blocks
    num_single_layers=4,
    attention_head_dim=16,
    num_attention_heads=8,
    joint_attention_dim=64,  # T5 d_model
    pooled_projection_dim=32,  # CLIP hidden size
    guidance_embeds=False,  # true classifier-free guidance, not FLUX.1-dev's distilled guidance
    axes_dims_rope=(4, 6, 6),
)
# FLUX.1's scheduler config: the shift depends on the image's token count (mu = calculate_shift).
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    shift=3.0,
    use_dynamic_shifting=True,
    base_shift=0.5,
    max_shift=1.15,
    base_image_seq_len=256,
    max_image_seq_len=4096,
)


def tokenizer():
    """The CLIP tokenizer with the toy's prompt length."""
    tok = clip_tokenizer()
    tok.model_max_length = SEQ_LEN
    return tok


def build_transformer():
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(**TRANSFORMER_CONFIG)


def build_text_encoders():
    """(CLIP text encoder for the pooled vector, T5 encoder for the sequence), random init."""
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    return CLIPTextModel(CLIPTextConfig(**CLIP_CONFIG)), T5EncoderModel(T5Config(**T5_CONFIG))


def scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)


def pipeline(transformer, text_encoder, text_encoder_2, vae):
    """A ``FluxPipeline`` of these parts with the toy's tokenizers and FLUX.1's scheduler."""
    from diffusers import FluxPipeline

    return FluxPipeline(
        scheduler=scheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer(),
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer(),
        transformer=transformer,
    )


def save_pipeline(folder: Path, transformer, text_encoder, text_encoder_2, vae) -> Path:
    """Assemble and save the fp16 ``FluxPipeline`` folder."""
    import torch

    pipe = pipeline(transformer, text_encoder, text_encoder_2, vae)
    pipe.to(torch.float16)
    pipe.save_pretrained(folder, safe_serialization=True)
    return Path(folder)
