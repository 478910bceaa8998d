"""``t2ibench profiles``: the registered run profiles."""

from __future__ import annotations

import typer

from t2ibench.cli._console import console


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


def register(app: typer.Typer) -> None:
    app.command("profiles")(profiles_cmd)
