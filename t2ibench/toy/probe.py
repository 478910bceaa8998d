"""The ground-truth probe: a small multi-head CNN that reads shape, colour, background, style and
outfit off a 32 px world image. Trained on images passed through the shipped VAE (the VAE blunts
fine shapes), so it judges generated images the way they actually look.

``Probe.load()`` reads the shipped weights; ``probe.predict(images)`` returns one label dict per
image, e.g. ``{"shape": "star", "colour": "red", "background": "white", "style": "flat",
"outfit": "hat"}``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from t2ibench.toy import world
from t2ibench.toy.common import WEIGHTS

PROBE_DIR = WEIGHTS / "probe"


class ProbeNet(nn.Module):
    """conv(3→32→64→96) with pooling to 4×4, a shared 128-d layer, one linear head per attribute."""

    def __init__(self, heads: dict[str, int], width: int = 32) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(3, w),
            *block(w, w),
            nn.MaxPool2d(2),
            *block(w, 2 * w),
            *block(2 * w, 2 * w),
            nn.MaxPool2d(2),
            *block(2 * w, 3 * w),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(3 * w * 16, 128),
            nn.ReLU(),
            nn.Dropout(0.1),
        )
        self.heads = nn.ModuleDict({k: nn.Linear(128, n) for k, n in heads.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(x)
        return {k: head(h) for k, head in self.heads.items()}


def images_to_tensor(images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
    """PIL images (any size: resized to 32 px) or a uint8 (n, 3, 32, 32) tensor → float [0, 1]."""
    if isinstance(images, torch.Tensor):
        return images.float() / 255.0
    arrs = []
    for im in images:
        im = im.convert("RGB")
        if im.size != (world.SIZE, world.SIZE):
            im = im.resize((world.SIZE, world.SIZE), Image.BICUBIC)
        arrs.append(np.asarray(im))
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 255.0


class Probe:
    """The trained probe with its label tables."""

    def __init__(self, net: ProbeNet, attributes: dict[str, tuple[str, ...]]) -> None:
        self.net = net.eval()
        self.attributes = attributes

    @classmethod
    def load(cls, folder: str | Path = PROBE_DIR) -> Probe:
        from safetensors.torch import load_file

        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        attributes = {k: tuple(v) for k, v in config["attributes"].items()}
        net = ProbeNet({k: len(v) for k, v in attributes.items()}, width=config["width"])
        state = {
            k: v.float() if v.is_floating_point() else v
            for k, v in load_file(folder / "probe.safetensors").items()
        }
        net.load_state_dict(state)
        return cls(net, attributes)

    def save(self, folder: str | Path, width: int) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {
            k: (v.to(torch.float16) if v.is_floating_point() else v).detach().contiguous()
            for k, v in self.net.state_dict().items()
        }
        save_file(state, folder / "probe.safetensors")
        config = {"width": width, "attributes": {k: list(v) for k, v in self.attributes.items()}}
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    @torch.no_grad()
    def logits(self, images: Sequence[Image.Image] | torch.Tensor, batch: int = 512) -> dict:
        x = images_to_tensor(images)
        outs = [self.net(x[i : i + batch]) for i in range(0, len(x), batch)]
        return {k: torch.cat([o[k] for o in outs]) for k in self.attributes}

    def predict(self, images: Sequence[Image.Image] | torch.Tensor) -> list[dict[str, str]]:
        """One ``{attribute: value}`` dict per image."""
        logits = self.logits(images)
        idx = {k: v.argmax(1).tolist() for k, v in logits.items()}
        n = len(next(iter(idx.values()))) if idx else 0
        return [{k: self.attributes[k][idx[k][i]] for k in self.attributes} for i in range(n)]


def agreement(pred: dict[str, str], want: dict[str, str]) -> bool:
    """True when the probe's prediction matches every requested attribute."""
    return all(pred.get(k) == v for k, v in want.items())
