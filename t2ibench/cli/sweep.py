"""``t2ibench sweep``: a grid of runs (each resumable), then one analysis of all of them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import typer

from t2ibench.cli._console import console
from t2ibench.cli._options import (
    BUDGET_KEYS,
    GENERATION_KEYS,
    Declared,
    budget_overrides,
    generation_overrides,
    shared,
    with_options,
)

OPTIONS = [
    Declared(
        "grid",
        "--grid",
        str,
        ...,
        "Grid TOML file, or a shipped grid name (paper, modern, cpu, toy).",
    ),
    *shared(
        "out",
        "device",
        "dataset",
        "base",
        "dry_run",
        help={
            "out": "Folder for the runs and the joint analysis.",
            "dataset": "Dataset (default: the grid's or the offline default).",
            "base": "Base model of every run (default: each config's, the grid's or the offline "
            "default).",
            "dry_run": "List the runs and project their work and GPU-hours; do nothing.",
        },
    ),
    # the run option, repeatable here: a grid may mix bases
    *(
        replace(d, type=list[str])
        for d in shared(
            "base_path",
            help={
                "base_path": "The base's files (a local diffusers folder or a single-file "
                "checkpoint): NAME=PATH for the runs whose base is NAME (repeatable: a grid may "
                "mix bases; beats the grid's \\[bases] table), or PATH for every other run.",
            },
        )
    ),
    Declared("gpus", "--gpus", int, None, "With --dry-run: the makespan on this many GPUs.", min=1),
    *shared("progress"),
    *shared(*BUDGET_KEYS),
    *shared(*GENERATION_KEYS),
    Declared(
        "executor",
        "--executor",
        str,
        "local",
        "Where the runs execute: local (one after another, here) or ray (in parallel "
        "on a Ray cluster; pip install 't2ibench\\[ray]').",
    ),
    Declared(
        "cpus_per_run",
        "--cpus-per-run",
        int,
        None,
        "Torch threads of each run, and the CPUs a Ray task asks for (default 1): the "
        "same for every executor, so results do not depend on where runs execute.",
        min=1,
    ),
    Declared(
        "address",
        "--address",
        str,
        None,
        "--executor ray: the cluster to join (auto = the one `ray start` began; "
        "ray://HOST:10001); default: start a local Ray instance on this machine's cores.",
    ),
]


def sweep_cmd(**kw: Any) -> None:
    """Run a grid of configs × seeds (each a resumable run), then one analysis of all of them."""
    from t2ibench.errors import T2IBenchError
    from t2ibench.pipeline.executors import get_executor
    from t2ibench.pipeline.sweep import load_grid, parse_base_paths, run_sweep

    if kw["gpus"] is not None and not kw["dry_run"]:
        raise T2IBenchError("--gpus: only with --dry-run (it projects the makespan on N GPUs)")
    # a bad name or option fails first
    runner = get_executor(kw["executor"], address=kw["address"], cpus_per_run=kw["cpus_per_run"])
    g = load_grid(kw["grid"])
    where = {k: kw[k] for k in ("out", "device", "dataset", "base")}
    where["base_path"] = parse_base_paths(kw["base_path"], g) or None
    budget = budget_overrides(kw)
    if kw["dry_run"]:
        print_sweep_plan(g, where, kw["gpus"], budget)
        return
    with runner:
        result = run_sweep(
            g,
            **where,
            progress=kw["progress"],
            executor=runner,
            budget=budget,
            generate=generation_overrides(kw),
        )
    print_sweep_result(result)


def print_sweep_plan(
    g: Any, where: dict[str, Any], gpus: int | None, budget: dict[str, Any] | None = None
) -> None:
    from t2ibench.pipeline.plan import render_sweep_plan, sweep_plan
    from t2ibench.pipeline.sweep import is_adaptive
    from t2ibench.runconfig import flatten

    for opts in g.run_options(**where, budget=budget):
        shown = [f"{k}={v}" for _, t in opts.layers for k, v in flatten(t).items()]
        console().print(f"{opts.name}: {' '.join(shown)}")
    plan = sweep_plan(
        g, dataset=where["dataset"], base=where["base"], base_path=where["base_path"], gpus=gpus
    )
    console().print("\n" + render_sweep_plan(plan))
    if is_adaptive(g, budget):
        from t2ibench.pipeline.plan import adaptive_projection, render_adaptive_projection

        console().print("\n" + render_adaptive_projection(adaptive_projection(plan)))


def print_sweep_result(result: Any) -> None:
    """The failed runs' table, the count and the report; an error when any run failed."""
    from t2ibench.errors import T2IBenchError

    bad = result.failed
    if bad:
        from rich.markup import escape
        from rich.table import Table

        table = Table("run", "where", "error", title="failed runs")
        for o in bad:
            table.add_row(escape(o.name), escape(o.where), escape(o.error))
        console().print(table)
    n = len(result.outcomes)
    console().print(f"{n - len(bad)} of {n} runs done; summary: {result.summary}")
    if result.report is not None:
        console().print(f"[green]report[/]: {result.report}")
    if bad:
        raise T2IBenchError(
            f"{len(bad)} of {n} runs failed ({', '.join(o.name for o in bad[:5])}"
            f"{', ...' if len(bad) > 5 else ''}); their errors are in {result.summary}; "
            "rerun the same command to retry them (finished work is kept)"
        )


def register(app: typer.Typer) -> None:
    app.command("sweep")(with_options(sweep_cmd, OPTIONS))
