"""``t2ibench train`` (fine-tune a base on a dataset) and ``t2ibench size`` (adapter sizes on SD1.5)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def train_cmd(
    trainer: str = typer.Option(..., "--trainer", "-t", help="lora, loha, lokr, native, ..."),
    dataset: Path = typer.Option(..., "--dataset", "-d", help="Dataset root folder."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Checkpoint folder (resumed if it holds a run)."
    ),
    base: str = typer.Option(
        "tiny",
        "--base",
        "-b",
        help="Hub id, diffusers folder, single .safetensors file, or 'tiny' (offline default).",
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help="Trainer config TOML."),
    overrides: list[str] = typer.Option(
        [], "--set", help="key=value config override (repeatable)."
    ),
    epochs: int | None = typer.Option(None, help="Epochs (default: the config's, 50)."),
    save_epochs: str | None = typer.Option(
        None, help="Comma-separated epochs to save, e.g. 10,30,50."
    ),
    seed: int | None = typer.Option(None, help="Seed (default: the config's, 23)."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1, ..."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Fine-tune the UNet and text encoder with a trainer; prints the checkpoints written."""
    from t2ibench.adapters import load_trainer_config, train
    from t2ibench.errors import ConfigError

    cfg = load_trainer_config(trainer, config, overrides)
    saves = None
    if save_epochs is not None:
        try:
            saves = [int(e) for e in save_epochs.split(",") if e.strip()]
        except ValueError:
            raise ConfigError(
                f"--save-epochs {save_epochs!r}: expected integers like 10,30,50"
            ) from None
    ckpts = train(
        trainer,
        dataset,
        base,
        out,
        cfg,
        epochs=epochs,
        save_epochs=saves,
        seed=seed,
        device=device,
        progress=progress,
    )
    for p in ckpts:
        typer.echo(str(p))


def size_cmd(
    trainer: str = typer.Option(..., "--trainer", "-t"),
    preset: str = typer.Option("attn-mlp", "--preset", "-p", help="attn-only, attn-mlp or full."),
    base: str = typer.Option(
        "sd15", "--base", "-b", help="sd15, sdxl, sd3, flux or flux2-klein (meta device)."
    ),
    dim: int | None = typer.Option(None, help="Rank (LoKr: 10000 = full second block)."),
    alpha: float | None = typer.Option(None),
    factor: int | None = typer.Option(None, help="LoKr factor."),
    conv_dim: int | None = typer.Option(None, help="Rank of k×k convolutions (default: dim)."),
    conv_alpha: float | None = typer.Option(None),
    overrides: list[str] = typer.Option([], "--set", help="Any other config key=value."),
    as_json: bool = typer.Option(False, "--json", help='Print {"params", "bytes", "mib"}.'),
) -> None:
    """Trainable parameters and fp16 safetensors size of an adapter (meta device)."""
    from t2ibench.adapters import adapter_size
    from t2ibench.adapters.config import parse_override

    params = {
        "dim": dim,
        "alpha": alpha,
        "factor": factor,
        "conv_dim": conv_dim,
        "conv_alpha": conv_alpha,
    }
    params = {k: v for k, v in params.items() if v is not None}
    for item in overrides:
        key, value = parse_override(item)
        params[key] = value
    res = adapter_size(trainer, preset=preset, base=base, **params)
    if as_json:
        typer.echo(
            json.dumps(
                {"params": res["params"], "bytes": res["bytes"], "mib": round(res["mib"], 4)}
            )
        )
    else:
        typer.echo(
            f"{trainer} {preset}{'' if base == 'sd15' else ' on ' + base}: "
            f"{res['modules']} modules, {res['params']:,} parameters, "
            f"{res['bytes']:,} bytes ({res['mib']:.2f} MiB fp16 safetensors, no metadata)"
        )


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("size")(size_cmd)
