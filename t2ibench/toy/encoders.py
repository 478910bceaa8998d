"""Toy encoders for the toy world, registered in the t2ibench encoder registry.

- ``toy-clip`` (image-text): a small CNN image tower and a bag-of-words text tower over the world's
  vocabulary, trained contrastively on world images and descriptive captions (alignment).
- ``toy-dino`` (image): a small CNN embedding trained so that images with the same ground truth
  (concept, colour, background, style, outfit) lie together (fidelity, diversity / Vendi).
- ``toy-gram`` (gram): Gram matrices G = F Fᵀ / (C·H·W) of toy-dino's three conv stages, taken
  before the activation, as VGG-19 serves the style loss.

Each loads from a folder with ``config.json`` + ``model.safetensors`` (default: the shipped weights
in ``t2ibench/toy/weights``); the package registers them through the ``t2ibench.encoders``
entry point, so ``create_encoder("toy-clip")`` works like any real encoder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from t2ibench.encoders.base import (
    Encoder,
    EncoderSpec,
    check_local_path,
    local_weights_id,
    missing_weights_error,
)

WEIGHTS = Path(__file__).parent / "weights"
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
_WORD = re.compile(r"[a-z]+")


class ToyCNN(nn.Module):
    """3 conv stages (32, 64, 128 channels; GroupNorm, SiLU), 4×4 pooled, MLP head to ``dim``."""

    def __init__(self, dim: int = 128, width: int = 32) -> None:
        super().__init__()
        w = width
        self.convs = nn.ModuleList(
            [nn.Conv2d(3, w, 3, padding=1), nn.Conv2d(w, 2 * w, 3, padding=1),
             nn.Conv2d(2 * w, 4 * w, 3, padding=1)]
        )  # fmt: skip
        self.norms = nn.ModuleList([nn.GroupNorm(8, c) for c in (w, 2 * w, 4 * w)])
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(4 * w * 16, 256), nn.SiLU(), nn.Linear(256, dim)
        )

    def stages(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Returns the pooled 4×4 map and the three pre-activation conv maps (for Grams)."""
        maps = []
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = conv(x)
            maps.append(x)
            x = nn.functional.max_pool2d(nn.functional.silu(norm(x)), 2)
        return nn.functional.adaptive_avg_pool2d(x, 4), maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(x)[0])


class BagOfWords(nn.Module):
    """Text tower: mean of word embeddings (unknown words → ``<unk>``), then an MLP."""

    def __init__(self, vocab: list[str], dim: int = 128) -> None:
        super().__init__()
        self.vocab = {w: i for i, w in enumerate(vocab)}
        self.embed = nn.Embedding(len(vocab), 128)
        self.mlp = nn.Sequential(nn.Linear(128, 256), nn.SiLU(), nn.Linear(256, dim))

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        # Unknown words (triggers, words outside the world) are skipped, not averaged in.
        ids = [
            [self.vocab[w] for w in _WORD.findall(t.lower()) if w in self.vocab] or [0]
            for t in texts
        ]
        n = max(len(i) for i in ids)
        pad = torch.zeros(len(ids), n, dtype=torch.long)
        mask = torch.zeros(len(ids), n)
        for r, row in enumerate(ids):
            pad[r, : len(row)] = torch.tensor(row)
            mask[r, : len(row)] = 1.0
        return pad, mask

    def forward(self, texts: list[str]) -> torch.Tensor:
        ids, mask = self.tokenize(texts)
        ids, mask = ids.to(self.embed.weight.device), mask.to(self.embed.weight.device)
        e = (self.embed(ids) * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return self.mlp(e)


class ToyClipModel(nn.Module):
    def __init__(self, vocab: list[str], dim: int = 128) -> None:
        super().__init__()
        self.image = ToyCNN(dim)
        self.text = BagOfWords(vocab, dim)
        self.logit_scale = nn.Parameter(torch.tensor(2.659))  # log(1/0.07), CLIP's init


# --- loading -------------------------------------------------------------------------------------
def _build(kind: str, config: dict) -> nn.Module:
    if kind == "toy-clip":
        return ToyClipModel(config["vocab"], config["dim"])
    return ToyCNN(config["dim"])


def save_model(model: nn.Module, folder: Path, kind: str, config: dict) -> None:
    """Write ``config.json`` + fp16 ``model.safetensors`` (the shipped layout)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"kind": kind, **config}, indent=1) + "\n")


def load_model(name: str, source: str, model_kind: str) -> tuple[nn.Module, str]:
    """Build the model from ``source/config.json`` and load ``source/model.safetensors``."""
    from safetensors.torch import load_file

    check_local_path(name, source)
    path = Path(source).expanduser()
    try:
        config = json.loads((path / "config.json").read_text())
        if config.get("kind") != model_kind:
            raise ValueError(f"config.json kind is {config.get('kind')!r}, not {model_kind!r}")
        model = _build(model_kind, config)
        state = {k: v.float() for k, v in load_file(str(path / "model.safetensors")).items()}
        model.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise missing_weights_error(name, source, exc) from exc
    return model.float(), local_weights_id(path)


class ToyClipEncoder(Encoder):
    kind = "image-text"

    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.model.image(pixels), dim=-1)

    def _forward_texts(self, texts: list[str]) -> torch.Tensor:
        return nn.functional.normalize(self.model.text(list(texts)), dim=-1)


class ToyDinoEncoder(Encoder):
    kind = "image"

    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels)


class ToyGramEncoder(Encoder):
    kind = "gram"

    def _forward_images(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        from t2ibench.gram import gram_matrices

        return gram_matrices([m.float() for m in self.model.stages(pixels)[1]])


_CLASSES = {"toy-clip": ToyClipEncoder, "toy-dino": ToyDinoEncoder, "toy-gram": ToyGramEncoder}
_MODEL_KIND = {"toy-clip": "toy-clip", "toy-dino": "toy-dino", "toy-gram": "toy-dino"}


def _load(
    spec: EncoderSpec,
    weights: str | None,
    tiny: bool,
    preprocess: Any,
    device: Any,
    dtype: Any,
    batch_size: int,
    cache_dir: Path | None,
) -> Encoder:
    # The toy weights are small and shipped, so ``tiny`` loads them too (same code path).
    source = weights or spec.default_weights
    model, wid = load_model(spec.name, source, _MODEL_KIND[spec.name])
    return _CLASSES[spec.name](spec.name, model, wid, preprocess, device, dtype, batch_size, source)


def _register() -> None:
    from t2ibench.encoders.registry import ENCODERS, register_encoder

    common = dict(load=_load, mean=MEAN, std=STD, default_resize="stretch", size=32)
    specs = [
        EncoderSpec(
            name="toy-clip",
            family="clip",  # stands in for CLIP
            kind="image-text",
            default_weights=str(WEIGHTS / "toy-clip"),
            feature_desc="(n, 128) L2-normalised, image and text",
            description="toy world: CNN image tower + bag-of-words text tower, contrastive",
            **common,
        ),
        EncoderSpec(
            name="toy-dino",
            family="dino",  # stands in for DINOv2
            kind="image",
            default_weights=str(WEIGHTS / "toy-dino"),
            feature_desc="(n, 128) embedding",
            description="toy world: CNN embedding, same-ground-truth images together",
            **common,
        ),
        EncoderSpec(
            name="toy-gram",
            family="vgg",  # stands in for VGG-19
            kind="gram",
            default_weights=str(WEIGHTS / "toy-dino"),
            feature_desc="3 × (n, C, C) Gram, C = 32, 64, 128",
            description="toy world: Gram matrices of toy-dino's conv stages (style loss)",
            **common,
        ),
    ]
    for spec in specs:
        if spec.name not in ENCODERS._items:  # re-import (entry point + direct import) is fine
            register_encoder(spec)


_register()
