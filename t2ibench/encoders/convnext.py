"""ConvNeXt V2-L ``convnextv2_large.fcmae_ft_in22k_in1k`` through timm, pre-logits features.

The checkpoint is the one the LyCORIS paper's code loaded: ``timm.create_model("convnextv2_large",
pretrained=True)`` (cyber-meow/LyCORIS-evaluation, lycoris_eval/encoding/encoders.py l. 62-72), i.e.
timm's default tag for the architecture, ``fcmae_ft_in22k_in1k`` (ImageNet-22k → 1k at 224 px; the
first tag timm lists, timm/models/convnext.py l. 689 in timm 0.9.7). The paper's App. D.4 names the
``_384`` fine-tune; its published numbers come from the code (see lycoris2024.toml).

Feature = ``forward_head(forward_features(x), pre_logits=True)``: global average pool + final
norm, (n, 1536) — not the 1000 classifier logits (the paper's public code used logits by mistake).
Weights: the timm name loads timm's hub weights; a local folder in timm's hub layout
(``config.json`` + ``model.safetensors``, as written by ``timm.models.save_for_hf``) loads through
``local-dir:``; a single checkpoint file through ``pretrained_cfg_overlay=dict(file=...)``; any other
string is a hub repo id (``hf-hub:``). Preprocessing: ImageNet mean/std, bicubic; a CNN takes any size,
so all four resize modes apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from t2ibench.encoders.base import (
    Encoder,
    EncoderSpec,
    check_local_path,
    hub_weights_id,
    local_weights_id,
    missing_weights_error,
    weights_source,
)
from t2ibench.encoders.init_skip import skipped_random_init

DEFAULT_WEIGHTS = "convnextv2_large.fcmae_ft_in22k_in1k"  # timm's default tag
TINY_ARGS: dict[str, Any] = {"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64], "num_classes": 10}


class ConvNextEncoder(Encoder):
    kind = "image"

    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(pixels), pre_logits=True)


def load_model(source: str) -> tuple[torch.nn.Module, str]:
    """Load a timm ConvNeXt V2; returns (model, weights id)."""
    import timm

    check_local_path("convnextv2-l", source)
    path = Path(source).expanduser()
    try:
        with skipped_random_init():  # weights loaded over the draws
            if source == DEFAULT_WEIGHTS:
                model = timm.create_model(source, pretrained=True)
                wid = hub_weights_id(f"timm/{source}", ["model.safetensors", "pytorch_model.bin"])
            elif path.is_dir():
                model = timm.create_model(f"local-dir:{path}", pretrained=True)
                wid = local_weights_id(path)
            elif path.is_file():
                model = timm.create_model(
                    DEFAULT_WEIGHTS, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))
                )
                wid = local_weights_id(path)
            else:
                repo = source.removeprefix("hf-hub:")
                model = timm.create_model(f"hf-hub:{repo}", pretrained=True)
                wid = hub_weights_id(repo, ["model.safetensors", "pytorch_model.bin"])
    except (OSError, RuntimeError, ValueError) as exc:
        raise missing_weights_error("convnextv2-l", source, exc) from exc
    return model, wid


def build_tiny(folder: Path) -> None:
    """Write a tiny random-weight ConvNeXt V2 (same architecture, tiny widths) in timm's hub layout."""
    import timm
    from timm.models import save_for_hf

    model = timm.create_model(DEFAULT_WEIGHTS, pretrained=False, **TINY_ARGS)
    save_for_hf(model, str(folder), safe_serialization=True)


def load(
    spec: EncoderSpec,
    weights: str | None,
    tiny: bool,
    preprocess: Any,
    device: Any,
    dtype: Any,
    batch_size: int,
    cache_dir: Path | None,
) -> ConvNextEncoder:
    source = weights_source(spec, weights, tiny, TINY_ARGS, build_tiny, cache_dir)
    model, wid = load_model(source)
    return ConvNextEncoder(spec.name, model, wid, preprocess, device, dtype, batch_size, source)


def _register() -> None:
    from t2ibench.encoders.registry import register_encoder

    register_encoder(
        EncoderSpec(
            name="convnextv2-l",
            kind="image",
            default_weights=DEFAULT_WEIGHTS,
            feature_desc="(n, 1536) pre-logits",
            description="ConvNeXt V2-L (timm, FCMAE, in22k→in1k 224), pre-logits features",
            family="convnext",
            load=load,
            interpolation="bicubic",
            default_resize="letterbox",
        )
    )


_register()
