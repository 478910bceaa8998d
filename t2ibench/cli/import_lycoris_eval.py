"""``t2ibench import-lycoris-eval``: the paper's evaluation-code CSVs as a t2ibench results table."""

from __future__ import annotations

from pathlib import Path

import typer


def import_cmd(
    metrics_csv: list[Path] = typer.Argument(..., help="Evaluation-code metrics CSV(s)."),
    configs: Path = typer.Option(None, "--configs", help="config_mapping.csv to join."),
    out: Path = typer.Option(..., "--out", "-o", help="Results folder (merged into)."),
    final_epoch: int = typer.Option(50, help="Epoch of checkpoints without an epoch suffix."),
    keep_means: bool = typer.Option(False, help="Keep folder-mean rows as extra leaves."),
    paper_configs: bool = typer.Option(
        False,
        "--paper-configs",
        help="Leave out the configs the authors' notebooks exclude (1007, 1017, 1027).",
    ),
) -> None:
    """Import the paper's evaluation-code CSVs into a t2ibench results folder."""
    from t2ibench.importers import (
        PAPER_EXCLUDED_CONFIGS,
        import_lycoris_eval,
        read_config_mapping,
    )
    from t2ibench.results import append_results

    mapping = read_config_mapping(configs) if configs is not None else None
    total = None
    for path in metrics_csv:
        rows = import_lycoris_eval(
            path,
            mapping,
            final_epoch=final_epoch,
            keep_means=keep_means,
            exclude_configs=PAPER_EXCLUDED_CONFIGS if paper_configs else (),
        )
        total = append_results(rows, out)
        typer.echo(f"{path}: {len(rows)} rows")
    typer.echo(f"{out}: {len(total)} rows in results.parquet / results.csv")


def register(app: typer.Typer) -> None:
    app.command("import-lycoris-eval")(import_cmd)
