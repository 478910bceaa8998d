"""``t2ibench run``: a thin shell over :mod:`t2ibench.pipeline.run`. Its options are generated
from the typed run config (:mod:`t2ibench.cli._options`): none is listed here."""

from __future__ import annotations

from typing import Any

import typer

from t2ibench.cli._console import console, print_answer
from t2ibench.cli._options import (
    config_options,
    invocation_options,
    protocol_of,
    split_lists,
    with_options,
)


def run_cmd(**kw: Any) -> None:
    """Train, generate, evaluate and analyse: the whole protocol, resumable."""
    from t2ibench.pipeline.run import RunOptions, execute, resolve, set_layers

    layers: list[tuple[str, dict[str, Any]]] = []
    if kw["trainer"] is not None:
        layers.append(("--trainer", {"trainer.trainer": kw["trainer"]}))
    layers += set_layers(kw["overrides"] or ())
    for d in config_options():  # an option beats --set for the same key
        value = kw[d.param]
        if value is not None and value != []:
            layers.append((d.flag, {d.key: split_lists(value)}))
    resolved = resolve(
        RunOptions(
            layers=layers,
            profile=kw["profile"],
            trainer_file=str(kw["config"]) if kw["config"] else None,
            device=kw["device"],
            out=str(kw["out"]),
            name=kw["name"],
            allow_pickle=kw["allow_pickle"],
            progress=kw["progress"],
            metric_profile=protocol_of(kw),
        )
    )
    if kw["dry_run"]:
        from t2ibench.pipeline.plan import plan, render_plan

        console().print(render_plan(plan(resolved, calibrate=True)))
        return
    print_done(execute(resolved))


def print_done(run_dir: Any) -> None:
    """``done: RUN_DIR``, the report's path when there is one, then the answer (the
    recommendation comes last, where the eye lands)."""
    report = run_dir / "report" / "report.html"
    console().print(
        f"[green]done[/]: {run_dir}" + (f"\nreport: {report}" if report.is_file() else "")
    )
    print_answer(run_dir / "report")


def register(app: typer.Typer) -> None:
    invocation = invocation_options()
    first = [invocation.pop(k) for k in ("trainer", "profile", "config", "overrides")]
    app.command("run")(with_options(run_cmd, first, config_options(), invocation.values()))
