"""Tiny random base models of other architecture classes, saved as diffusers folders from small
configs (same classes and module names as the real ones; a few MB; built in about a second)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from t2ibench.models.tokenizer import write_qwen_tokenizer

# SDXL's scaled-linear schedule (stabilityai/stable-diffusion-xl-base-1.0 scheduler_config.json).
SDXL_SCHEDULER = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
}


def _clip_text(with_projection: bool, seed: int):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="gelu" if with_projection else "quick_gelu",
        projection_dim=32,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=1,
    )
    torch.manual_seed(seed)
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(cfg).eval()


def make_tiny_sdxl(folder: Path, *, seed: int = 0) -> Path:
    """A ``StableDiffusionXLPipeline`` folder: SDXL's UNet classes (text_time added conditions,
    linear projections, a level without attention first, a 2-deep transformer level), two CLIP
    text encoders (the second with projection), SD's 4-level VAE; random weights."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTokenizer

    from t2ibench.models.tokenizer import write_clip_tokenizer

    folder = Path(folder)
    if (folder / "model_index.json").is_file():
        return folder
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(32, 64),
            layers_per_block=1,
            transformer_layers_per_block=(1, 2),
            attention_head_dim=(2, 4),
            cross_attention_dim=64,  # 32 + 32: both encoders' hidden states side by side
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=8 * 6 + 32,  # six size ids + pooled text
            norm_num_groups=16,
        ).eval()
        torch.manual_seed(seed + 1)
        vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 16, 32, 32),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=8,
            sample_size=64,
            scaling_factor=0.13025,
        ).eval()
        te1 = _clip_text(False, seed + 2)
        te2 = _clip_text(True, seed + 3)
    with tempfile.TemporaryDirectory() as tmp:
        tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(Path(tmp)))
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=te1,
        text_encoder_2=te2,
        tokenizer=tok,
        tokenizer_2=tok,
        unet=unet,
        scheduler=EulerDiscreteScheduler(**SDXL_SCHEDULER),
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    for sub in ("tokenizer", "tokenizer_2"):
        write_clip_tokenizer(folder / sub)  # vocab.json + merges.txt for any transformers
    return folder


# FLUX.1-dev's scheduler_config.json (resolution-dependent shift between 0.5 and 1.15).
FLUX_SCHEDULER = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
}


def make_tiny_flux(folder: Path, *, seed: int = 0) -> Path:
    """A ``FluxPipeline`` folder: FLUX.1's transformer classes (one double-stream and one
    single-stream block, joint attention, guidance embedding, RoPE), CLIP pooled + a T5 encoder, a
    VAE with FLUX's shift and scale; random weights. The T5 tokenizer is the CLIP one (FLUX's
    SentencePiece file cannot be built offline; the ids only have to fit the T5 vocabulary)."""
    import torch
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTokenizer

    from t2ibench.models.tokenizer import write_clip_tokenizer

    folder = Path(folder)
    if (folder / "model_index.json").is_file():
        return folder
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=16,  # 4 latent channels × a 2×2 patch
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=8,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            guidance_embeds=True,
            axes_dims_rope=(2, 2, 4),
        ).eval()
        torch.manual_seed(seed + 1)
        vae = _flow_vae(scaling_factor=0.3611, shift_factor=0.1159)
        te1 = _clip_text(False, seed + 2)
        torch.manual_seed(seed + 3)
        t5 = _t5_encoder()
    with tempfile.TemporaryDirectory() as tmp:
        tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(Path(tmp)))
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER),
        vae=vae,
        text_encoder=te1,
        tokenizer=tok,
        text_encoder_2=t5,
        tokenizer_2=tok,
        transformer=transformer,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    for sub in ("tokenizer", "tokenizer_2"):
        write_clip_tokenizer(folder / sub)
    return folder


def make_tiny_sd3(folder: Path, *, seed: int = 0) -> Path:
    """A ``StableDiffusion3Pipeline`` folder: SD3's MMDiT classes (joint blocks, the last one
    context-pre-only), CLIP-L and bigG look-alikes with projection, a T5 encoder (CLIP's
    tokenizer, as for FLUX), a 16-channel-style VAE with SD3's shift and scale; random weights."""
    import torch
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTokenizer

    from t2ibench.models.tokenizer import write_clip_tokenizer

    folder = Path(folder)
    if (folder / "model_index.json").is_file():
        return folder
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = SD3Transformer2DModel(
            sample_size=8,
            patch_size=2,
            in_channels=4,
            num_layers=2,
            attention_head_dim=8,
            num_attention_heads=2,
            joint_attention_dim=32,  # T5's width; the CLIP states are padded to it
            caption_projection_dim=16,
            pooled_projection_dim=64,  # both CLIP pooled embeddings side by side
            out_channels=4,
            pos_embed_max_size=16,
        ).eval()
        torch.manual_seed(seed + 1)
        vae = _flow_vae(scaling_factor=1.5305, shift_factor=0.0609)
        te1 = _clip_text(True, seed + 2)
        te2 = _clip_text(True, seed + 3)
        torch.manual_seed(seed + 4)
        t5 = _t5_encoder()
    with tempfile.TemporaryDirectory() as tmp:
        tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(Path(tmp)))
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        text_encoder=te1,
        tokenizer=tok,
        text_encoder_2=te2,
        tokenizer_2=tok,
        text_encoder_3=t5,
        tokenizer_3=tok,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    for sub in ("tokenizer", "tokenizer_2", "tokenizer_3"):
        write_clip_tokenizer(folder / sub)
    return folder


def _flow_vae(**factors: float):
    """A tiny 4-channel VAE with a flow base's latent scale and shift (FLUX's, SD3's)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
        use_quant_conv=False,
        use_post_quant_conv=False,
        **factors,
    ).eval()


def _t5_encoder():
    """A one-layer T5 encoder over CLIP's vocabulary (the tiny bases read CLIP's tokenizer)."""
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(vocab_size=49408, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4)
    ).eval()


# FLUX.2 [klein]'s scheduler_config.json: dynamic shifting (the pipeline passes its own ``mu``)
FLUX2_SCHEDULER = {**FLUX_SCHEDULER, "time_shift_type": "exponential"}


def make_tiny_flux2_klein(folder: Path, *, seed: int = 0) -> Path:
    """A ``Flux2KleinPipeline`` folder: FLUX.2's transformer classes (one double-stream block, one
    single-stream block with the fused ``to_qkv_mlp_proj``, 4-axis RoPE, no guidance embedding),
    a 27-layer Qwen3 (the pipeline stacks hidden states 9, 18, 27), the FLUX.2 VAE (2×2 patchify,
    batch-norm statistics set away from 0 / 1 so the normalisation matters); random weights."""
    import torch
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen2TokenizerFast, Qwen3Config, Qwen3ForCausalLM

    folder = Path(folder)
    if (folder / "model_index.json").is_file():
        return folder
    hidden = 16
    with tempfile.TemporaryDirectory() as tmp:
        tok = Qwen2TokenizerFast.from_pretrained(write_qwen_tokenizer(Path(tmp)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = Flux2Transformer2DModel(
            patch_size=1,
            in_channels=16,  # 4 latent channels × a 2×2 patch
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=8,
            num_attention_heads=2,
            joint_attention_dim=3 * hidden,  # three Qwen3 layers side by side
            timestep_guidance_channels=16,
            axes_dims_rope=(2, 2, 2, 2),
            guidance_embeds=False,
        ).eval()
        torch.manual_seed(seed + 1)
        vae = AutoencoderKLFlux2(
            block_out_channels=(8, 16, 32, 32),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=8,
            sample_size=64,
        ).eval()
        vae.bn.running_mean.copy_(0.1 * torch.randn(16))
        vae.bn.running_var.copy_(0.5 + torch.rand(16))
        torch.manual_seed(seed + 2)
        qwen = Qwen3ForCausalLM(
            Qwen3Config(
                vocab_size=len(tok),
                hidden_size=hidden,
                intermediate_size=32,
                num_hidden_layers=27,
                num_attention_heads=2,
                num_key_value_heads=1,
                head_dim=8,
                max_position_embeddings=64,
                tie_word_embeddings=True,
            )
        ).eval()
    pipe = Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX2_SCHEDULER),
        vae=vae,
        text_encoder=qwen,
        tokenizer=tok,
        transformer=transformer,
        is_distilled=True,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def delta_w(pipe, path) -> dict:
    """Every adapted Linear of the denoiser: its ΔW (the change of its output on the identity
    input) with the adapter file at ``path`` applied."""
    import torch

    from t2ibench.adapters import apply_adapter

    out = {}
    with torch.no_grad():
        layers = {n: m for n, m in pipe.transformer.named_modules() if hasattr(m, "in_features")}
        eye = {n: torch.eye(m.in_features) for n, m in layers.items()}
        before = {n: layers[n](eye[n]) for n in layers}
        with apply_adapter(pipe, path):
            for n in layers:
                d = layers[n](eye[n]) - before[n]
                if d.abs().max() > 0:
                    out[n] = d
    return out


def bfl_lora_tensors(path: str, down, up, form: str, *, alpha: float) -> dict:
    """One LoRA layer on the original model's module ``path`` (BFL's or SAI's, dotted:
    ``double_blocks.0.img_attn.qkv``, ``joint_blocks.0.x_block.attn.qkv``) as each tool saves it: ``kohya`` (sd-scripts: ``lora_unet_double_blocks_0_img_attn_qkv.lora_down``
    + ``alpha``), ``comfyui`` (``diffusion_model.<path>.lora_down`` + ``alpha``), ``ai-toolkit``
    (``diffusion_model.<path>.lora_A``, alpha/r folded into B: read at scale 1, as diffusers'
    ``_convert_non_diffusers_flux2_lora_to_diffusers`` does) or ``transformer`` (the same
    under ``transformer.``)."""
    import torch

    rank = down.shape[0]
    if form == "kohya":
        stem = "lora_unet_" + path.replace(".", "_")
        return {
            f"{stem}.lora_down.weight": down,
            f"{stem}.lora_up.weight": up,
            f"{stem}.alpha": torch.tensor(alpha),
        }
    if form == "comfyui":
        stem = f"diffusion_model.{path}"
        return {
            f"{stem}.lora_down.weight": down,
            f"{stem}.lora_up.weight": up,
            f"{stem}.alpha": torch.tensor(alpha),
        }
    prefix = {"ai-toolkit": "diffusion_model", "transformer": "transformer"}[form]
    return {
        f"{prefix}.{path}.lora_A.weight": down,
        f"{prefix}.{path}.lora_B.weight": up * (alpha / rank),
    }
