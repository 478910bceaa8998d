"""``t2ibench generate``: images for checkpoints (and the base) over a dataset's prompt types."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer


def generate(
    checkpoints: list[str] = typer.Argument(
        ..., help="Adapter files, native diffusers folders, or 'base' for the base model."
    ),
    base: str = typer.Option("tiny", help="Hub id, diffusers folder, .safetensors file or 'tiny'."),
    dataset: Path = typer.Option(..., help="Dataset folder (t2ibench spec)."),
    prompt_types: str = typer.Option("", help="Comma-separated prompt types (default: all)."),
    images_per_leaf: int = typer.Option(100, help="Images per leaf and prompt type."),
    out: Path = typer.Option(Path("images"), help="Output folder; one subfolder per checkpoint."),
    steps: int = typer.Option(30, help="Sampling steps."),
    guidance: float = typer.Option(7.0, help="Classifier-free guidance scale."),
    size: int = typer.Option(512, help="Image side in pixels (multiple of 8)."),
    negative_prompt: str = typer.Option(None, help="Negative prompt (default: none)."),
    scheduler: str = typer.Option("ddim", help="ddim, pndm, euler, euler-a or dpm++2m."),
    eta: float = typer.Option(0.0, help="DDIM eta."),
    batch_size: int = typer.Option(8, help="Images per pipeline call."),
    multiplier: float = typer.Option(1.0, help="Adapter strength."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:1, ... or auto."),
    dtype: str = typer.Option("auto", help="float32, float16, bfloat16 or auto (fp16 on GPU)."),
    config: Path = typer.Option(None, help="Diffusers config folder for a single-file --base."),
    allow_pickle: bool = typer.Option(False, help="Allow a pickle .ckpt base (weights_only)."),
    attention: str = typer.Option("plain", help="plain (reproducible) or sdpa."),
    channels_last: bool = typer.Option(False, help="Channels-last layout while generating."),
    compile: bool = typer.Option(False, help="torch.compile the denoiser while generating."),
    fuse_adapter: bool = typer.Option(
        False, help="Merge each adapter's ΔW into the weights while generating (restored after)."
    ),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    executor: str = typer.Option(
        "local", help="local (this process) or ray (batches shared by Ray workers)."
    ),
    workers: int = typer.Option(
        None, min=1, help="Ray workers with --executor ray (default: 2; one GPU each on CUDA)."
    ),
    address: str = typer.Option(
        None, help="Ray cluster address (default: $RAY_ADDRESS, a running one, else local)."
    ),
) -> None:
    """Generate images for every leaf × prompt type, seed-paired across checkpoints, resumable."""
    from t2ibench.pipeline.generate import GenerationSettings

    run = _runner(executor, workers, address)
    device, dtype = _device_and_dtype(device, dtype)
    settings = GenerationSettings(
        steps=steps,
        guidance_scale=guidance,
        height=size,
        width=size,
        negative_prompt=negative_prompt,
        scheduler=scheduler,
        batch_size=batch_size,
        eta=eta,
        # docs/performance.md#generation-speed: recorded in the manifest when not the default
        dtype={"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}[dtype],
        attention=attention,
        channels_last=channels_last,
        compile=compile,
        fuse_adapter=fuse_adapter,
    )
    manifests = run(
        base,
        checkpoints,
        _jobs(dataset, prompt_types, images_per_leaf),
        out,
        settings=settings,
        multiplier=multiplier,
        progress=progress,
        device=device,
        config=config,
        allow_pickle=allow_pickle,
    )
    for name, manifest in manifests.items():
        typer.echo(f"{name}: {manifest}")


def _jobs(dataset: Path, prompt_types: str, images_per_leaf: int) -> list[Any]:
    """The generation jobs of ``--prompt-types`` (all when empty) over ``dataset``."""
    from t2ibench.data import load_dataset
    from t2ibench.errors import ConfigError
    from t2ibench.prompts import jobs_for

    types = [t.strip() for t in prompt_types.split(",") if t.strip()] or None
    try:
        return jobs_for(load_dataset(dataset), types, images_per_leaf)
    except KeyError as exc:  # unknown prompt type: the registry's message lists the known ones
        raise ConfigError(f"--prompt-types: {exc}") from None


def _runner(executor: str, workers: int | None, address: str | None) -> Callable[..., Any]:
    """The generation function of ``--executor`` (local, or Ray workers sharing the batches)."""
    from t2ibench.errors import ConfigError
    from t2ibench.pipeline.generate import generate_checkpoints

    if executor not in ("local", "ray"):
        raise ConfigError(f"--executor: {executor!r} is not local or ray")
    if executor == "local" and (workers or address):
        raise ConfigError("--workers/--address: only with --executor ray")
    if executor == "local":
        return generate_checkpoints
    from functools import partial

    from t2ibench.pipeline.shard import generate_checkpoints_sharded

    return partial(generate_checkpoints_sharded, workers=workers or 2, address=address)


def _device_and_dtype(device: str, dtype: str) -> tuple[str, str]:
    """``--device auto`` and ``--dtype auto`` resolved and checked: (device, dtype name)."""
    import torch

    from t2ibench.errors import ConfigError
    from t2ibench.pipeline.devices import check_device

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    check_device(device)
    dtypes = ("float32", "float16", "bfloat16")
    if dtype == "auto":
        dtype = "float16" if device.startswith("cuda") else "float32"
    if dtype not in dtypes:
        raise ConfigError(f"--dtype: {dtype!r} is not one of {', '.join(dtypes)}")
    return device, dtype


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
