"""``t2ibench toy``: the toy world (write its dataset, show what ships); registered through the
``t2ibench.commands`` entry point, as a third party's command would be."""

from __future__ import annotations

from pathlib import Path

import typer


def toy_dataset(
    root: Path = typer.Argument(
        ..., help="folder to write (created; an old toy dataset is replaced)"
    ),
    seed: int = typer.Option(0, help="world seed"),
    leaf: list[str] = typer.Option(
        None, help="only these leaves (repeatable), e.g. characters/moony"
    ),
) -> None:
    """Write the toy fine-tuning dataset (9 leaves, 4 categories) in the t2ibench spec."""
    from t2ibench.toy.dataset import make_toy_dataset

    path = make_toy_dataset(root, seed=seed, leaves=leaf or None)
    typer.echo(str(path))


def toy_info() -> None:
    """Shipped toy weights, their sizes and the measured reports."""
    import json

    from t2ibench.toy.common import WEIGHTS

    total = 0
    for p in sorted(WEIGHTS.rglob("*")):
        if p.is_file() and p.parent.name != "reports":
            total += p.stat().st_size
            typer.echo(f"{p.stat().st_size / 2**20:8.2f} MiB  {p.relative_to(WEIGHTS)}")
    typer.echo(f"{total / 2**20:8.2f} MiB  total")
    for rep in sorted((WEIGHTS / "reports").glob("*.json")):
        typer.echo(f"{rep.stem}: {json.dumps(json.loads(rep.read_text()))}")


def register(app: typer.Typer) -> None:
    toy_app = typer.Typer(
        help="The toy world (procedural images, tiny base, probe).", no_args_is_help=True
    )
    app.add_typer(toy_app, name="toy")
    toy_app.command("dataset")(toy_dataset)
    toy_app.command("info")(toy_info)
