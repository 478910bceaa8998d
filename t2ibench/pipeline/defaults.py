"""Profiles: the defaults ``t2ibench run`` fills in for what the command line leaves out.

- ``offline`` (no ``--base`` and no ``--dataset``): everything ships with or is built by the
  package — no network, CPU, minutes. It uses the toy world (``t2ibench.toy``) when its trained
  weights are installed, else the tiny random base, the procedural demo dataset and tiny random
  encoders (then the numbers only prove that the pipes connect).
- ``paper`` (a real ``--base`` or ``--dataset``): the paper's protocol — SD1.5, 512 px, DDIM 30
  steps, CFG 7, 100 images per leaf and prompt type, epochs 50 with checkpoints 10/30/50, DINOv2-L,
  OpenCLIP ViT-L/14, ConvNeXt V2-L and VGG-19.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"


def _demo_dataset() -> Path:
    from t2ibench.data import make_demo_dataset
    from t2ibench.models import cache_dir

    root = cache_dir() / "demo-dataset"
    if not (root / "dataset.toml").is_file():
        make_demo_dataset(root)
    return root


PAPER: dict[str, Any] = {
    "dataset": lambda: None,
    "base": lambda: SD15,
    "encoders": ["dinov2-l", "clip-l14", "convnextv2-l", "vgg19"],
    "images_per_leaf": 100,
    "resolution": 512,
    "steps": 30,
    "guidance_scale": 7.0,
    "batch_size": 8,
    "trainer_overrides": [],
}

TINY: dict[str, Any] = {
    "dataset": _demo_dataset,
    "base": lambda: "tiny",
    "encoders": ["dinov2-l@tiny", "clip-l14@tiny", "vgg19@tiny"],
    "images_per_leaf": 4,
    "resolution": 64,
    "steps": 10,
    "guidance_scale": 7.0,
    "batch_size": 8,
    "trainer_overrides": [
        "epochs=2",
        "save_epochs=[1, 2]",
        "batch_size=4",
        "resolution=64",
        "min_bucket_reso=64",
        "max_bucket_reso=128",
        "warmup_steps=0",
        "lr=1e-3",
    ],
}


def offline_profile() -> tuple[str, dict[str, Any]]:
    """The toy world when its weights are installed, else the tiny random stand-ins."""
    try:
        from t2ibench.toy import offline_profile as toy_profile
    except ImportError:
        return "offline-tiny", TINY
    prof = toy_profile()
    return ("offline-toy", prof) if prof is not None else ("offline-tiny", TINY)


def profile_defaults(options: Any) -> tuple[str, dict[str, Any]]:
    if options.base is None and options.dataset is None:
        return offline_profile()
    if options.dataset is None:
        from t2ibench.errors import ConfigError

        raise ConfigError("--dataset: required with --base (only the offline default ships data)")
    return "paper", PAPER
