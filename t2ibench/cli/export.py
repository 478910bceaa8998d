"""``t2ibench export``: an adapter checkpoint in another library's format (PEFT)."""

from __future__ import annotations

from pathlib import Path

import typer


def export_cmd(
    checkpoint: Path = typer.Argument(..., help="A t2ibench adapter (.safetensors)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the export into."),
    fmt: str = typer.Option(
        "peft",
        "--format",
        "-f",
        help="peft (LoRA, LoHa, LoKr and peft-* checkpoints but peft-vera).",
    ),
    base: str = typer.Option(
        "tiny",
        "--base",
        "-b",
        help="The base the adapter was trained on (hub id, folder, ...).",
    ),
) -> None:
    """Write a checkpoint as PEFT adapter folders (OUT/unet, OUT/text_encoder) for diffusers +
    peft: ``PeftModel.from_pretrained(pipe.unet, "OUT/unet")``."""
    from t2ibench.adapters.export import export_adapter

    for folder in export_adapter(checkpoint, out, base=base, fmt=fmt):
        typer.echo(str(folder))


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
