"""``t2ibench run``, ``t2ibench evaluate`` and ``t2ibench sweep``: thin shells over
:mod:`t2ibench.pipeline`."""

from __future__ import annotations

from pathlib import Path

import typer

from t2ibench.cli._console import console


def _split(values: list[str] | None) -> list[str] | None:
    """Accept both repeated flags and comma lists: ``--encoders a,b --encoders c``."""
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        trainer: str = typer.Option(
            ..., "--trainer", help="lora | loha | lokr | native | a plug-in"
        ),
        profile: str = typer.Option(
            None, help="Defaults: toy | tiny | paper (default: offline unless --base/--dataset)."
        ),
        base: str = typer.Option(
            None, help="Base model: hub id, diffusers folder, .safetensors, or 'tiny'."
        ),
        dataset: Path = typer.Option(None, help="Dataset folder (t2ibench spec)."),
        config: Path = typer.Option(None, help="Trainer config TOML."),
        set_: list[str] = typer.Option(
            None, "--set", help="Trainer config override key=value (repeatable)."
        ),
        encoders: list[str] = typer.Option(
            None, help="Encoders: name, name@tiny or name@WEIGHTS (comma list)."
        ),
        resize: list[str] = typer.Option(
            None, help="Resize modes for image encoders (comma list)."
        ),
        metrics: list[str] = typer.Option(
            None, help="Metrics to compute (default: every registered one)."
        ),
        prompt_types: list[str] = typer.Option(
            None, "--prompt-types", help="Prompt types (comma list)."
        ),
        images_per_leaf: int = typer.Option(
            None, "--images-per-leaf", help="Images per leaf and prompt type."
        ),
        epochs: int = typer.Option(None, help="Training epochs."),
        save_epochs: list[int] = typer.Option(
            None, "--save-epochs", help="Epochs to checkpoint (repeatable)."
        ),
        seed: int = typer.Option(None, help="Training seed."),
        steps: int = typer.Option(None, help="Sampling steps (DDIM)."),
        guidance_scale: float = typer.Option(None, "--cfg", help="Classifier-free guidance scale."),
        resolution: int = typer.Option(
            None, help="Image side in pixels (training and generation)."
        ),
        batch_size: int = typer.Option(None, "--batch-size", help="Generation batch size."),
        device: str = typer.Option("cpu", help="cpu | cuda | cuda:N"),
        out: Path = typer.Option(Path("results"), help="Folder that holds run folders."),
        name: str = typer.Option(None, help="Run name (default: <trainer>-<config hash>)."),
        allow_pickle: bool = typer.Option(
            False,
            "--allow-pickle",
            help="Allow a pickle .ckpt base (loaded with weights_only=True).",
        ),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Print the plan and a time estimate; do nothing."
        ),
        progress: bool = typer.Option(True, help="Progress bars."),
    ) -> None:
        """Train, generate, evaluate and analyse: the whole protocol, resumable."""
        from t2ibench.pipeline.run import RunOptions, execute, resolve

        options = RunOptions(
            trainer=trainer,
            profile=profile,
            dataset=str(dataset) if dataset else None,
            base=base,
            config=str(config) if config else None,
            overrides=tuple(set_ or ()),
            encoders=_split(encoders),
            resize=_split(resize),
            metrics=_split(metrics),
            prompt_types=_split(prompt_types),
            images_per_leaf=images_per_leaf,
            epochs=epochs,
            save_epochs=save_epochs or None,
            seed=seed,
            device=device,
            out=str(out),
            name=name,
            steps=steps,
            guidance_scale=guidance_scale,
            resolution=resolution,
            batch_size=batch_size,
            allow_pickle=allow_pickle,
            progress=progress,
        )
        resolved = resolve(options)
        if dry_run:
            from t2ibench.pipeline.plan import plan, render_plan

            console().print(render_plan(plan(resolved, calibrate=True)))
            return
        run_dir = execute(resolved)
        report = run_dir / "report" / "report.html"
        console().print(
            f"[green]done[/]: {run_dir}" + (f"\nreport: {report}" if report.is_file() else "")
        )

    @app.command("evaluate")
    def evaluate_cmd(
        images_dir: Path = typer.Argument(..., help="Images folder with manifest.jsonl."),
        dataset: Path = typer.Option(
            ..., help="The dataset the images were made for (references)."
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
    ) -> None:
        """Score a folder of generated images (from t2ibench or any tool) into the results table."""
        from t2ibench.data import load_dataset
        from t2ibench.encoders import FeatureCache
        from t2ibench.pipeline.defaults import PAPER
        from t2ibench.pipeline.evaluate import evaluate_images
        from t2ibench.pipeline.run import create_encoders
        from t2ibench.results import append_results

        ds = load_dataset(dataset)
        encs = create_encoders(_split(encoders) or PAPER["encoders"], _split(resize), device)
        df = evaluate_images(
            images_dir,
            ds,
            encs,
            metrics=_split(metrics),
            base_images_dir=base_images,
            cache=FeatureCache(cache or out / ".feature-cache"),
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
        dry_run: bool = typer.Option(False, "--dry-run", help="List the runs; do nothing."),
        progress: bool = typer.Option(True),
    ) -> None:
        """Run a grid of configs × seeds (each a resumable run), then one analysis of all of them."""
        from t2ibench.pipeline.sweep import load_grid, run_sweep

        g = load_grid(grid)
        if dry_run:
            for opts in g.run_options(out=out, device=device, dataset=dataset, base=base):
                console().print(f"{opts.name}: {opts.trainer} {' '.join(opts.overrides)}")
            return
        report = run_sweep(g, out=out, device=device, dataset=dataset, base=base, progress=progress)
        console().print(f"[green]done[/]: {report}")
