"""Listing commands (metrics, prompts, encoders) and ``dataset check``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from t2ibench.cli._console import console


def metrics_list() -> None:
    """List registered metrics with their criterion, encoder, references and direction."""
    from t2ibench.metrics import get_metric, list_metrics

    table = Table("name", "criterion", "encoder", "references", "higher is better", "range")
    for name in list_metrics():
        m = get_metric(name)
        table.add_row(
            name,
            m.criterion,
            m.encoder or "-",
            ", ".join(m.references) or "-",
            str(m.higher_is_better),
            f"[{m.range[0]}, {m.range[1]}]",
        )
    console().print(table)


def prompts_list() -> None:
    """List registered prompt types."""
    from t2ibench.prompts import get_prompt_type, list_prompt_types

    table = Table("name", "description")
    for name in list_prompt_types():
        table.add_row(name, get_prompt_type(name).description)
    console().print(table)


def encoders_list() -> None:
    """List registered encoders with their default weights and feature shapes."""
    from t2ibench.encoders import get_encoder_spec, list_encoders

    table = Table("name", "weights", "features", "description")
    for name in list_encoders():
        spec = get_encoder_spec(name)
        table.add_row(name, spec.default_weights, spec.feature_desc, spec.description)
    console().print(table)


def dataset_check(path: Path = typer.Argument(..., help="Dataset root folder.")) -> None:
    """Validate a dataset and print its tree with image counts and repeats."""
    from t2ibench.data import load_dataset
    from t2ibench.pipeline.generate import job_file
    from t2ibench.prompts import jobs_for

    ds = load_dataset(path)
    # What generation reads or refuses (alter templates, folder names) is checked here too.
    for job in jobs_for(ds, None, 1):
        job_file(job)
    console().print(ds.tree())


def register(app: typer.Typer) -> None:
    metrics_app = typer.Typer(help="Metric registry.", no_args_is_help=True)
    prompts_app = typer.Typer(help="Prompt-type registry.", no_args_is_help=True)
    encoders_app = typer.Typer(help="Encoder registry.", no_args_is_help=True)
    dataset_app = typer.Typer(help="Datasets in the t2ibench folder spec.", no_args_is_help=True)
    app.add_typer(metrics_app, name="metrics")
    app.add_typer(prompts_app, name="prompts")
    app.add_typer(encoders_app, name="encoders")
    app.add_typer(dataset_app, name="dataset")
    metrics_app.command("list")(metrics_list)
    prompts_app.command("list")(prompts_list)
    encoders_app.command("list")(encoders_list)
    dataset_app.command("check")(dataset_check)
