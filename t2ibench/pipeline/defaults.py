"""Profiles: the defaults ``t2ibench run`` fills in for what the command line leaves out.

- offline (no ``--base`` and no ``--dataset``): ``toy`` or ``tiny``; everything ships with or is built by the
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
    from t2ibench.fsutil import cache_root

    root = cache_root() / "demo-dataset"
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


# The toy world's leaves used by the small sweep grid: one of each kind, so a 30-run sweep fits
# in an hour on 2 cores.
TOY_SMALL_LEAVES = [
    "characters/starling/hat",
    "toys/ring",
    "scenes/beach",
    "styles/pastel",
]


def toy_base_dir() -> Path:
    from t2ibench.toy.common import BASE_DIR

    return BASE_DIR


def toy_available() -> bool:
    """Whether the toy world's trained base model ships with this installation."""
    try:
        base = toy_base_dir()
    except ImportError:
        return False
    return all((base / part).is_dir() for part in ("unet", "text_encoder", "vae", "tokenizer"))


def toy_dataset(small: bool = False) -> Path:
    """The toy dataset, written once into the cache (deterministic from seed 0)."""
    from t2ibench.fsutil import cache_root
    from t2ibench.toy.dataset import make_toy_dataset

    name = "toy-dataset-small" if small else "toy-dataset"
    root = cache_root() / name
    if not (root / "dataset.toml").is_file():
        make_toy_dataset(root, leaves=TOY_SMALL_LEAVES if small else None)
    return root


TOY: dict[str, Any] = {
    "dataset": toy_dataset,
    "base": lambda: str(toy_base_dir()),
    "encoders": ["toy-dino", "toy-clip", "toy-gram"],
    "images_per_leaf": 8,
    "resolution": 32,
    "steps": 20,
    "guidance_scale": 4.0,
    "batch_size": 64,
    # 6 epochs of the nine-leaf toy dataset at batch 16 = 270 steps: past the ~300-step point
    # where a LoRA shows its concept on ≥ 80 % of trigger prompts (t2ibench/toy/README.md).
    "trainer_overrides": [
        "epochs=6",
        "save_epochs=[2, 6]",
        "batch_size=16",
        "resolution=32",
        "min_bucket_reso=32",
        "max_bucket_reso=64",
        "bucket_step=32",
        "warmup_steps=0",
        "lr=1e-3",
    ],
}


def offline_profile() -> tuple[str, dict[str, Any]]:
    """The toy world when its weights are installed, else the tiny random stand-ins."""
    if toy_available():
        return "toy", TOY
    return "tiny", TINY


def resolve_named(kind: str, spec: str | None) -> str | None:
    """Named shortcuts: ``--base toy`` = the shipped toy base; ``--dataset toy`` / ``toy-small`` =
    the toy dataset (all nine leaves / one leaf per category) built in the cache."""
    if spec == "toy" and kind == "base":
        return str(toy_base_dir())
    if spec in ("toy", "toy-small") and kind == "dataset":
        return str(toy_dataset(small=spec == "toy-small"))
    return spec


PROFILES = ("toy", "tiny", "paper")


def profile_defaults(options: Any) -> tuple[str, dict[str, Any]]:
    """``options.profile`` if given; else offline (toy, or tiny without toy weights) when neither a
    real base nor a real dataset is named, else the paper's protocol."""
    chosen = getattr(options, "profile", None)
    if chosen is not None:
        if chosen not in PROFILES:
            from t2ibench.errors import ConfigError

            raise ConfigError(
                f"--profile: unknown {chosen!r}; expected one of {', '.join(PROFILES)}"
            )
        if chosen == "toy" and not toy_available():
            from t2ibench.errors import ConfigError

            raise ConfigError("--profile toy: the toy world's weights are not installed")
        return chosen, {"toy": TOY, "tiny": TINY, "paper": PAPER}[chosen]
    if options.base in (None, "toy") and options.dataset in (None, "toy", "toy-small"):
        return offline_profile()
    if options.dataset is None:
        from t2ibench.errors import ConfigError

        raise ConfigError("--dataset: required with --base (only the offline default ships data)")
    return "paper", PAPER
