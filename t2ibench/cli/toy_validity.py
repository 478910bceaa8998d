"""``t2ibench toy-validity``: each metric of a toy-world sweep against the probe's ground truth."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("toy-validity")
    def toy_validity(
        sweep_dir: Path = typer.Argument(
            ..., help="a `t2ibench sweep` folder on the toy world (or a `t2ibench run --out`)"
        ),
        out: Path = typer.Option(None, "--out", help="report folder (default: SWEEP_DIR/validity)"),
        plots: bool = typer.Option(True, help="embed scatter plots in validity.html"),
    ) -> None:
        """Probe every generated image and correlate each metric with its ground truth."""
        from t2ibench.toy.validity import write_validity_report

        folder = write_validity_report(sweep_dir, out, plots=plots)
        typer.echo(str(folder / "validity.html"))
