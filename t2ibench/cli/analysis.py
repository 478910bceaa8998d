"""``t2ibench analyze``: a results table → the report."""

from __future__ import annotations

from pathlib import Path

import typer


def _csv_list(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    out = [v.strip() for item in values for v in item.split(",") if v.strip()]
    return out or None


def register(app: typer.Typer) -> None:
    @app.command("analyze")
    def analyze_cmd(
        results: Path = typer.Argument(..., help="Results folder (results.parquet/.csv) or file."),
        out: Path = typer.Option(..., "--out", "-o", help="Report folder to write."),
        category: list[str] = typer.Option(None, help="Keep these categories (repeat or a,b)."),
        epoch: list[str] = typer.Option(None, help="Keep these epochs (repeat or 10,50)."),
        prompt_type: list[str] = typer.Option(None, help="Keep these prompt types."),
        config: list[str] = typer.Option(None, help="Keep these configs."),
        direction: list[str] = typer.Option(
            None, help="Metric direction for metrics outside the registry: NAME=higher|lower."
        ),
        target: list[str] = typer.Option(
            None, help="SHAP target metric:prompt_type[:encoder[:resize]] (repeatable)."
        ),
        feature: list[str] = typer.Option(None, help="SHAP features (default: PROTOCOL's)."),
        bootstrap: int = typer.Option(0, help="Bootstrap resamples for CIs (0 = off)."),
        seed: int = typer.Option(0, help="Seed for CatBoost and the bootstrap."),
        no_shap: bool = typer.Option(False, "--no-shap", help="Skip CatBoost + SHAP."),
        no_plots: bool = typer.Option(False, "--no-plots", help="Skip figures."),
    ) -> None:
        """Rank-normalise, aggregate, explain (CatBoost + SHAP) and report a results table."""
        from t2ibench.analysis import DEFAULT_FEATURES, Target, analyze
        from t2ibench.errors import ResultsError

        directions = {}
        for item in direction or []:
            name, _, way = item.partition("=")
            if way.strip().lower() not in ("higher", "lower") or not name.strip():
                raise ResultsError(f"--direction {item!r}: expected NAME=higher or NAME=lower")
            directions[name.strip()] = way.strip().lower() == "higher"
        try:
            targets = [Target.parse(t) for t in target] if target else None
            epochs = [int(e) for e in _csv_list(epoch)] if _csv_list(epoch) else None
        except ValueError as exc:
            raise ResultsError(str(exc)) from exc
        res = analyze(
            results,
            out,
            categories=_csv_list(category),
            epochs=epochs,
            prompt_types=_csv_list(prompt_type),
            configs=_csv_list(config),
            directions=directions,
            bootstrap=bootstrap,
            seed=seed,
            shap=not no_shap,
            shap_targets=targets,
            shap_features=_csv_list(feature) or DEFAULT_FEATURES,
            plots=not no_plots,
        )
        from t2ibench.cli._console import print_answer

        if res.shap_note:
            typer.echo(res.shap_note)
        typer.echo(f"wrote {len(res.files)} files to {out} (report: {out / 'report.html'})")
        print_answer(out)  # the answer comes last, where the eye lands
