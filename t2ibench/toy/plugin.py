"""The toy world plugged into t2ibench through the doors a third party uses (entry points in
``pyproject.toml``): its profile (``profile.toml``), the named bases ``toy`` (SD1.5-class UNet)
and ``toy-flux`` (a FluxPipeline folder, run by the FLUX plug-in), the named datasets
``toy`` and ``toy-small``, and a sweep hook that checks every metric against the probe's ground
truth. Its encoders register from ``t2ibench.toy.encoders`` (group ``t2ibench.encoders``)."""

from __future__ import annotations

from pathlib import Path

from t2ibench.profiles import (
    NamedPath,
    SweepHook,
    load_profile_file,
    register_base,
    register_dataset,
    register_profile,
    register_sweep_hook,
)

# One leaf of each kind: the small sweep grid (t2ibench/grids/toy.toml) fits in an hour on 2 cores.
SMALL_LEAVES = ["characters/starling/hat", "toys/ring", "scenes/beach", "styles/pastel"]
BASE_DIR = Path(__file__).parent / "weights" / "base"  # a diffusers StableDiffusionPipeline folder
FLUX_DIR = Path(__file__).parent / "weights" / "flux"  # a diffusers FluxPipeline folder
FLUX_PARTS = ("transformer", "text_encoder", "text_encoder_2", "vae", "tokenizer", "tokenizer_2")


def base_installed() -> bool:
    """Whether the trained toy base ships with this installation."""
    return all((BASE_DIR / part).is_dir() for part in ("unet", "text_encoder", "vae", "tokenizer"))


def flux_installed() -> bool:
    """Whether the trained toy FLUX-class base ships with this installation."""
    return all((FLUX_DIR / part).is_dir() for part in FLUX_PARTS)


def toy_dataset(small: bool = False) -> Path:
    """The toy dataset, written once into the cache (deterministic from seed 0)."""
    from t2ibench.fsutil import cache_root
    from t2ibench.toy.dataset import make_toy_dataset

    root = cache_root() / ("toy-dataset-small" if small else "toy-dataset")
    if not (root / "dataset.toml").is_file():
        make_toy_dataset(root, leaves=SMALL_LEAVES if small else None)
    return root


def is_toy_run(run_dir: Path) -> bool:
    """Whether a run folder's dataset is a toy dataset (its marker file)."""
    import json

    from t2ibench.toy.dataset import MARKER

    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    return (Path(record["dataset"]["root"]) / MARKER).is_file()


def validity_hook(sweep_dir: Path, report_dir: Path, run_dirs: list[Path]) -> list:
    """After a sweep on the toy world: the validity report, linked from the sweep's report."""
    if not any(is_toy_run(r) for r in run_dirs):
        return []
    from t2ibench.analysis.report import Section
    from t2ibench.toy.validity import write_validity_report

    write_validity_report(sweep_dir, report_dir / "validity")
    return [
        Section("Validity: each metric against the probe's ground truth").link(
            "validity/validity.html", "validity/validity.html"
        )
    ]


register_profile(load_profile_file(Path(__file__).with_name("profile.toml"), "toy"))
register_base(NamedPath("toy", "the toy world's trained base", lambda: BASE_DIR, base_installed))
register_base(
    NamedPath(
        "toy-flux",
        "the toy world's trained FLUX-class base (joint attention, flow matching)",
        lambda: FLUX_DIR,
        flux_installed,
    )
)
register_dataset(NamedPath("toy", "the toy dataset, all nine leaves", toy_dataset, base_installed))
register_dataset(
    NamedPath(
        "toy-small",
        "the toy dataset, one leaf per category",
        lambda: toy_dataset(True),
        base_installed,
    )
)
register_sweep_hook(SweepHook("toy-validity", "toy world: metrics vs the probe", validity_hook))
