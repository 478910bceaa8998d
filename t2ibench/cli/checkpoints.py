"""``t2ibench evaluate-checkpoints DIR``: a thin shell over :mod:`t2ibench.pipeline.checkpoints`."""

from __future__ import annotations

from pathlib import Path

import typer

from t2ibench.cli._console import console, print_answer


def register(app: typer.Typer) -> None:
    @app.command("evaluate-checkpoints")
    def evaluate_checkpoints_cmd(
        folder: Path = typer.Argument(
            ...,
            help="Folder of adapter checkpoints: kohya / LyCORIS / t2ibench .safetensors files, "
            "PEFT or diffusers LoRA folders (one training run).",
        ),
        base: str = typer.Option(
            None, help="The base model they were trained on (default: the profile's)."
        ),
        dataset: str = typer.Option(
            None, help="The dataset they were trained on (default: the profile's)."
        ),
        metric_profile: str = typer.Option(
            None, "--metric-profile", help="Metric definitions (default: lycoris2024)."
        ),
        profile: str = typer.Option(
            None, help="Run profile for the probe settings (t2ibench profiles list)."
        ),
        set_: list[str] = typer.Option(
            None,
            "--set",
            help="Run-config override KEY=VALUE (repeatable): generate.steps=30, "
            "generate.images_per_leaf=4, evaluate.encoders=[...].",
        ),
        out: Path = typer.Option(Path("results"), help="Folder that holds run folders."),
        name: str = typer.Option(None, help="Run name (default: <DIR name>-<settings hash>)."),
        device: str = typer.Option("cpu", help="cpu | cuda | cuda:N"),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="List the checkpoints found, in order; do nothing."
        ),
        progress: bool = typer.Option(True, help="Progress bars."),
    ) -> None:
        """Score every checkpoint of a training run (any trainer) and recommend the best one."""
        from t2ibench.pipeline.checkpoints import (
            CheckpointsOptions,
            evaluate_checkpoints,
            find_checkpoints,
        )
        from t2ibench.pipeline.run import set_layers

        found = find_checkpoints(folder)
        if dry_run:
            from rich.table import Table

            table = Table("checkpoint", "epoch", "step", "from", "format", "algorithm", "modules")
            for f in found:
                table.add_row(
                    f.name,
                    "" if f.epoch is None else str(f.epoch),
                    "" if f.step is None else str(f.step),
                    f.order_from,
                    f.source_format,
                    f.algorithm,
                    str(f.modules),
                )
            console().print(table)
            return
        run_dir = evaluate_checkpoints(
            CheckpointsOptions(
                folder=str(folder),
                base=base,
                dataset=dataset,
                profile=profile,
                metric_profile=metric_profile,
                layers=set_layers(set_ or ()),
                out=str(out),
                name=name,
                device=device,
                progress=progress,
            ),
            found,
        )
        report = run_dir / "report" / "report.html"
        console().print(
            f"[green]done[/]: {run_dir}" + (f"\nreport: {report}" if report.is_file() else "")
        )
        print_answer(run_dir / "report")  # the answer comes last
