"""OpenCLIP ViT-L-14 ``datacomp_xl_s13b_b90k``: image and text features after the projection.

Weights: the default loads open_clip's pretrained tag (hub repo
``laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K``); a local folder in open_clip's own layout
(``open_clip_config.json`` + ``open_clip_model.safetensors``) loads through ``local-dir:``; a single
ViT-L-14 checkpoint file through ``pretrained=<file>``; any other string is a hub repo id
(``hf-hub:``). The tokenizer is open_clip's real BPE tokenizer (its vocabulary ships in the package).
Preprocessing: OpenAI CLIP mean/std, bicubic; the vision tower has a fixed 16×16 position grid, so
``scale`` (non-square) is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from t2ibench.encoders.base import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    Encoder,
    EncoderSpec,
    check_local_path,
    hub_weights_id,
    local_weights_id,
    missing_weights_error,
    weights_source,
)
from t2ibench.encoders.init_skip import skipped_random_init

ARCH = "ViT-L-14"
TAG = "datacomp_xl_s13b_b90k"
HUB_REPO = "laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K"
DEFAULT_WEIGHTS = f"{ARCH}/{TAG}"
TINY_MODEL_CFG: dict[str, Any] = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "head_width": 16, "patch_size": 14},
    # Real vocabulary and context so the real tokenizer feeds it.
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


class ClipEncoder(Encoder):
    kind = "image-text"

    def __init__(self, *args: Any, tokenizer: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tokenizer = tokenizer

    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)

    def _forward_texts(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(self.device)
        return self.model.encode_text(tokens)


def load_model(
    source: str,
    name: str = "clip-l14",
    arch: str = ARCH,
    tag: str = TAG,
    hub_repo: str = HUB_REPO,
) -> tuple[torch.nn.Module, Any, str]:
    """Load an OpenCLIP model and tokenizer; returns (model, tokenizer, weights id).

    ``arch``/``tag``/``hub_repo``: the open_clip architecture, its pretrained tag (``f"{arch}/{tag}"``
    is the default source) and the hub repo that tag downloads from (for the weights id);
    ``name`` is the encoder named in errors.
    """
    import open_clip

    check_local_path(name, source)
    path = Path(source).expanduser()
    try:
        with skipped_random_init():  # weights loaded over the draws (strict)
            if source == f"{arch}/{tag}":
                model = open_clip.create_model(arch, pretrained=tag)
                tokenizer = open_clip.get_tokenizer(arch)
                wid = hub_weights_id(
                    hub_repo, ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
                )
            elif path.is_dir():
                if not any(p.suffix in WEIGHT_SUFFIXES for p in path.iterdir()):
                    # open_clip would only warn and hand back random weights.
                    raise FileNotFoundError(
                        f"no weights file ({', '.join(WEIGHT_SUFFIXES)}) in {path}"
                    )
                local = f"local-dir:{path}"
                model = open_clip.create_model(local)
                tokenizer = open_clip.get_tokenizer(local)
                wid = local_weights_id(path)
            elif path.is_file():
                model = open_clip.create_model(arch, pretrained=str(path))
                tokenizer = open_clip.get_tokenizer(arch)
                wid = local_weights_id(path)
            else:
                repo = source.removeprefix("hf-hub:")
                model = open_clip.create_model(f"hf-hub:{repo}")
                tokenizer = open_clip.get_tokenizer(f"hf-hub:{repo}")
                wid = hub_weights_id(
                    repo, ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
                )
    except (OSError, RuntimeError, ValueError) as exc:
        raise missing_weights_error(name, source, exc) from exc
    return model, tokenizer, wid


def build_tiny(folder: Path, model_cfg: dict[str, Any] = TINY_MODEL_CFG) -> None:
    """Write a tiny random-weight OpenCLIP model in open_clip's local-folder layout."""
    import open_clip
    from safetensors.torch import save_file

    model = open_clip.CLIP(**model_cfg)
    cfg = {
        "model_cfg": model_cfg,
        "preprocess_cfg": {
            "mean": list(OPENAI_CLIP_MEAN),
            "std": list(OPENAI_CLIP_STD),
            "interpolation": "bicubic",
        },
    }
    (folder / "open_clip_config.json").write_text(json.dumps(cfg, indent=2))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))


def load(
    spec: EncoderSpec,
    weights: str | None,
    tiny: bool,
    preprocess: Any,
    device: Any,
    dtype: Any,
    batch_size: int,
    cache_dir: Path | None,
) -> ClipEncoder:
    source = weights_source(spec, weights, tiny, TINY_MODEL_CFG, build_tiny, cache_dir)
    model, tokenizer, wid = load_model(source)
    return ClipEncoder(
        spec.name, model, wid, preprocess, device, dtype, batch_size, source, tokenizer=tokenizer
    )


def _register() -> None:
    from t2ibench.encoders.registry import register_encoder

    register_encoder(
        EncoderSpec(
            name="clip-l14",
            kind="image-text",
            default_weights=DEFAULT_WEIGHTS,
            feature_desc="(n, 768) after projection; texts (n, 768)",
            description="OpenCLIP ViT-L-14 DataComp-XL, image and text features after the projection",
            family="clip",
            load=load,
            mean=OPENAI_CLIP_MEAN,
            std=OPENAI_CLIP_STD,
            interpolation="bicubic",
            default_resize="letterbox",
            square_only=True,
        )
    )


_register()
