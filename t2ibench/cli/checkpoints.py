"""``t2ibench evaluate-checkpoints DIR``: a thin shell over :mod:`t2ibench.pipeline.checkpoints`."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import typer

from t2ibench.cli._console import console
from t2ibench.cli._options import (
    BUDGET_KEYS,
    GENERATION_KEYS,
    budget_overrides,
    generation_overrides,
    protocol_of,
    shared,
    with_options,
)

FOLDER = inspect.Parameter(
    "folder",
    inspect.Parameter.KEYWORD_ONLY,
    annotation=Path,
    default=typer.Argument(
        ...,
        help="Folder of adapter checkpoints: kohya / LyCORIS / t2ibench .safetensors files, "
        "PEFT or diffusers LoRA folders (one training run).",
    ),
)
OPTIONS = shared(
    "base",
    "base_path",
    "dataset",
    "protocol",
    "metric_profile",
    "profile",
    "overrides",
    "out",
    "name",
    "device",
    "dry_run",
    "progress",
    help={
        "base": "The base model they were trained on (default: the profile's), or its "
        "architecture (sd15, sdxl, flux, ...) with --base-path.",
        "dataset": "The dataset they were trained on (default: the profile's).",
        "protocol": "Metric definitions: a protocol (default: lycoris2024) or a protocol TOML "
        "file.",
        "profile": "Run profile for the probe settings (t2ibench profiles list).",
        "overrides": "Run-config override KEY=VALUE (repeatable): generate.steps=30, "
        "generate.images_per_leaf=4, evaluate.encoders=[...].",
        "name": "Run name (default: <DIR name>-<settings hash>).",
        "dry_run": "List the checkpoints found, in order; do nothing.",
    },
) + shared(*BUDGET_KEYS, *GENERATION_KEYS)


def evaluate_checkpoints_cmd(**kw: Any) -> None:
    """Score every checkpoint of a training run (any trainer) and recommend the best one."""
    from t2ibench.cli.run import print_done
    from t2ibench.pipeline.checkpoints import (
        CheckpointsOptions,
        evaluate_checkpoints,
        find_checkpoints,
    )
    from t2ibench.pipeline.run import set_layers

    found = find_checkpoints(kw["folder"])
    if kw["dry_run"]:
        print_found(found)
        return
    options = CheckpointsOptions(
        folder=str(kw["folder"]),
        base=kw["base"],
        base_path=kw["base_path"],
        dataset=kw["dataset"],
        profile=kw["profile"],
        metric_profile=protocol_of(kw),
        layers=[*set_layers(kw["overrides"] or ()), *_budget_layer(kw)],
        out=str(kw["out"]),
        name=kw["name"],
        device=kw["device"],
        progress=kw["progress"],
    )
    print_done(evaluate_checkpoints(options, found))


def _budget_layer(kw: Any) -> list[tuple[str, dict[str, Any]]]:
    budget = budget_overrides(kw)
    layers = [("--budget", {"budget": budget})] if budget else []
    generate = generation_overrides(kw)  # --dtype, --fuse-adapter, ...
    return layers + ([("generation options", {"generate": generate})] if generate else [])


def print_found(found: list[Any]) -> None:
    """The checkpoints found, in training order, with where the order came from."""
    from rich.table import Table

    table = Table("checkpoint", "epoch", "step", "from", "format", "base", "algorithm", "modules")
    for f in found:
        table.add_row(
            f.name,
            "" if f.epoch is None else str(f.epoch),
            "" if f.step is None else str(f.step),
            f.order_from,
            f.source_format,
            "/".join(f.bases) or "?",
            f.algorithm,
            str(f.modules),
        )
    console().print(table)


def register(app: typer.Typer) -> None:
    app.command("evaluate-checkpoints")(with_options(evaluate_checkpoints_cmd, [FOLDER], OPTIONS))
