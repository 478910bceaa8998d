"""``t2ibench plan``: how many images a study needs, from a pilot's results
(:mod:`t2ibench.analysis.budget`)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan(
        results: list[Path] = typer.Argument(
            ...,
            help="a pilot's results: a run or sweep folder, a results folder or table; two pilots "
            "at different images per leaf also plan images per leaf",
        ),
        width: list[float] = typer.Option(
            None, "--width", help="target 95% half-width, in each metric's own units (repeatable)"
        ),
        probability: list[float] = typer.Option(
            None, "--probability", help="target probability that the order is settled (repeatable)"
        ),
        by: str = typer.Option("checkpoint", "--by", help="rank 'checkpoint's or 'config's"),
        level: float = typer.Option(0.95, "--level", help="interval level"),
        checkpoints: int = typer.Option(
            None, "--checkpoints", help="checkpoints of the planned study (default: the pilot's)"
        ),
        image_seconds: float = typer.Option(
            None,
            "--image-seconds",
            help="seconds per generated image (default: measured, else "
            "the sweep planner's stated assumption)",
        ),  # fmt: skip
        out: Path = typer.Option(
            None,
            "--out",
            help="folder for the CSVs and plot (default: RESULTS/plan or next to the table)",
        ),  # fmt: skip
        all_measures: bool = typer.Option(
            False, "--all", help="print every measurement, not only the criteria's headline ones"
        ),
    ) -> None:
        """Images per prompt type and checkpoint for a target interval width per metric and
        criterion, and for a target probability that the ranking is settled; GPU-hours beside."""
        from t2ibench.analysis.budget import find_results, write_plan
        from t2ibench.cli._console import console

        image_s, image_source = throughput(image_seconds)
        found = [find_results(r) for r in results]
        folder = out or ((found[0] if found[0].is_dir() else found[0].parent) / "plan")
        res = write_plan(
            found, folder, width or [], probability or [0.95], level=level, by=by,
            checkpoints=checkpoints, image_s=image_s, image_source=image_source,
        )  # fmt: skip
        _print(res, all_measures, console())


def _fmt(v, digits: int = 4) -> str:
    import math

    if isinstance(v, float):
        if math.isnan(v):
            return "never"
        return f"{v:,.0f}" if v >= 100 or v == int(v) else f"{v:.{digits}g}"
    return str(v)


def _print(res: dict, all_measures: bool, con) -> None:
    from rich.table import Table

    w = res["widths"]
    if not all_measures and (w["criterion"] != "").any():
        w = w[w["criterion"] != ""]
    t = Table(title="images per prompt type and checkpoint for a target half-width")
    cols = ["criterion", "metric", "prompt_type", "encoder", "resize", "sd", "pilot_units",
            "pilot_half_width", "target_half_width", "units_needed", "images_needed",
            "images_needed_all", "gpu_hours"]  # fmt: skip
    for c in cols:
        t.add_column(c.replace("_", " "), justify="left" if c in cols[:5] else "right")
    for _, r in w.iterrows():
        t.add_row(*(_fmt(r[c]) for c in cols))
    con.print(t)
    p = res.get("per_leaf")
    if p is not None and len(p):
        if not all_measures and (p["criterion"] != "").any():
            p = p[p["criterion"] != ""]
        t = Table(title="images per leaf, the leaves fixed, for a target half-width")
        cols = ["criterion", "metric", "prompt_type", "encoder", "resize", "between", "within",
                "images_per_leaf_seen", "leaves", "target_half_width", "width_floor",
                "images_per_leaf_needed", "images_needed", "gpu_hours"]  # fmt: skip
        for c in cols:
            t.add_column(c.replace("_", " "), justify="left" if c in cols[:5] else "right")
        for _, row in p.iterrows():
            t.add_row(*(_fmt(row[c]) for c in cols))
        con.print(t)
    r = res["ranking"]
    if len(r):
        t = Table(title="images per prompt type and checkpoint for a settled ranking")
        cols = ["criterion", "metric", "prompt_type", "entities", "pilot_p_order", "pilot_p_best",
                "target_probability", "units_order", "images_order", "images_best", "gpu_hours"]  # fmt: skip
        for c in cols:
            t.add_column(c.replace("_", " "), justify="left" if c in cols[:3] else "right")
        for _, row in r.iterrows():
            t.add_row(*(_fmt(row[c]) for c in cols))
        con.print(t)
    for n in res["notes"]:
        con.print(f"- {n}")
    for f in res["files"]:
        con.print(str(f))


def throughput(image_s: float | None = None) -> tuple[float, str]:
    """Seconds per generated image and where the number comes from: the option, else the newest
    measured GPU table in ``benchmarks/results/``, else the sweep planner's stated assumption."""
    # The CLI reads the sweep planner's throughputs: analysis must not import the pipeline.
    from t2ibench.pipeline.plan import DEFAULT_THROUGHPUT, measured_throughput

    if image_s is not None:
        return float(image_s), "given (--image-seconds)"
    measured = measured_throughput()
    if measured and measured.get("image_s"):
        return float(measured["image_s"]), f"{measured.get('gpu', '?')}, {measured['source']}"
    return float(DEFAULT_THROUGHPUT["image_s"]), (
        f"{DEFAULT_THROUGHPUT['gpu']}: {DEFAULT_THROUGHPUT['source']} (SD1.5 512 px, DDIM 30, "
        "fp16, see t2ibench/pipeline/plan.py)"
    )
