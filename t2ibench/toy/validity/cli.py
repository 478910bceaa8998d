"""``t2ibench toy-validity``: each metric of a toy-world sweep against the probe's ground truth
(registered through the ``t2ibench.commands`` entry point, as a third party's command would be)."""

from __future__ import annotations

from pathlib import Path

import typer


def toy_validity(
    sweep_dir: Path = typer.Argument(
        ..., help="a `t2ibench sweep` folder on the toy world (or a `t2ibench run --out`)"
    ),
    out: Path = typer.Option(None, "--out", help="report folder (default: SWEEP_DIR/validity)"),
    plots: bool = typer.Option(True, help="embed scatter plots in validity.html"),
    outcomes: Path = typer.Option(
        None,
        "--outcomes",
        help="reuse a probe_outcomes.csv of an earlier report (for a sweep folder without "
        "its images, e.g. reference_results/toy); the counterfactual then cannot be computed",
    ),
    min_images: int = typer.Option(
        16, "--min-images", help="flag ground truth from groups of fewer images than this"
    ),
    counterfactual: bool = typer.Option(
        True, help="score the images against prompts with swapped attribute words"
    ),
    n_boot: int = typer.Option(2000, "--n-boot", help="cluster-bootstrap replicates"),
) -> None:
    """Probe every generated image and check each metric against its ground truth (within
    leaf × epoch, cluster-bootstrap CIs by run, Holm-adjusted p-values)."""
    from t2ibench.errors import ConfigError
    from t2ibench.toy.validity.report import write_validity_report

    if n_boot < 100:
        raise ConfigError(f"--n-boot: must be ≥ 100, got {n_boot}")
    if min_images < 1:
        raise ConfigError(f"--min-images: must be ≥ 1, got {min_images}")
    folder = write_validity_report(
        sweep_dir,
        out,
        plots=plots,
        outcomes=outcomes,
        min_images=min_images,
        counterfactual=counterfactual,
        n_boot=n_boot,
    )
    typer.echo(str(folder / "validity.html"))


def register(app: typer.Typer) -> None:
    app.command("toy-validity")(toy_validity)
