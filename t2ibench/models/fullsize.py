"""Full-size models with random weights, built from configs (no download), saved to folders.

The paper profile's models at their real size — SD1.5 (UNet 859.5 M, CLIP-L text encoder, VAE),
DINOv2-L/14, OpenCLIP ViT-L/14, ConvNeXt V2-L and VGG-19 — written in the layouts the real loaders
read (``load_base(folder)``, ``create_encoder(name, weights=folder)``), so the paper's code path
runs at full model size on a machine with neither a model hub nor a GPU: for the slow test and the
benchmarks. Each folder is built once (marker file last) and reused.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from t2ibench.fsutil import remove_inside

# facebook/dinov2-large's config.json.
DINOV2_L = dict(
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    mlp_ratio=4,
    patch_size=14,
    image_size=518,
    layerscale_value=1.0,
    layer_norm_eps=1e-6,
    qkv_bias=True,
)
DONE = "t2ibench-fullsize.json"


def _build_once(folder: Path, what: str, build: Callable[[Path], None], seed: int) -> Path:
    import torch

    folder = Path(folder)
    if (folder / DONE).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.build-"))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            build(tmp)
        (tmp / DONE).write_text(json.dumps({"model": what, "seed": seed, "weights": "random"}))
        if folder.exists() or folder.is_symlink():  # an unfinished build of ours
            remove_inside(folder, folder.parent)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def make_random_sd15(folder: Path, *, seed: int = 0) -> Path:
    """A diffusers ``StableDiffusionPipeline`` folder: SD1.5's bundled configs, random weights."""

    def build(tmp: Path) -> None:
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextConfig, CLIPTextModel

        from t2ibench.models.sd15 import MODEL_INDEX, sd15_config_folder

        configs = sd15_config_folder()
        for name in ("tokenizer", "scheduler"):
            shutil.copytree(configs / name, tmp / name)
        # One part at a time, so only one is in memory while it is written.
        UNet2DConditionModel.from_config(
            UNet2DConditionModel.load_config(configs / "unet")
        ).save_pretrained(tmp / "unet", safe_serialization=True)
        AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae")).save_pretrained(
            tmp / "vae", safe_serialization=True
        )
        CLIPTextModel(CLIPTextConfig.from_pretrained(configs / "text_encoder")).save_pretrained(
            tmp / "text_encoder", safe_serialization=True
        )
        (tmp / "model_index.json").write_text(json.dumps(MODEL_INDEX, indent=2, sort_keys=True))

    return _build_once(folder, "sd15", build, seed)


def _dinov2(tmp: Path) -> None:
    from transformers import Dinov2Config, Dinov2Model

    Dinov2Model(Dinov2Config(**DINOV2_L)).save_pretrained(tmp, safe_serialization=True)


def _clip(tmp: Path) -> None:
    import open_clip
    from safetensors.torch import save_file

    from t2ibench.encoders.base import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    from t2ibench.encoders.clip import ARCH

    cfg = open_clip.get_model_config(ARCH)
    model = open_clip.CLIP(**cfg)
    (tmp / "open_clip_config.json").write_text(
        json.dumps(
            {
                "model_cfg": cfg,
                "preprocess_cfg": {
                    "mean": list(OPENAI_CLIP_MEAN),
                    "std": list(OPENAI_CLIP_STD),
                    "interpolation": "bicubic",
                },
            }
        )
    )
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(tmp / "open_clip_model.safetensors"),
    )


def _convnext(tmp: Path) -> None:
    import timm
    from timm.models import save_for_hf

    from t2ibench.encoders.convnext import DEFAULT_WEIGHTS

    save_for_hf(
        timm.create_model(DEFAULT_WEIGHTS, pretrained=False), str(tmp), safe_serialization=True
    )


def _vgg(tmp: Path) -> None:
    from safetensors.torch import save_file
    from torchvision.models import vgg19

    # torchvision's own state-dict layout, as a single file (what a converted checkpoint looks like).
    state = {k: v.contiguous() for k, v in vgg19(weights=None).state_dict().items()}
    save_file(state, str(tmp / "vgg19.safetensors"))


ENCODER_BUILDERS: dict[str, Callable[[Path], None]] = {
    "dinov2-l": _dinov2,
    "clip-l14": _clip,
    "convnextv2-l": _convnext,
    "vgg19": _vgg,
}


def make_random_encoder(name: str, folder: Path, *, seed: int = 0) -> str:
    """Build encoder ``name`` at full size with random weights; returns what ``weights=`` takes."""
    out = _build_once(Path(folder), name, ENCODER_BUILDERS[name], seed)
    return str(out / "vgg19.safetensors") if name == "vgg19" else str(out)
