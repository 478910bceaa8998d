"""The answer a user runs t2ibench for: which checkpoint to keep, in a few lines, the same on the
console (``run``, ``evaluate-checkpoints``, ``analyze`` all print :func:`answer_lines` of the report
folder) and at the top of the report. The analysis writes it to ``recommendation.json``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd

from t2ibench.fsutil import atomic_write

ANSWER_FILE = "recommendation.json"


def summary(table: pd.DataFrame, chosen: str | None, criteria: list[str], left_out: list[str],
            rule: str) -> dict:  # fmt: skip
    """The recommendation as plain data (what ``recommendation.json`` holds)."""
    out: dict = {"recommended": chosen, "criteria": list(criteria), "left_out": list(left_out),
                 "rule": rule, "values": {}, "pareto": [], "epoch": None}  # fmt: skip
    if chosen is None:
        return out
    row = table.loc[chosen]
    out["checkpoints"] = int(len(table))
    out["values"] = {c: float(row[c]) for c in criteria if pd.notna(row[c])}
    out["pareto"] = [str(c) for c in table.index[table["pareto"].astype(bool)]]
    if pd.notna(row.get("epoch", math.nan)):
        out["epoch"] = int(row["epoch"])
    return out


def summary_per_base(parts: dict[str, dict], criteria: list[str], left_out: list[str],
                     rule: str) -> dict:  # fmt: skip
    """Several bases: one :func:`summary` per base (``bases``), ``recommended`` base → checkpoint.
    Checkpoints are only compared with their own base's (raw values of two bases are not on one
    scale: a FLUX checkpoint's worst can beat an SDXL one's best)."""
    return {"recommended": {b: s["recommended"] for b, s in parts.items()},
            "criteria": list(criteria), "left_out": list(left_out), "rule": rule,
            "bases": parts}  # fmt: skip


def write_answer(s: dict, out_dir: Path) -> Path:
    return atomic_write(Path(out_dir) / ANSWER_FILE, json.dumps(s, indent=1))


def answer_lines(s: dict) -> list[str]:
    """A few lines: the recommended checkpoint and its criterion values, the Pareto set, what was
    left out of the rule and why; with several bases one recommendation per base."""
    if isinstance(s.get("bases"), dict):
        lines = [f"{len(s['bases'])} bases: one recommended checkpoint per base (each checkpoint "
                 "compared only with its own base's model and checkpoints)"]  # fmt: skip
        for base, part in s["bases"].items():
            lines += [f"{base}: {line}" for line in answer_lines({**part, "left_out": []})]
        return lines + [f"left out: {why}" for why in s.get("left_out", [])]
    if s.get("recommended") is None:
        lines = ["no recommended checkpoint: no fidelity, controllability or preservation "
                 "measurement with values in the results"]  # fmt: skip
    else:
        at = f"epoch {s['epoch']}; " if s.get("epoch") is not None else ""
        vals = ", ".join(f"{c} {v:.2f}" for c, v in s["values"].items())
        lines = [f"recommended checkpoint: {s['recommended']} ({at}{vals}; 0 = worst, 1 = best of "
                 "the base model and the checkpoints)"]  # fmt: skip
        if s.get("checkpoints") == 1:
            lines.append("the only checkpoint in the results: nothing to choose between (the "
                         "values are relative to the base model and the checkpoints present)")  # fmt: skip
        if len(s["pareto"]) > 1:
            shown = s["pareto"][:8]
            more = f" and {len(s['pareto']) - 8} more" if len(s["pareto"]) > 8 else ""
            lines.append(f"Pareto set (none beats another on every criterion): "
                         f"{', '.join(shown)}{more}")  # fmt: skip
    lines += [f"left out: {why}" for why in s.get("left_out", [])]
    return lines


def read_answer(report_dir: str | os.PathLike) -> list[str]:
    """:func:`answer_lines` of the report in ``report_dir`` ([] when there is none)."""
    p = Path(report_dir) / ANSWER_FILE
    if not p.is_file():
        return []
    try:
        return answer_lines(json.loads(p.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return []


def print_answer(report_dir: str | os.PathLike) -> None:
    """Print the recommendation of the report in ``report_dir`` (the last thing a command says)."""
    import typer

    for i, line in enumerate(read_answer(report_dir)):
        typer.echo(("" if i == 0 else "  ") + line)
