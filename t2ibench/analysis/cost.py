"""What each config cost: train time, peak memory, trainable parameters and checkpoint file size.

Read from the run folders next to the results (:func:`find_runs`): ``run.json`` holds the train
segments ``t2ibench run`` measured (:mod:`t2ibench.pipeline.peak_memory`; a resumed run has one
segment per invocation that trained, summed here) and the stage timings; the parameters and the file
size are read from the checkpoint files themselves (the last epoch's). In a sweep the runs of one
config (its seeds) are summarised together, and :func:`pareto_plot` draws fidelity against
preservation with the file size as colour, the Pareto front marked.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from t2ibench.analysis.raw import BASE_CHECKPOINT

MIB = 1024 * 1024
RUNS_DIR = "runs"
_CHECKPOINT = re.compile(r"-e(\d+)(\.safetensors)?$")
COLUMNS = ["run", "config", "seed", "device", "train_s", "train_segments", "epochs",
           "s_per_epoch", "peak_rss_mib", "rss_scope", "peak_cuda_mib", "params", "file_mib",
           "generate_s", "evaluate_s"]  # fmt: skip


def find_runs(results: Any) -> dict[str, Path]:
    """Run folders of a results folder or file: ``{"": run}`` for one run's ``<run>/results``,
    ``{name: runs/<name>}`` for a sweep's ``<out>/results`` (its checkpoints are ``<name>/...``);
    empty for a DataFrame or results elsewhere."""
    if isinstance(results, pd.DataFrame):
        return {}
    p = Path(results)
    d = p if p.is_dir() else p.parent
    if (d.parent / "run.json").is_file():
        return {"": d.parent}
    runs = d.parent / RUNS_DIR
    if not runs.is_dir():
        return {}
    root = runs.resolve()
    out = {}
    for child in sorted(runs.iterdir()):
        # A link out of the runs folder is not followed.
        if (child / "run.json").is_file() and child.resolve().parent == root:
            out[child.name] = child
    return out


def _checkpoint_files(run_dir: Path, name: str | None) -> list[tuple[int, Path]]:
    """The run's checkpoints by epoch (``<name>-e000010.safetensors`` or a diffusers folder), never
    the trainer's resume state (``<name>-state-e….safetensors``, optimizer moments included)."""
    from t2ibench.adapters.training import list_checkpoints

    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    root = folder.resolve()
    if name:
        found = list_checkpoints(folder, name)
    else:
        found = []
        for p in folder.iterdir():
            m = _CHECKPOINT.search(p.name)
            if m and "-state-e" not in p.name:
                found.append((int(m.group(1)), p))
    return sorted((e, p) for e, p in found if p.resolve().parent == root)


def checkpoint_size(path: Path) -> tuple[int | None, int]:
    """(trainable parameters, bytes on disk) of a checkpoint file or diffusers folder. Parameters:
    the elements of its safetensors tensors, less the one-element ``alpha`` scale per module."""
    from safetensors import safe_open

    files = [path] if path.is_file() else sorted(q for q in path.rglob("*") if q.is_file())
    size = sum(q.stat().st_size for q in files)
    params, seen = 0, False
    for q in files:
        if q.suffix != ".safetensors":
            continue
        try:
            with safe_open(str(q), framework="pt") as f:
                for k in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                    if k.endswith(".alpha"):
                        continue
                    params += math.prod(f.get_slice(k).get_shape())
            seen = True
        except Exception:  # noqa: BLE001 - an unreadable file has no parameter count
            continue
    return (params if seen else None), size


def run_cost(run_dir: Path) -> dict[str, Any]:
    """One row of :data:`COLUMNS` (without config and seed) for a run folder."""
    try:
        record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        record = {}
    timings = record.get("timings", {})
    segments = record.get("cost", {}).get("train_segments", [])
    row: dict[str, Any] = {"run": run_dir.name, "device": record.get("device", "")}
    if segments:
        row["train_s"] = sum(float(s.get("seconds") or 0) for s in segments)
        row["train_segments"] = len(segments)
        rss = [s["peak_rss_bytes"] for s in segments if s.get("peak_rss_bytes")]
        cuda = [s["peak_cuda_bytes"] for s in segments if s.get("peak_cuda_bytes")]
        row["peak_rss_mib"] = max(rss) / MIB if rss else math.nan
        scopes = {s.get("rss_scope") for s in segments}
        row["rss_scope"] = "process" if "process" in scopes else "train"
        row["peak_cuda_mib"] = max(cuda) / MIB if cuda else math.nan
        row["epochs"] = sum(int(s.get("epochs_trained") or 0) for s in segments)
    elif "train" in timings:
        # Runs made before the segments were recorded: the train stage's wall time.
        row["train_s"] = float(timings["train"])
        row["train_segments"] = 0
    if row.get("epochs"):
        row["s_per_epoch"] = row["train_s"] / row["epochs"]
    for stage in ("generate", "evaluate"):
        if stage in timings:
            row[f"{stage}_s"] = float(timings[stage])
    trainer = record.get("resolved", {}).get("trainer_config", {})
    files = _checkpoint_files(run_dir, trainer.get("output_name"))
    if files:
        params, size = checkpoint_size(files[-1][1])
        row["params"] = params
        row["file_mib"] = size / MIB
    return row


def cost_table(results: Any, df: pd.DataFrame) -> pd.DataFrame:
    """One row per run found next to ``results``; config and seed read from the results rows of
    that run's checkpoints (``<run>/<checkpoint>`` in a sweep, every config row for one run)."""
    runs = find_runs(results)
    rows = []
    ck = df.loc[df["checkpoint"] != BASE_CHECKPOINT, ["checkpoint", "config", "seed"]]
    ck = ck.drop_duplicates("checkpoint")
    for prefix, run_dir in runs.items():
        mine = ck if prefix == "" else ck[ck["checkpoint"].astype(str).str.startswith(prefix + "/")]
        if mine.empty:
            continue
        row = run_cost(run_dir)
        row["config"] = str(mine["config"].iloc[0])
        row["seed"] = str(mine["seed"].iloc[0])
        rows.append(row)
    out = pd.DataFrame(rows)
    for c in COLUMNS:
        if c not in out.columns:
            out[c] = math.nan
    return out[COLUMNS]


def config_cost(table: pd.DataFrame) -> pd.DataFrame:
    """Per config: runs, train time (mean over its runs, and the range), peak memory (the largest of
    its runs), trainable parameters and checkpoint size."""
    if table.empty:
        return pd.DataFrame()
    g = table.groupby("config", sort=True)
    out = pd.DataFrame({"runs": g.size()})
    mean, lo, hi = g["train_s"].mean(), g["train_s"].min(), g["train_s"].max()
    out["train time (s)"] = [
        "" if math.isnan(m) else f"{m:.1f}" + (f" ({a:.1f}–{b:.1f})" if f"{a:.1f}" != f"{b:.1f}"
                                               else "")
        for m, a, b in zip(mean, lo, hi, strict=True)
    ]  # fmt: skip
    out["s / epoch"] = g["s_per_epoch"].mean().round(2)
    out["peak RSS (MiB)"] = g["peak_rss_mib"].max().round(0)
    if table["peak_cuda_mib"].notna().any():
        out["peak GPU (MiB)"] = g["peak_cuda_mib"].max().round(0)
    out["trainable params"] = g["params"].first()
    out["file (MiB)"] = g["file_mib"].first().map(lambda v: "" if pd.isna(v) else f"{v:.3g}")
    out["device"] = g["device"].first()
    out = out.loc[:, out.replace("", math.nan).notna().any()]
    return out


def config_criteria(raw: pd.DataFrame, directions: dict[str, bool]) -> pd.DataFrame:
    """config → fidelity / preservation (criterion values of :mod:`t2ibench.analysis.checkpoints`,
    0 = worst, 1 = best of base and checkpoints) at each config's last epoch, mean over its seeds;
    the base model as config ``base``."""
    from t2ibench.analysis.checkpoints import criterion_values

    vals = criterion_values(raw, directions)
    if vals.empty:
        return vals
    info = raw.drop_duplicates("checkpoint").set_index("checkpoint")[["config", "epoch"]]
    vals = vals.join(info)
    last = vals.groupby("config")["epoch"].transform("max")
    vals = vals[(vals["epoch"] == last) | (vals.index == BASE_CHECKPOINT)]
    crit = [c for c in vals.columns if c not in ("config", "epoch")]
    out = vals.groupby("config")[crit].mean()
    out["epoch"] = vals.groupby("config")["epoch"].max()
    return out


def pareto_configs(points: pd.DataFrame, up: list[str], down: list[str]) -> pd.Series:
    """Whether each row is on the Pareto front: no other row is at least as good on every column
    (``up`` higher is better, ``down`` lower) and better on one."""
    x = points[up].to_numpy(dtype=float)
    y = -points[down].to_numpy(dtype=float)
    import numpy as np

    v = np.concatenate([x, y], axis=1)
    ok = np.isfinite(v).all(axis=1)
    front = []
    for i in range(len(v)):
        if not ok[i]:
            front.append(False)
            continue
        others = v[ok & (np.arange(len(v)) != i)]
        dominated = ((others >= v[i]).all(axis=1) & (others > v[i]).any(axis=1)).any()
        front.append(not bool(dominated))
    return pd.Series(front, index=points.index)


def pareto_points(raw, directions, cost: pd.DataFrame) -> pd.DataFrame:
    """config → fidelity, preservation, file (MiB), pareto: the data of :func:`pareto_plot`."""
    crit = config_criteria(raw, directions)
    if crit.empty or not {"fidelity", "preservation"} <= set(crit.columns) or cost.empty:
        return pd.DataFrame()
    size = cost.groupby("config")["file_mib"].first()
    pts = crit.drop(index=BASE_CHECKPOINT, errors="ignore")[["fidelity", "preservation", "epoch"]]
    pts = pts.join(size.rename("file_mib"), how="inner").dropna(subset=["fidelity", "preservation"])
    if len(pts) < 2 or pts["file_mib"].isna().all():
        return pd.DataFrame()
    pts["pareto"] = pareto_configs(pts, ["fidelity", "preservation"], ["file_mib"])
    pts.index.name = "config"
    return pts


def pareto_plot(points: pd.DataFrame, base: pd.Series | None, path: Path) -> Path | None:
    """Fidelity (x) against preservation (y), one point per config, colour = checkpoint size (log),
    Pareto members ringed and named, the two-criterion front as a dashed line."""
    if points.empty:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.ticker import FuncFormatter, NullFormatter

    from t2ibench.fsutil import atomic_write_with

    fig, ax = plt.subplots(figsize=(7.2, 5.4))
    size = points["file_mib"].astype(float)
    ok = size > 0
    lo, hi = size[ok].min(), max(size[ok].max(), size[ok].min() * 1.01)
    wide = hi / lo > 10  # sizes over more than a decade: a log colour scale
    norm = LogNorm(vmin=lo, vmax=hi) if wide else Normalize(vmin=lo, vmax=hi)
    sc = ax.scatter(points.loc[ok, "fidelity"], points.loc[ok, "preservation"], c=size[ok],
                    norm=norm, cmap="viridis", s=60, edgecolors="black", linewidths=0.4,
                    zorder=3)  # fmt: skip
    bar = fig.colorbar(sc, ax=ax, label="checkpoint file (MiB" + (", log scale)" if wide else ")"))
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    bar.ax.yaxis.set_minor_formatter(NullFormatter())
    front = points[points["pareto"]]
    ax.scatter(front["fidelity"], front["preservation"], s=160, facecolors="none",
               edgecolors="crimson", linewidths=1.4, zorder=4,
               label="Pareto front (fidelity ↑, preservation ↑, size ↓)")  # fmt: skip
    for name, r in front.iterrows():
        ax.annotate(str(name).replace("$", r"\$"), (r["fidelity"], r["preservation"]),
                    textcoords="offset points", xytext=(6, 5), fontsize=7)  # fmt: skip
    two = points.loc[pareto_configs(points, ["fidelity", "preservation"], [])]
    two = two.sort_values("fidelity")
    if len(two) > 1:
        ax.plot(two["fidelity"], two["preservation"], "--", color="0.5", lw=1, zorder=2,
                label="front on fidelity and preservation alone")  # fmt: skip
    if base is not None and base.notna().all():
        ax.scatter([base["fidelity"]], [base["preservation"]], marker="*", s=140, color="0.3",
                   zorder=3, label="base model")  # fmt: skip
    ax.set_xlabel("fidelity (0 = worst, 1 = best checkpoint or base)")
    ax.set_ylabel("preservation (0 = worst, 1 = best)")
    ax.grid(alpha=0.3)
    # Below the axes: inside, it hid points in the corner.
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=7,
               frameon=False)  # fmt: skip
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    out = atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)
    return out


def cost_section(results, df, raw, directions, out: Path, plots: bool, files: list) -> Any:
    """The report's "Cost" section; writes ``cost.csv`` (one row per run) when runs are found."""
    from t2ibench import csvsafe
    from t2ibench.analysis.report import Section
    from t2ibench.fsutil import atomic_write_with

    sec = Section("Cost")
    table = cost_table(results, df)
    if table.empty:
        return sec.text(
            "No run folders next to the results: train time, memory, parameters and file size "
            "are read from the run.json and checkpoint files `t2ibench run` and `t2ibench sweep` "
            "write."
        )
    path = out / "cost.csv"
    atomic_write_with(path, lambda tmp: csvsafe.to_csv(table, tmp, index=False))
    files.append(path)
    resumed = int((table["train_segments"] > 1).sum())
    scope = (table["rss_scope"] == "process").any()
    sec.text(
        "Per config (its runs = its seeds): train time = wall time of the invocations that trained "
        "(loading the base model and encoding the latents included; a resumed run sums its "
        f"segments{f', {resumed} run(s) here' if resumed else ''}); s / epoch = that time over the "
        "epochs trained; peak RSS = the process's peak resident memory while training"
        + (" (here the process's peak so far: an upper bound)" if scope else "")
        + "; peak GPU = torch.cuda.max_memory_allocated (tensors only); trainable params = elements "
        "of the last checkpoint's tensors less the one-element alpha per module; file = its size "
        "on disk. Generation and evaluation times per run are in cost.csv."
    )
    if (table["train_segments"] == 0).any():
        sec.text(
            "Runs made before t2ibench recorded train segments show the train stage's wall time "
            "(from run.json's timings) and no memory."
        )
    sec.table(config_cost(table), "what each config cost", max_rows=100)
    points = pareto_points(raw, directions, table)
    if not points.empty:
        shown = points.assign(pareto=points["pareto"].map({True: "yes", False: ""}))
        shown = shown.sort_values(["pareto", "fidelity"], ascending=False)
        sec.text(
            "Fidelity against preservation against size: each config's criterion values (0 = "
            "worst, 1 = best of the base model and all checkpoints, as in the recommendation) at "
            "its last epoch, mean over its seeds. The Pareto front holds the configs no other "
            "config matches or beats on fidelity, preservation and file size at once."
        )
        if plots:
            crit = config_criteria(raw, directions)
            base = (
                crit.loc[BASE_CHECKPOINT, ["fidelity", "preservation"]]
                if BASE_CHECKPOINT in crit.index
                else None
            )
            p = pareto_plot(points, base, out / "plots" / "pareto_cost.png")
            if p:
                files.append(p)
                sec.figure(p, "fidelity vs preservation; colour = checkpoint size; ringed = "
                           "Pareto front")  # fmt: skip
        sec.table(shown.round(3), "fidelity, preservation and size per config", max_rows=60)
    return sec
