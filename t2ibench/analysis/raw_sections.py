"""Report sections that answer one user about one adapter: raw values, anchors, copies, images,
the checkpoint line and the recommendation. They appear in every report, before the rank sections
(which need many configs)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from t2ibench import csvsafe
from t2ibench.analysis.anchors import is_base_model
from t2ibench.analysis.answer import answer_lines, summary, summary_per_base, write_answer
from t2ibench.analysis.checkpoints import (
    PARETO_CRITERIA,
    checkpoint_line,
    headline_measures,
    left_out,
    recommend,
    rule,
)
from t2ibench.analysis.images import MAX_COLUMNS, thumbnail_uri
from t2ibench.analysis.raw import BASE_CHECKPOINT, INTERVAL, ceiling_rows
from t2ibench.analysis.report import Section
from t2ibench.analysis.scores import bases_of
from t2ibench.fsutil import atomic_write_with

COPY_OFFENDERS = 4
#: Above this many checkpoints the raw view turns to one row per checkpoint (headline only).
MAX_WIDE_CHECKPOINTS = 6


def _ci(mean: float, lo: float, hi: float, signed: bool = False) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    m = f"{mean:+.3g}" if signed else f"{mean:.3g}"
    if lo is None or math.isnan(lo):
        return m
    return f"{m} [{lo:.3g}, {hi:.3g}]"


def _measure_label(r, directions) -> str:
    arrow = "↑" if directions.get(r["metric"], True) else "↓"
    enc = f" · {r['encoder']}" if r["encoder"] else ""
    res = f" {r['resize']}" if r["resize"] else ""
    # a metric profile's label (DreamBooth's "DINO", "CLIP-I", "CLIP-T") leads, the metric follows
    label = r.get("measure")
    lead = f"{label}: " if isinstance(label, str) and label and label != r["metric"] else ""
    return f"{lead}{r['metric']} {arrow} <{r['prompt_type']}>{enc}{res}"


def _share(v: float, mean: float) -> str:
    # A mean below 0 (a cosine can be) over a positive ceiling is no share of it: clipped at 0.
    if math.isnan(v):
        return ""
    return "0 % (mean < 0)" if mean < 0 else f"{100 * v:.0f} %"


def wide_raw(raw: pd.DataFrame, directions: dict[str, bool], deltas: bool = True) -> pd.DataFrame:
    """One row per measurement; a "mean [CI]" column per checkpoint (base first), a "Δ vs base"
    column per checkpoint and the real-image ceiling with the share of it."""
    if raw.empty:
        return pd.DataFrame()
    raw = raw.assign(measurement=[_measure_label(r, directions) for _, r in raw.iterrows()])
    is_base = raw["checkpoint"] == BASE_CHECKPOINT
    if "base" in raw.columns and raw["base"].nunique() > 1:  # one column per base model
        raw = raw.assign(checkpoint=raw["checkpoint"].where(
            ~is_base, BASE_CHECKPOINT + " (" + raw["base"].astype(str) + ")"))  # fmt: skip
    raw = raw.assign(_b=~is_base)
    order = (
        raw.drop_duplicates("checkpoint")
        .sort_values(["_b", "epoch", "checkpoint"])["checkpoint"]
        .tolist()
    )
    out = {}
    for ck in order:
        g = raw[raw["checkpoint"] == ck].set_index("measurement")
        out[ck] = g.apply(lambda r: _ci(r["mean"], r["ci_low"], r["ci_high"]), axis=1)
        if deltas and g["_b"].all() and g["delta"].notna().any():
            out[f"Δ {ck}"] = g.apply(
                lambda r: _ci(r["delta"], r["delta_ci_low"], r["delta_ci_high"], True), axis=1
            )
    table = pd.DataFrame(out)
    ck_rows = raw[raw["_b"]]
    if ck_rows["ceiling"].notna().any():
        ceil = ck_rows.groupby("measurement")["ceiling"].mean()
        table["real images"] = ceil.map(lambda v: "" if math.isnan(v) else f"{v:.3g}")
        last = ck_rows.sort_values("epoch").groupby("measurement")[["share_of_ceiling", "mean"]]
        last = last.last()
        table["share of ceiling (last)"] = pd.Series(
            [_share(v, m) for v, m in zip(last["share_of_ceiling"], last["mean"], strict=True)],
            index=last.index,
        )  # aligned by measurement
    table = table.fillna("")
    table.index.name = "measurement"
    return table


def raw_section(raw, constants, directions, ceilings, n_leaves) -> Section:
    sec = Section("Raw values")
    sec.text(
        "What each checkpoint measured, in the metrics' own units (↑ higher is better, ↓ lower "
        f"is better). Intervals: 95 % {INTERVAL} (mean ± t·sd/√n over the {n_leaves} leaves; none "
        "with one leaf). Δ = change against the base model, paired by leaf, with its own t "
        "interval; an interval that excludes 0 is a change the leaves agree on. "
        "'real images' = the dataset's own images scored against themselves with leave-one-out "
        "(the ceiling); share of ceiling = the last checkpoint's mean / that ceiling, clipped at "
        "0 (a mean below 0 is shown as '0 % (mean < 0)'; raw_values.csv has the mean)."
    )
    heads = headline_measures(raw)
    n_ck = raw["checkpoint"].nunique() if not raw.empty else 0
    if n_ck > MAX_WIDE_CHECKPOINTS:
        # Many checkpoints: one row per checkpoint and a column per headline measurement.
        keys = ["metric", "prompt_type", "encoder", "resize"]
        head_rows = raw.merge(heads, on=keys)
        head_rows = head_rows.assign(
            measurement=[
                f"{r['criterion']}: {_measure_label(r, directions)}"
                for _, r in head_rows.iterrows()
            ],
            value=[_ci(r["mean"], r["ci_low"], r["ci_high"]) for _, r in head_rows.iterrows()],
        )
        # several bases: each base model is a row of its own
        base = ["base"] if "base" in head_rows.columns else []
        long = head_rows.pivot_table(
            index=["checkpoint", *base, "config", "epoch"], columns="measurement",
            values="value", aggfunc="first",
        ).reset_index(level=[*base, "config", "epoch"])  # fmt: skip
        long = long.sort_values([*base, "config", "epoch"])
        sec.table(long, f"headline measurements, {n_ck} checkpoints (all of them and every "
                  "measurement in raw_values.csv)", max_rows=40)  # fmt: skip
        return _raw_tail(sec, constants, ceilings)
    if not heads.empty:
        keys = ["metric", "prompt_type", "encoder", "resize"]
        head_rows = raw.merge(heads, on=keys)
        wide = wide_raw(head_rows, directions)
        crit = (
            head_rows.drop_duplicates(keys)
            .assign(measurement=lambda d: [_measure_label(r, directions) for _, r in d.iterrows()])
            .set_index("measurement")["criterion"]
        )
        wide.insert(0, "criterion", crit.reindex(wide.index))
        wide = wide.sort_values("criterion")
        sec.table(wide, "headline measurements per criterion", max_rows=100)
    sec.table(wide_raw(raw, directions, deltas=False), "every measurement (all encoders and "
              "resize modes; raw_values.csv has the deltas and n)", max_rows=400)  # fmt: skip
    return _raw_tail(sec, constants, ceilings)


def _raw_tail(sec, constants, ceilings) -> Section:
    if not constants.empty:
        sec.text(
            "Constant by construction, dropped from every table and criterion (the same value "
            "everywhere, e.g. Vendi of one image per prompt is 1):"
        )
        sec.table(constants, "constant measurements")
    if ceilings is not None and not ceilings.empty:
        cr = ceiling_rows(ceilings).set_index("metric")
        sec.table(cr, "real images (leave-one-out ceiling; mean and t interval over leaves)")
    return sec


def recommendation_section(raw, ceilings, directions, out: Path, plots, files, rows=None
                           ) -> Section:  # fmt: skip
    """The answer first: the recommended checkpoint, what the rule left out and why, the criterion
    values and the checkpoint line. ``rows``: the results (NaN values kept), to name criteria
    whose values are all missing."""
    sec = Section("Checkpoints and recommendation")
    gone = left_out(rows) if rows is not None else []
    bases = bases_of(raw)
    if len(bases) > 1:
        _recommend_per_base(sec, raw, bases, directions, gone, out, files)
    else:
        table, chosen = recommend(raw, directions)
        used = [c for c in PARETO_CRITERIA if c in table.columns]
        answer = summary(table, chosen, used, gone, rule(used or PARETO_CRITERIA))
        files.append(write_answer(answer, out))
        if chosen is not None:
            path = out / "recommendation.csv"
            atomic_write_with(path, lambda tmp: csvsafe.to_csv(table, tmp))
            files.append(path)
        lines = answer_lines(answer)
        sec.text(lines[0][0].upper() + lines[0][1:] + ".")
        if len(lines) > 1:
            sec.bullets(lines[1:])
        if chosen is not None:
            sec.text(f"Rule: {answer['rule']}")
            shown = table[table["pareto"]] if len(table) > 40 else table
            sec.table(shown, "criterion values (0 = worst, 1 = best of base and checkpoints)")
        if chosen is not None and len(table) > 40:
            sec.text("Many checkpoints: the table shows the Pareto set; all in the CSV.")
    if plots:
        p = checkpoint_line(raw, ceilings, out / "plots" / "checkpoint_line.png")
        if p is None and raw["config"].nunique() > 1:
            sec.text("Checkpoint line not drawn: too many configs for one plot.")
        if p:
            files.append(p)
            sec.figure(p, "raw value per headline measurement against epoch (band: 95 % t "
                       "interval over leaves); dashed: base model; dotted: real images")  # fmt: skip
    return sec


def _recommend_per_base(sec, raw, bases, directions, gone, out: Path, files) -> None:
    """Several bases: the rule within each base (its checkpoints rescaled between the worst and
    best of its own base model and checkpoints), one recommendation per base."""
    parts, tables, used = {}, [], []
    for base in bases:
        table, chosen = recommend(raw[raw["base"] == base], directions)
        crit = [c for c in PARETO_CRITERIA if c in table.columns]
        used += [c for c in crit if c not in used]
        parts[base] = summary(table, chosen, crit, [], rule(crit or PARETO_CRITERIA))
        if chosen is not None:
            tables.append((base, table))
    answer = summary_per_base(parts, used, gone, WITHIN_BASE + rule(used or PARETO_CRITERIA))
    files.append(write_answer(answer, out))
    if tables:
        joint = pd.concat([t.assign(base=b) for b, t in tables])
        joint = joint[["base", *(c for c in joint.columns if c != "base")]]
        path = out / "recommendation.csv"
        atomic_write_with(path, lambda tmp: csvsafe.to_csv(joint, tmp))
        files.append(path)
    lines = answer_lines(answer)
    sec.text(lines[0][0].upper() + lines[0][1:] + ".")
    sec.bullets(lines[1:])
    if tables:
        sec.text(f"Rule: {answer['rule']}")
    for base, table in tables:
        shown = table[table["pareto"]] if len(table) > 40 else table
        sec.table(shown, f"{base}: criterion values (0 = worst, 1 = best of {base}'s base model "
                  "and checkpoints)")  # fmt: skip


#: How the recommendation reads results of several bases (said in the report and the JSON).
WITHIN_BASE = (
    "Several bases: the rule runs within each base (a checkpoint is rescaled and compared only "
    "against its own base model and the checkpoints of that base; raw values of two bases are "
    "not on one scale), one recommendation per base. "
)


def copy_section(copies: pd.DataFrame) -> Section:
    sec = Section("Copy detection")
    if copies.empty:
        sec.text("No copy-detection table (made by `t2ibench run`; needs an image encoder).")
        return sec
    enc = copies["encoder"].iloc[0]
    sec.text(
        f"Each generated image's nearest training image by cosine of {enc} features. A leaf's copy "
        "ceiling is the highest cosine between two of its own training images; a generated image "
        "above it is closer to a training image than any two training images are to each other "
        "(a likely copy). The base model's share is the reference."
    )
    g = copies.groupby("checkpoint")
    t = pd.DataFrame(
        {
            "images": g.size(),
            "above ceiling": g["above_ceiling"].sum(),
            "share above": g["above_ceiling"].mean().map(lambda v: f"{100 * v:.1f} %"),
            "median nearest cosine": g["similarity"].median(),
            "max nearest cosine": g["similarity"].max(),
        }
    )
    order = sorted(t.index, key=lambda c: (not is_base_model(c), c))
    sec.table(t.loc[order], "share of generated images above the real-image copy ceiling")
    ck = copies[~copies["checkpoint"].map(is_base_model)]
    worst = ck.assign(margin=ck["similarity"] - ck["copy_ceiling"].fillna(math.inf)).nlargest(
        COPY_OFFENDERS, "similarity"
    )
    rows = []
    for _, r in worst.iterrows():
        label = (
            f"{r['checkpoint']} · {r['leaf']} <{r['prompt_type']}> seed {r['seed']}: cosine "
            f"{r['similarity']:.3f} (ceiling {r['copy_ceiling']:.3f})"
            if r["copy_ceiling"] == r["copy_ceiling"] and r["copy_ceiling"] is not None
            else f"{r['checkpoint']} · {r['leaf']}: cosine {r['similarity']:.3f}"
        )
        rows.append((label, [thumbnail_uri(r["image"]), thumbnail_uri(r["nearest_image"])]))
    if rows:
        sec.grid(["generated", "nearest training image"], rows,
                 f"the {len(rows)} generated images closest to a training image")  # fmt: skip
    return sec


def images_section(grids) -> Section:
    sec = Section("Images")
    if not grids:
        sec.text("No image folders recorded next to the results (made by `t2ibench run`).")
        return sec
    sec.text(
        "Per prompt type a few prompts, one row each: a training image of the leaf, then the base "
        "model and each checkpoint on the same prompt and seed (so differences come from the "
        "adapter, not the noise). In a sweep one column per config (its first seed's last "
        f"checkpoint); at most {MAX_COLUMNS} checkpoint columns, evenly chosen. A sweep across "
        "bases shows each base's own model (column 'base (<base>)'), same prompt and seed."
    )
    for pt, (header, rows) in grids.items():
        sec.grid(header, rows, f"<{pt}> prompts")
    return sec
