"""``t2ibench run``, ``t2ibench evaluate`` and ``t2ibench sweep``: thin shells over
:mod:`t2ibench.pipeline`."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import typer

from t2ibench.cli._console import console, print_answer


def _cli_type(annotation: Any) -> Any:
    """The typer type of a config field: lists stay lists, ``X | None`` becomes ``X``."""
    import types
    import typing

    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = args[0]
        args = list(typing.get_args(annotation))
    if typing.get_origin(annotation) in (list, tuple):
        return list[int] if args and args[0] is int else list[str]
    return annotation


def config_options() -> list[tuple[str, str, Any, str]]:
    """``(dotted key, --option, type, help)`` for every run-config field marked ``cli`` and the
    trainer keys with their own option: the ``t2ibench run`` options, derived from the schema."""
    from t2ibench.runconfig import TRAINER_OPTIONS, RunConfig

    out = []

    def walk(model: Any, prefix: str) -> None:
        for key, f in model.model_fields.items():
            extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
            if "cli" in extra:
                flag = (
                    extra["cli"] if isinstance(extra["cli"], str) else "--" + key.replace("_", "-")
                )
                out.append((prefix + key, flag, _cli_type(f.annotation), f.description or ""))
            elif isinstance(f.annotation, type) and hasattr(f.annotation, "model_fields"):
                walk(f.annotation, f"{prefix}{key}.")

    walk(RunConfig, "")
    for key, (tp, help_text) in TRAINER_OPTIONS.items():
        out.append((f"trainer.{key}", "--" + key.replace("_", "-"), tp, help_text))
    return out


def _split(values: Any) -> Any:
    """Lists accept repeated flags and comma lists: ``--encoders a,b --encoders c``."""
    if isinstance(values, list) and values and isinstance(values[0], str):
        return [v.strip() for item in values for v in item.split(",") if v.strip()]
    return values


def register(app: typer.Typer) -> None:
    options = config_options()

    def run_cmd(**kw: Any) -> None:
        """Train, generate, evaluate and analyse: the whole protocol, resumable."""
        from t2ibench.pipeline.run import RunOptions, execute, resolve, set_layers

        layers: list[tuple[str, dict[str, Any]]] = []
        if kw["trainer"] is not None:
            layers.append(("--trainer", {"trainer.trainer": kw["trainer"]}))
        layers += set_layers(kw["set_"] or ())
        for key, flag, _, _ in options:  # an option beats --set for the same key
            value = kw[key.replace(".", "__")]
            if value is not None and value != []:
                layers.append((flag, {key: _split(value)}))
        run_options = RunOptions(
            layers=layers,
            profile=kw["profile"],
            trainer_file=str(kw["config"]) if kw["config"] else None,
            device=kw["device"],
            out=str(kw["out"]),
            name=kw["name"],
            allow_pickle=kw["allow_pickle"],
            progress=kw["progress"],
            metric_profile=kw["metric_profile"],
        )
        resolved = resolve(run_options)
        if kw["dry_run"]:
            from t2ibench.pipeline.plan import plan, render_plan

            console().print(render_plan(plan(resolved, calibrate=True)))
            return
        run_dir = execute(resolved)
        report = run_dir / "report" / "report.html"
        console().print(
            f"[green]done[/]: {run_dir}" + (f"\nreport: {report}" if report.is_file() else "")
        )
        print_answer(run_dir / "report")  # the answer comes last

    P = inspect.Parameter
    params = [
        P(
            "trainer",
            P.KEYWORD_ONLY,
            annotation=str,
            default=typer.Option(
                None,
                "--trainer",
                help="lora | loha | lokr | native | a plug-in (= --set trainer=NAME).",
            ),
        ),
        P(
            "profile",
            P.KEYWORD_ONLY,
            annotation=str,
            default=typer.Option(
                None,
                help="A profile name (t2ibench profiles list) or a profile TOML file "
                "(default: the offline one unless --base/--dataset name real ones, else paper).",
            ),
        ),
        P(
            "config",
            P.KEYWORD_ONLY,
            annotation=Path,
            default=typer.Option(
                None, help="Trainer config TOML (its keys at top level or under a trainer table)."
            ),
        ),
        P(
            "set_",
            P.KEYWORD_ONLY,
            annotation=list[str],
            default=typer.Option(
                None,
                "--set",
                help="Run-config override KEY=VALUE (repeatable): trainer.dim=8, "
                'generate.steps=30, evaluate.metrics=["vendi"]; a bare trainer key (dim=8) means trainer.dim.',
            ),
        ),
    ]
    for key, flag, tp, help_text in options:
        params.append(
            P(
                key.replace(".", "__"),
                P.KEYWORD_ONLY,
                annotation=tp,
                default=typer.Option(None, flag, help=f"{help_text} (= --set {key}=...)"),
            )
        )
    params += [
        P(
            "device",
            P.KEYWORD_ONLY,
            annotation=str,
            default=typer.Option("cpu", help="cpu | cuda | cuda:N"),
        ),
        P(
            "out",
            P.KEYWORD_ONLY,
            annotation=Path,
            default=typer.Option(Path("results"), help="Folder that holds run folders."),
        ),
        P(
            "name",
            P.KEYWORD_ONLY,
            annotation=str,
            default=typer.Option(None, help="Run name (default: <trainer>-<config hash>)."),
        ),
        P(
            "metric_profile",
            P.KEYWORD_ONLY,
            annotation=str,
            default=typer.Option(
                None,
                "--metric-profile",
                help="Metric definitions of a paper (t2ibench evaluate --help; default lycoris2024): "
                "the evaluate stage computes the profile's measures on its encoders ("
                "--encoders NAME@tiny|NAME@WEIGHTS override their weights).",
            ),
        ),
        P(
            "allow_pickle",
            P.KEYWORD_ONLY,
            annotation=bool,
            default=typer.Option(
                False,
                "--allow-pickle",
                help="Allow a pickle .ckpt base (loaded with weights_only=True).",
            ),
        ),
        P(
            "dry_run",
            P.KEYWORD_ONLY,
            annotation=bool,
            default=typer.Option(
                False, "--dry-run", help="Print the plan and a time estimate; do nothing."
            ),
        ),
        P(
            "progress",
            P.KEYWORD_ONLY,
            annotation=bool,
            default=typer.Option(True, help="Progress bars."),
        ),
    ]
    run_cmd.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    run_cmd.__annotations__ = {p.name: p.annotation for p in params}
    app.command("run")(run_cmd)

    @app.command("profiles")
    def profiles_cmd() -> None:
        """List the registered profiles (the defaults t2ibench run starts from)."""
        from rich.table import Table

        from t2ibench.profiles import PROFILES

        table = Table("name", "offline", "available", "description")
        for name in PROFILES.names():
            p = PROFILES.get(name)
            offline = "" if p.offline_priority is None else str(p.offline_priority)
            table.add_row(name, offline, "yes" if p.available() else "no", p.description)
        console().print(table)

    @app.command("evaluate")
    def evaluate_cmd(
        images_dir: Path = typer.Argument(
            ..., help="Images folder: manifest.jsonl (t2ibench), or a peer layout (--layout)."
        ),
        layout: str = typer.Option(
            "t2ibench",
            help="How IMAGES is laid out: t2ibench, dreambooth, customconcept101, dreambench-pp "
            "or a plug-in (README 'Score my images').",
        ),
        dataset: Path = typer.Option(
            None,
            help="The references: a t2ibench dataset (layout t2ibench), the DreamBooth dataset, "
            "CustomConcept101's concept folders (dreambench-pp: not needed).",
        ),
        checkpoint: str = typer.Option(
            None, help="Checkpoint name of the rows (peer layouts: default the folder's name)."
        ),
        identifier: str = typer.Option(
            None,
            help="The identifier token the prompts use, removed for CLIP-T (dreambooth: sks, "
            "customconcept101: <new1>).",
        ),
        base_images: Path = typer.Option(
            None, "--base-images", help="Base-model images folder (style loss)."
        ),
        encoders: list[str] = typer.Option(None, help="Encoders (default: the paper's four)."),
        resize: list[str] = typer.Option(None, help="Resize modes for image encoders."),
        metrics: list[str] = typer.Option(None, help="Metrics (default: all that apply)."),
        out: Path = typer.Option(..., help="Results folder (merged into if it exists)."),
        cache: Path = typer.Option(
            None, help="Feature cache folder (default: OUT/.feature-cache)."
        ),
        device: str = typer.Option("cpu"),
        metric_profile: str = typer.Option(
            None,
            "--metric-profile",
            help="Metric definitions of a paper: lycoris2024 (default), dreambooth, "
            "customconcept101, dreambench-pp, peft-drift (README table); --encoders NAME@tiny|"
            "NAME@WEIGHTS override its weights.",
        ),
    ) -> None:
        """Score a folder of generated images (from t2ibench or any tool) into the results table."""
        from t2ibench.encoders import FeatureCache
        from t2ibench.layouts import scan_layout
        from t2ibench.metric_profiles import DEFAULT_METRIC_PROFILE, get_metric_profile
        from t2ibench.metric_profiles.compile import check_profile, profile_encoders, profile_plans
        from t2ibench.pipeline.evaluate import evaluate_images
        from t2ibench.pipeline.run import create_encoders
        from t2ibench.results import append_results
        from t2ibench.runconfig import PAPER_ENCODERS

        profile = get_metric_profile(metric_profile or DEFAULT_METRIC_PROFILE)
        scan = scan_layout(
            layout, images_dir, dataset=dataset, checkpoint=checkpoint, identifier=identifier
        )
        check_profile(profile, single_reference=scan.single_reference)
        if profile.defaults:
            encs = create_encoders(
                _split(encoders) or PAPER_ENCODERS, _split(resize) or None, device
            )
        else:
            encs = profile_encoders(profile, _split(encoders), device)
        selected = _split(metrics) or (None if profile.defaults else profile.metrics())
        df = evaluate_images(
            scan.root,
            scan.dataset,
            encs,
            metrics=selected,
            base_images_dir=base_images,
            cache=FeatureCache(cache or out / ".feature-cache"),
            plans=profile_plans(profile, None if profile.defaults else encs, selected),
            records=scan.records,
            checkpoint_info=scan.checkpoint_info,
        )
        merged = append_results(df, out)
        console().print(f"{len(df)} rows written; {len(merged)} rows in {out}")

    @app.command("sweep")
    def sweep_cmd(
        grid: str = typer.Option(
            ..., "--grid", help="Grid TOML file, or a shipped grid name (paper, cpu, toy)."
        ),
        out: Path = typer.Option(
            Path("results"), help="Folder for the runs and the joint analysis."
        ),
        device: str = typer.Option("cpu"),
        dataset: Path = typer.Option(
            None, help="Dataset (default: the grid's or the offline default)."
        ),
        base: str = typer.Option(
            None, help="Base model (default: the grid's or the offline default)."
        ),
        dry_run: bool = typer.Option(
            False,
            "--dry-run",
            help="List the runs and project their work and GPU-hours; do nothing.",
        ),
        gpus: int = typer.Option(
            None, "--gpus", min=1, help="With --dry-run: the makespan on this many GPUs."
        ),
        progress: bool = typer.Option(True),
        executor: str = typer.Option(
            "local",
            "--executor",
            help="Where the runs execute: local (one after another, here) or ray (in parallel "
            "on a Ray cluster; pip install 't2ibench\\[ray]').",
        ),
        cpus_per_run: int = typer.Option(
            None,
            "--cpus-per-run",
            min=1,
            help="Torch threads of each run, and the CPUs a Ray task asks for (default 1): the "
            "same for every executor, so results do not depend on where runs execute.",
        ),
        address: str = typer.Option(
            None,
            "--address",
            help="--executor ray: the cluster to join (auto = the one `ray start` began; "
            "ray://HOST:10001); default: start a local Ray instance on this machine's cores.",
        ),
    ) -> None:
        """Run a grid of configs × seeds (each a resumable run), then one analysis of all of them."""
        from t2ibench.errors import T2IBenchError
        from t2ibench.pipeline.executors import get_executor
        from t2ibench.pipeline.sweep import load_grid, run_sweep
        from t2ibench.runconfig import flatten

        if gpus is not None and not dry_run:
            raise T2IBenchError("--gpus: only with --dry-run (it projects the makespan on N GPUs)")
        # a bad name or option fails first
        runner = get_executor(executor, address=address, cpus_per_run=cpus_per_run)
        g = load_grid(grid)
        if dry_run:
            from t2ibench.pipeline.plan import render_sweep_plan, sweep_plan

            for opts in g.run_options(out=out, device=device, dataset=dataset, base=base):
                shown = [f"{k}={v}" for _, t in opts.layers for k, v in flatten(t).items()]
                console().print(f"{opts.name}: {' '.join(shown)}")
            console().print(
                "\n" + render_sweep_plan(sweep_plan(g, dataset=dataset, base=base, gpus=gpus))
            )
            return
        with runner:
            result = run_sweep(
                g,
                out=out,
                device=device,
                dataset=dataset,
                base=base,
                progress=progress,
                executor=runner,
            )
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
