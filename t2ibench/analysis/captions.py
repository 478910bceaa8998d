"""The caption study (paper, appendix H.3): the same configs trained with different captions.

When the results carry a ``caption`` column with at least two values, configs that differ only in
their captions form a *matched group* (e.g. the paper's LoRA default trained with ``.txt`` = the
adjusted tags, ``.txtdb`` = no tags and ``.txttags`` = all tags). As in the paper, the scores are
ranks among the study's checkpoints only; each criterion's score of a checkpoint is the mean, over
the criterion's measurements, of its mean score over leaves.

The paper's findings are checked on matched units (group × seed × epoch): the difference of a
caption's criterion score from the default caption's, with a Student-t interval over the units.
Outcome: ``agrees`` when the interval excludes 0 on the paper's side, ``contradicts`` when on the
other, ``inconclusive`` otherwise.
"""

from __future__ import annotations

import math

import pandas as pd

from t2ibench.analysis.raw import BASE_CHECKPOINT, t_interval

CAPTION_COLUMN = "caption"
#: The authors' caption-file suffixes (``config_mapping.csv``) and what the paper calls them.
CAPTION_LABELS = {".txt": "adjusted tags", ".txtdb": "no tags", ".txttags": "all tags"}
DEFAULT_CAPTION = ".txt"
#: Appendix H.3 against the adjusted tags: (caption, criterion, +1 rises / −1 falls).
PAPER_FINDINGS: tuple[tuple[str, str, int], ...] = (
    (".txtdb", "fidelity", +1),
    (".txtdb", "controllability", -1),
    (".txtdb", "preservation", -1),
    (".txtdb", "diversity", +1),
    (".txttags", "fidelity", -1),
    (".txttags", "controllability", +1),
    (".txttags", "preservation", +1),
    (".txttags", "diversity", +1),
)


def caption_label(value: object) -> str:
    return CAPTION_LABELS.get(str(value), str(value))


def matched_groups(df: pd.DataFrame) -> pd.DataFrame:
    """config → ``group`` and ``caption`` for the configs that share every other hyperparameter
    with a config of another caption; empty when the results have no caption study."""
    from t2ibench.analysis.tables import config_table

    if CAPTION_COLUMN not in df.columns:
        return pd.DataFrame()
    rows = df[df["checkpoint"] != BASE_CHECKPOINT]
    table = config_table(rows)
    if CAPTION_COLUMN not in table.columns:
        table = table.join(rows.drop_duplicates("config").set_index("config")[[CAPTION_COLUMN]])
    table = table[table[CAPTION_COLUMN].notna()]
    if table[CAPTION_COLUMN].nunique() < 2:
        return pd.DataFrame()
    others = [c for c in table.columns if c != CAPTION_COLUMN]
    key = table[others].apply(lambda col: col.map(str)).agg("|".join, axis=1)
    out = []
    for _, g in table.groupby(key, sort=True):
        if g[CAPTION_COLUMN].nunique() < 2:
            continue
        default = g[g[CAPTION_COLUMN] == DEFAULT_CAPTION]
        name = str((default if not default.empty else g).index[0])
        out.append(pd.DataFrame({"group": name, "caption": g[CAPTION_COLUMN].astype(str)}))
    return pd.concat(out) if out else pd.DataFrame()


def criterion_scores(df: pd.DataFrame, directions: dict[str, bool]) -> pd.DataFrame:
    """checkpoint rows: config, group, caption, seed, epoch and one score column per criterion,
    ranks taken among the study's checkpoints only."""
    from t2ibench.analysis.scores import rank_normalise
    from t2ibench.analysis.shap_analysis import resolve_measure
    from t2ibench.analysis.targets import criteria_targets

    groups = matched_groups(df)
    if groups.empty:
        return pd.DataFrame()
    study = df[df["config"].isin(groups.index)]
    scores = rank_normalise(study, directions)
    per_ck = []
    for criterion, targets in criteria_targets(scores["metric"].unique()).items():
        parts = []
        for t in targets:
            m = resolve_measure(scores, t)
            if m is None:
                continue
            metric, enc, res, pt = m
            sel = scores[(scores["metric"] == metric) & (scores["encoder"] == enc)
                         & (scores["resize"] == res) & (scores["prompt_type"] == pt)]  # fmt: skip
            parts.append(sel.groupby("checkpoint")["score"].mean())
        if parts:
            per_ck.append(pd.concat(parts, axis=1).mean(axis=1).rename(criterion))
    if not per_ck:
        return pd.DataFrame()
    out = pd.concat(per_ck, axis=1)
    info = study.drop_duplicates("checkpoint").set_index("checkpoint")[["config", "seed", "epoch"]]
    out = out.join(info).join(groups, on="config")
    out.index.name = "checkpoint"
    return out.reset_index()


def caption_table(scores: pd.DataFrame) -> pd.DataFrame:
    """(criterion, group) × caption: mean score ± standard error over seeds × epochs."""
    crit = [c for c in scores.columns if c not in
            ("checkpoint", "config", "seed", "epoch", "group", "caption")]  # fmt: skip
    long = scores.melt(id_vars=["group", "caption"], value_vars=crit, var_name="criterion",
                       value_name="score").dropna(subset=["score"])  # fmt: skip

    def cell(v: pd.Series) -> str:
        se = v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else math.nan
        return f"{v.mean():.3f}" + ("" if math.isnan(se) else f" ± {se:.3f}")

    t = long.groupby(["criterion", "group", "caption"])["score"].agg(cell).unstack("caption")
    order = sorted(t.columns, key=lambda c: (c != DEFAULT_CAPTION, c))
    t = t[order].fillna("")
    t.columns = [f"{caption_label(c)} ({c})" for c in t.columns]
    return t.reset_index()


def check_findings(scores: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """The paper's caption findings against these results (see the module docstring)."""
    rows = []
    units = ["group", "seed", "epoch"]
    for caption, criterion, sign in PAPER_FINDINGS:
        if criterion not in scores.columns:
            continue
        ref = scores[scores["caption"] == DEFAULT_CAPTION].set_index(units)[criterion]
        alt = scores[scores["caption"] == caption].set_index(units)[criterion]
        diff = (alt - ref.reindex(alt.index)).dropna()
        if diff.empty:
            continue
        mean, lo, hi, n = t_interval(diff.to_numpy(), level)
        if n >= 2 and (lo > 0 if sign > 0 else hi < 0):
            outcome = "agrees"
        elif n >= 2 and (hi < 0 if sign > 0 else lo > 0):
            outcome = "contradicts"
        else:
            outcome = "inconclusive"
        rows.append({
            "caption": f"{caption_label(caption)} ({caption})",
            "criterion": criterion,
            "paper": "rises" if sign > 0 else "falls",
            "units": n,
            "change": round(mean, 3),
            "95% t interval": "" if math.isnan(lo) else f"[{lo:.3f}, {hi:.3f}]",
            "outcome": outcome,
        })  # fmt: skip
    return pd.DataFrame(rows)


def caption_sections(df: pd.DataFrame, directions: dict[str, bool]) -> list:
    """``[Section]`` of the caption study, or ``[]`` when the results carry none."""
    from t2ibench.analysis.report import Section

    scores = criterion_scores(df, directions)
    if scores.empty:
        return []
    sec = Section("Caption study (paper appendix H.3)")
    groups = scores.groupby("group")["caption"].unique()
    sec.text(
        f"{len(groups)} group(s) of configs that differ only in their training captions "
        "(.txt = adjusted tags, the paper's default; .txtdb = no tags, 'a photo of [V]'; "
        ".txttags = all the tagger's tags). Scores are ranks among these checkpoints only, as in "
        "the paper; a criterion's score is the mean of its measurements' mean score over leaves "
        "(1 = best). Cells: mean ± standard error over seeds × epochs."
    )
    sec.table(caption_table(scores), "criterion score per group and caption", max_rows=80)
    findings = check_findings(scores)
    if not findings.empty:
        sec.text(
            "The paper's findings (against the adjusted tags): no tags raises fidelity and "
            "diversity and lowers controllability and preservation; all tags does the opposite "
            "except that it too raises diversity. Change = caption's score − the default "
            "caption's, per matched group × seed × epoch, with a 95 % t interval over those "
            "units; agrees / contradicts when the interval excludes 0, else inconclusive."
        )
        sec.table(findings, "the paper's caption findings checked on these results")
    return [sec]
