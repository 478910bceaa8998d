"""torchvision VGG-19 for style loss: Gram matrices of conv1_1 … conv5_1, taken before ReLU.

The layers are ``features`` indices 0, 5, 10, 19, 28 (conv1_1, conv2_1, conv3_1, conv4_1, conv5_1);
only ``features[:29]`` is kept. Gram G = F Fᵀ / (C·H·W) via :func:`t2ibench.gram.gram_matrices`,
computed in float32 with autocast disabled (the conv layers still run under the encoder's autocast;
a bf16 Gram would lose the small differences the style loss measures, an fp16 one overflows).
Weights: the default is torchvision's ``VGG19_Weights.IMAGENET1K_V1`` (``vgg19-dcbb9e9d.pth`` in the
torch hub cache, downloaded only when not offline); a local ``.pth``
(``torch.load(weights_only=True)``) or ``.safetensors`` file of the torchvision state dict; or a
folder with ``config.json`` (``{"cfg": [...]}`` layer widths) and ``model.safetensors`` — the layout
of the tiny variant. Preprocessing: ImageNet mean/std, bilinear
(torchvision's preset for these weights); any size works (the paper uses ``scale``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from t2ibench.encoders.base import (
    Encoder,
    EncoderSpec,
    check_local_path,
    hub_offline,
    local_weights_id,
    missing_weights_error,
    weights_source,
)

DEFAULT_WEIGHTS = "torchvision:VGG19_Weights.IMAGENET1K_V1"
STYLE_LAYERS = (0, 5, 10, 19, 28)  # conv1_1, conv2_1, conv3_1, conv4_1, conv5_1
# torchvision cfg "E" with tiny widths: same layer indices, so the same STYLE_LAYERS.
TINY_CFG: list[int | str] = [
    4,
    4,
    "M",
    8,
    8,
    "M",
    8,
    8,
    8,
    8,
    "M",
    16,
    16,
    16,
    16,
    "M",
    16,
    16,
    16,
    16,
    "M",
]


class VggGram(torch.nn.Module):
    """``features[:29]`` with non-inplace ReLUs, returning the five pre-ReLU conv maps."""

    def __init__(self, cfg: list[int | str]) -> None:
        super().__init__()
        from torchvision.models.vgg import make_layers

        features = make_layers(cfg)[: STYLE_LAYERS[-1] + 1]
        for m in features:
            if isinstance(m, torch.nn.ReLU):
                m.inplace = False  # an inplace ReLU would overwrite the captured pre-ReLU maps
        self.features = features

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in STYLE_LAYERS:
                maps.append(x)
        return maps


class VggEncoder(Encoder):
    kind = "gram"

    def _forward_images(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        from t2ibench.gram import gram_matrices

        # gram_matrices leaves autocast itself: under autocast a bmm would run in bf16/fp16 again.
        return gram_matrices(self.model(pixels), dtype=torch.float32)


def _read_state_dict(file: Path) -> dict[str, torch.Tensor]:
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file))
    return torch.load(file, map_location="cpu", weights_only=True)


def _default_checkpoint() -> tuple[Path, str]:
    from torchvision.models import VGG19_Weights

    url = VGG19_Weights.IMAGENET1K_V1.url
    file = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if not file.is_file():
        if hub_offline():
            raise FileNotFoundError(f"{file} not in the torch hub cache (from {url})")
        file.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(file), hash_prefix=file.stem.rsplit("-", 1)[-1])
    return file, f"torchvision/{file.name}"


def load_model(source: str) -> tuple[torch.nn.Module, str]:
    """Build ``VggGram`` and load weights (strict over ``features.0`` … ``features.28``)."""
    from torchvision.models.vgg import cfgs

    check_local_path("vgg19", source)
    path = Path(source).expanduser()
    try:
        if source == DEFAULT_WEIGHTS:
            cfg, (file, wid) = cfgs["E"], _default_checkpoint()
        elif path.is_dir():
            cfg = json.loads((path / "config.json").read_text())["cfg"]
            file, wid = path / "model.safetensors", local_weights_id(path)
        elif path.is_file():
            cfg, file, wid = cfgs["E"], path, local_weights_id(path)
        else:
            raise FileNotFoundError(f"{source} is neither {DEFAULT_WEIGHTS!r} nor a local path")
        state = _read_state_dict(file)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise missing_weights_error("vgg19", source, exc) from exc
    model = VggGram(list(cfg))
    # The classifier (and layers after conv5_1) are not used: keep only what the module holds.
    keep = {k: v for k, v in state.items() if k.startswith("features.")}
    keep = {k: v for k, v in keep.items() if int(k.split(".")[1]) <= STYLE_LAYERS[-1]}
    try:
        model.load_state_dict(keep, strict=True)
    except RuntimeError as exc:
        raise missing_weights_error("vgg19", source, exc) from exc
    return model, wid


def build_tiny(folder: Path) -> None:
    """Write a tiny random-weight VGG-19 (tiny widths) as ``config.json`` + ``model.safetensors``."""
    from safetensors.torch import save_file

    model = VggGram(TINY_CFG)
    (folder / "config.json").write_text(json.dumps({"cfg": TINY_CFG}))
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(folder / "model.safetensors"),
    )


def load(
    spec: EncoderSpec,
    weights: str | None,
    tiny: bool,
    preprocess: Any,
    device: Any,
    dtype: Any,
    batch_size: int,
    cache_dir: Path | None,
) -> VggEncoder:
    source = weights_source(spec, weights, tiny, {"cfg": TINY_CFG}, build_tiny, cache_dir)
    model, wid = load_model(source)
    return VggEncoder(spec.name, model, wid, preprocess, device, dtype, batch_size, source)


def _register() -> None:
    from t2ibench.encoders.registry import register_encoder

    register_encoder(
        EncoderSpec(
            name="vgg19",
            kind="gram",
            default_weights=DEFAULT_WEIGHTS,
            feature_desc="5 × (n, C, C) Gram, C = 64, 128, 256, 512, 512",
            description="torchvision VGG-19, conv1_1…conv5_1 before ReLU, Gram matrices (style loss)",
            family="vgg",
            load=load,
            interpolation="bilinear",
            default_resize="scale",
        )
    )


_register()
