"""``t2ibench analyze`` and ``t2ibench import-lycoris-eval``."""

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

    @app.command("import-lycoris-eval")
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
