"""``t2ibench evaluate``: score a folder of generated images (from t2ibench or any tool)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import typer

from t2ibench.cli._console import console
from t2ibench.cli._options import Declared, protocol_of, shared, split_lists, with_options

IMAGES = inspect.Parameter(
    "images_dir",
    inspect.Parameter.KEYWORD_ONLY,
    annotation=Path,
    default=typer.Argument(
        ..., help="Images folder: manifest.jsonl (t2ibench), or a peer layout (--layout)."
    ),
)
OPTIONS = [
    Declared(
        "layout",
        "--layout",
        str,
        "t2ibench",
        "How IMAGES is laid out: t2ibench, dreambooth, customconcept101, dreambench-pp "
        "or a plug-in (README 'Score my images').",
    ),
    Declared(
        "dataset",
        "--dataset",
        Path,
        None,
        "The references: a t2ibench dataset (layout t2ibench), the DreamBooth dataset, "
        "CustomConcept101's concept folders (dreambench-pp: not needed).",
    ),
    Declared(
        "checkpoint",
        "--checkpoint",
        str,
        None,
        "Checkpoint name of the rows (peer layouts: default the folder's name).",
    ),
    Declared(
        "identifier",
        "--identifier",
        str,
        None,
        "The identifier token the prompts use, removed for CLIP-T (dreambooth: sks, "
        "customconcept101: <new1>).",
    ),
    Declared("base_images", "--base-images", Path, None, "Base-model images folder (style loss)."),
    Declared(
        "base",
        "--base",
        str,
        None,
        "The base model that made the images (the results' base column: analyze groups by it; "
        "default: the run's base for a t2ibench run's images folder, else 'unknown').",
    ),
    *shared(
        "evaluate.encoders",
        "evaluate.resize",
        "evaluate.metrics",
        help={
            "evaluate.encoders": "Encoders (default: the paper's four).",
            "evaluate.metrics": "Metrics (default: all that apply).",
        },
    ),
    Declared("out", "--out", Path, ..., "Results folder (merged into if it exists)."),
    Declared("cache", "--cache", Path, None, "Feature cache folder (default: OUT/.feature-cache)."),
    *shared(
        "device",
        "protocol",
        "metric_profile",
        help={
            "protocol": "Metric definitions, a protocol: lycoris2024 (default), dreambooth, "
            "customconcept101, dreambench-pp, peft-drift (README table), or a protocol TOML "
            "file; --encoders NAME@tiny|NAME@WEIGHTS override its weights."
        },
    ),
]


def evaluate_cmd(**kw: Any) -> None:
    """Score a folder of generated images (from t2ibench or any tool) into the results table."""
    from t2ibench.encoders import FeatureCache
    from t2ibench.layouts import scan_layout
    from t2ibench.metric_profiles import DEFAULT_METRIC_PROFILE, get_metric_profile
    from t2ibench.metric_profiles.compile import check_profile, profile_encoders, profile_plans
    from t2ibench.pipeline.evaluate import evaluate_images
    from t2ibench.pipeline.load_encoders import create_encoders
    from t2ibench.results import append_results
    from t2ibench.runconfig import PAPER_ENCODERS

    encoders, out = split_lists(kw["evaluate__encoders"]), kw["out"]
    profile = get_metric_profile(protocol_of(kw) or DEFAULT_METRIC_PROFILE)
    scan = scan_layout(
        kw["layout"],
        kw["images_dir"],
        dataset=kw["dataset"],
        checkpoint=kw["checkpoint"],
        identifier=kw["identifier"],
    )
    check_profile(profile, single_reference=scan.single_reference)
    if profile.defaults:
        resize = split_lists(kw["evaluate__resize"]) or None
        encs = create_encoders(encoders or PAPER_ENCODERS, resize, kw["device"])
    else:
        encs = profile_encoders(profile, encoders, kw["device"])
    selected = split_lists(kw["evaluate__metrics"]) or (
        None if profile.defaults else profile.metrics()
    )
    df = evaluate_images(
        scan.root,
        scan.dataset,
        encs,
        metrics=selected,
        base_images_dir=kw["base_images"],
        cache=FeatureCache(kw["cache"] or out / ".feature-cache"),
        plans=profile_plans(profile, None if profile.defaults else encs, selected),
        records=scan.records,
        checkpoint_info=scan.checkpoint_info,
    )
    merged = append_results(df.assign(base=kw["base"] or images_base(kw["images_dir"])), out)
    console().print(f"{len(df)} rows written; {len(merged)} rows in {out}")


#: The ``base`` of images whose base model is neither given (``--base``) nor recorded.
UNKNOWN_BASE = "unknown"


def images_base(images_dir: Path) -> str:
    """The base of a t2ibench run's images (``<run>/images/<checkpoint>``: its ``run.json``), else
    :data:`UNKNOWN_BASE`."""
    from t2ibench.results import run_base

    run_dir = Path(images_dir).absolute().parent.parent
    return run_base(run_dir) if (run_dir / "run.json").is_file() else UNKNOWN_BASE


def register(app: typer.Typer) -> None:
    app.command("evaluate")(with_options(evaluate_cmd, [IMAGES], OPTIONS))
