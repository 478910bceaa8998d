"""Shared pieces of the toy training scripts: threads, seeded image pools, paths, atomic saving."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from t2ibench.fsutil import atomic_write
from t2ibench.toy import world

WEIGHTS = Path(__file__).parent / "weights"
BASE_DIR = WEIGHTS / "base"  # the diffusers StableDiffusionPipeline folder


def setup(threads: int = 2, seed: int = 0) -> None:
    """Pin the thread count (the scripts' time budget is for 2 cores) and seed torch."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)


def render_pool(
    sampler: Callable[[int, int], world.Scene], seed: int, n: int, start: int = 0
) -> tuple[torch.Tensor, list[world.Scene]]:
    """Render scenes ``start..start+n`` of a sampler: uint8 tensor (n, 3, 32, 32) and the scenes."""
    scenes = [sampler(seed, start + i) for i in range(n)]
    return render_scenes(scenes), scenes


def render_scenes(scenes: list[world.Scene]) -> torch.Tensor:
    """Render scenes to a uint8 tensor (n, 3, 32, 32)."""
    arr = np.stack([np.asarray(world.render(s)) for s in scenes])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 images → float in [-1, 1] (the VAE's range)."""
    return x.float().div(127.5).sub(1.0)


def from_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats → uint8 images."""
    return x.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


class Log:
    """Prints progress lines with elapsed time, and keeps a record for the training report."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.t0 = time.time()
        self.record: dict = {"script": name}

    def __call__(self, msg: str) -> None:
        print(f"[{self.name} {time.time() - self.t0:7.1f}s] {msg}", flush=True)

    def elapsed(self) -> float:
        return time.time() - self.t0


def write_json(path: Path, data: dict) -> None:
    """Atomic JSON write."""
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
