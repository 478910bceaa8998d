"""Summary tables: which hyperparameter a config varies, the Table-1-style rank table, and epoch
trends per category."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from t2ibench.analysis.aggregate import class_scores
from t2ibench.analysis.configs import (  # noqa: F401  (re-exported)
    VARIED_COLUMNS,
    config_table,
    default_configs,
    varied_hyperparameter,
)
from t2ibench.analysis.scores import base_tag, by_base
from t2ibench.analysis.shap_analysis import NATIVE, lr_levels, resolve_measure
from t2ibench.analysis.targets import Target, criteria_targets

#: The paper's Table 1 (ranks 1-5, a larger number = more of the criterion).
PAPER_TABLE1: dict[str, dict[str, int]] = {
    "fidelity": {"lora": 3, "loha": 2, "lokr": 4, "native (high lr)": 5, "native (low lr)": 1},
    "controllability": {
        "lora": 2,
        "loha": 4,
        "lokr": 1,
        "native (high lr)": 3,
        "native (low lr)": 5,
    },
    "diversity": {"lora": 3, "loha": 4, "lokr": 2, "native (high lr)": 1, "native (low lr)": 5},
}


#: The paper's two native groups (Table 1; appendix G.3.3 calls the default 1e-6 the lower rate
#: and H.3 trains the main native model at 5e-6): its learning-rate level → label.
NATIVE_GROUPS: dict[int, str] = {2: "native (low lr)", 3: "native (high lr)"}


def native_group(lr: object) -> str:
    """The Table-1 label of native fine-tuning at ``lr``: the paper's ``native (low lr)`` /
    ``native (high lr)`` for its levels 1e-6 / 5e-6, else ``native (lr …)``."""
    level = lr_levels(pd.Series([NATIVE]), pd.Series([lr])).iloc[0]
    if level in NATIVE_GROUPS:
        return NATIVE_GROUPS[int(level)]
    return f"native (lr {float(lr):g})"


def algorithm_groups(configs: pd.DataFrame) -> dict[str, list[str]]:
    """Group label → configs for the rank table: each algorithm's default config; native split by
    learning rate (its default config and its lr variants), labelled as the paper's Table 1."""
    varied = varied_hyperparameter(configs)
    groups: dict[str, list[str]] = {}
    for cfg, row in configs.iterrows():
        algo = str(row["algorithm"])
        if algo == NATIVE and varied[cfg] in ("default", "lr"):
            groups.setdefault(native_group(row["lr"]), []).append(cfg)
        elif varied[cfg] == "default":
            groups.setdefault(algo, []).append(cfg)
    return groups


#: How the paper measures Table 1's criteria (§5.2): fidelity = DINOv2 image similarity
#: (letterbox) on train, alter and trigger prompts; controllability = CLIP text alignment on alter
#: prompts; diversity = DINOv2 Vendi. Encoder and resize are resolved on the results (the metric's
#: own encoder, else one of its family: a toy DINO in the toy world).
TABLE1_CRITERIA: dict[str, tuple[Target, ...]] = {
    "fidelity": (
        Target("image_similarity", "train"),
        Target("image_similarity", "alter"),
        Target("image_similarity", "trigger"),
    ),
    "controllability": (Target("text_alignment", "alter"),),
    "diversity": (Target("vendi", "train"), Target("vendi", "alter"), Target("vendi", "trigger")),
}
#: Epoch choices of the Table-1 view: one block per epoch (default), or epochs averaged.
EACH_EPOCH, POOLED, NO_EPOCH = "each", "pooled", "none"
#: Paired bootstrap resamples for the probability of the paper's order: with 10,000 its Monte
#: Carlo standard error √(p(1 − p)/B) is at most 0.005 (2,000 gave 0.852 where 20,000 gave 0.839);
#: each order also carries its own MC standard error (``p_*_mc_se``).
TABLE1_BOOTSTRAP = 10_000


def table1_criteria(metrics: Iterable[str] | None = None) -> dict[str, tuple[Target, ...]]:
    """Criterion → measurements for the Table-1 view: the paper's definition
    (:data:`TABLE1_CRITERIA`) for its three criteria, what the metrics declare for any other
    (preservation, a plug-in's criterion)."""
    declared = criteria_targets(metrics)
    present = None if metrics is None else set(metrics)
    out = dict(declared)
    for crit, targets in TABLE1_CRITERIA.items():
        mine = tuple(t for t in targets if present is None or t.metric in present)
        if mine:
            out[crit] = mine
    order = [*TABLE1_CRITERIA, *(c for c in declared if c not in TABLE1_CRITERIA)]
    return {c: out[c] for c in order if c in out}


def criterion_units(
    scores: pd.DataFrame,
    criteria: Mapping[str, Sequence[Target]],
    groups: Mapping[str, Sequence[str]],
) -> pd.DataFrame:
    """criterion, group, epoch, category, class, seed, score: for each seed × class unit the mean
    class score over the criterion's measurements (and over the group's configs)."""
    cols = ["criterion", "group", "epoch", "category", "class", "seed", "score"]
    cfg_group = {c: g for g, cs in groups.items() for c in cs}
    mine = scores[scores["config"].isin(list(cfg_group))]
    parts = []
    for crit, targets in criteria.items():
        for target in targets:
            m = resolve_measure(scores, target)
            if m is None:
                continue
            metric, enc, res, pt = m
            rows = mine[
                (mine["metric"] == metric)
                & (mine["encoder"] == enc)
                & (mine["resize"] == res)
                & (mine["prompt_type"] == pt)
            ]
            if not rows.empty:
                label = f"{metric} <{pt}> ({enc}, {res or 'no resize'})"
                parts.append(class_scores(rows).assign(criterion=crit, measure=label))
    if not parts:
        return pd.DataFrame(columns=cols)
    t = pd.concat(parts, ignore_index=True)
    t["group"] = t["config"].map(cfg_group)
    keys = ["criterion", "group", "epoch", "category", "class", "seed"]
    out = t.groupby(keys, dropna=False, sort=True)["score"].mean().reset_index()[cols]
    # criterion → the measurements found (for the report's description)
    out.attrs["measures"] = {
        c: list(dict.fromkeys(g["measure"])) for c, g in t.groupby("criterion", sort=False)
    }
    return out


def _epoch_blocks(units: pd.DataFrame, epochs) -> list[tuple[str, pd.DataFrame]]:
    if isinstance(epochs, str) and epochs == POOLED:
        keys = ["criterion", "group", "category", "class", "seed"]
        pooled = units.groupby(keys, dropna=False)["score"].mean().reset_index()
        return [(POOLED, pooled)]
    if isinstance(epochs, str):
        if epochs != EACH_EPOCH:
            raise ValueError(f"epochs: expected {EACH_EPOCH!r}, {POOLED!r} or epoch numbers")
        chosen = sorted(int(e) for e in units["epoch"].dropna().unique())
    else:
        chosen = [int(e) for e in epochs]
    blocks = [(str(e), units[units["epoch"] == e]) for e in chosen]
    if isinstance(epochs, str) and units["epoch"].isna().any():
        blocks.append((NO_EPOCH, units[units["epoch"].isna()]))  # checkpoints without an epoch
    return blocks


def _bootstrap_estimates(wide: pd.DataFrame, n_boot: int, rng) -> np.ndarray:
    """(n_boot, groups): group scores (mean over categories of the mean over units) with the
    seed × class units resampled within each category, the same units for every group (paired)."""
    per_cat = []
    for _, u in wide.groupby(level="category"):
        v = u.to_numpy(dtype="float64")
        idx = rng.integers(0, len(v), size=(n_boot, len(v)))
        per_cat.append(v[idx].mean(axis=1))
    return np.mean(per_cat, axis=0)


def _order_probability(boot: np.ndarray, columns: list[str], order: list[str]) -> float:
    """Share of resamples whose scores put ``order`` strictly ascending."""
    if len(order) < 2 or boot.size == 0:
        return math.nan
    b = boot[:, [columns.index(g) for g in order]]
    return float(np.all(np.diff(b, axis=1) > 0, axis=1).mean())


def mc_standard_error(p: float, n_boot: int) -> float:
    """Monte Carlo standard error of a share ``p`` of ``n_boot`` resamples: √(p(1 − p)/B)."""
    if n_boot <= 0 or not np.isfinite(p):
        return math.nan
    return math.sqrt(p * (1 - p) / n_boot)


@dataclass
class Table1:
    """The Table-1 view: group scores and ranks per criterion and epoch block, and the order among
    the groups shared with the paper with its paired-bootstrap probability."""

    table: pd.DataFrame  # criterion, epoch, group, mean_score, rank, n_units
    order: pd.DataFrame  # criterion, epoch, groups, paper_order, data_order, agrees, p_* ...
    epochs: object = EACH_EPOCH
    n_boot: int = 0
    criteria: Mapping[str, Sequence[Target]] = field(default_factory=dict)
    #: criterion → the measurements found in the results (metric <prompt type> (encoder, resize))
    measures: Mapping[str, list[str]] = field(default_factory=dict)

    def wide(self, value: str = "rank") -> pd.DataFrame:
        """criterion × group rows, one column per epoch block (side by side)."""
        if self.table.empty:
            return pd.DataFrame()
        w = self.table.pivot_table(
            index=["criterion", "group"], columns="epoch", values=value, sort=False
        )
        w.columns = [f"epoch {c}" if c != POOLED else "epochs pooled" for c in w.columns]
        return w

    def block(self, epoch: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(mean scores, ranks) of one epoch block: criteria as rows, groups as columns."""
        t = self.table[self.table["epoch"] == epoch]
        crit = list(dict.fromkeys(t["criterion"]))
        means = t.pivot(index="criterion", columns="group", values="mean_score").loc[crit]
        ranks = t.pivot(index="criterion", columns="group", values="rank").loc[crit]
        return means, ranks


def table1(
    scores: pd.DataFrame,
    criteria: Mapping[str, Sequence[Target]] | None = None,
    *,
    epochs: str | Sequence[int] = EACH_EPOCH,
    n_boot: int = TABLE1_BOOTSTRAP,
    seed: int = 0,
) -> Table1:
    """Table 1 of the paper on these scores.

    Groups: each algorithm's default config; native fine-tuning by learning rate, labelled as the
    paper (``native (low lr)`` = 1e-6, ``native (high lr)`` = 5e-6). A group's score for a
    criterion is the mean over categories of the mean over seed × class units of the unit's class
    score averaged over the criterion's measurements (:func:`table1_criteria`); ranks follow the
    paper (1 = lowest, k = highest; ties averaged). ``epochs``: ``"each"`` = one block per epoch
    (the default: the order changes with training), ``"pooled"`` = epochs averaged, or a list of
    epochs. ``p_paper_order`` is the share of ``n_boot`` paired bootstrap resamples (seed × class
    units within each category, the same units for every group) in which the shared groups keep
    the paper's order; ``p_data_order`` the same for the order the data show.
    """
    if criteria is None:
        criteria = table1_criteria(scores["metric"].unique())
    groups = algorithm_groups(config_table(scores))
    units = criterion_units(scores, criteria, groups)
    rng = np.random.default_rng(seed)
    rows, orders = [], []
    for label, block in _epoch_blocks(units, epochs):
        for crit in criteria:
            u = block[block["criterion"] == crit]
            if u.empty:
                continue
            wide = u.pivot_table(
                index=["category", "class", "seed"], columns="group", values="score"
            )
            est = wide.groupby(level="category").mean().mean()
            est = est.dropna()
            if est.empty:
                continue
            ranks = est.rank(method="average")
            n_units = wide.notna().sum()
            for g in est.index:
                rows.append({"criterion": crit, "epoch": label, "group": g,
                             "mean_score": float(est[g]), "rank": float(ranks[g]),
                             "n_units": int(n_units[g])})  # fmt: skip
            paper = PAPER_TABLE1.get(crit)
            if not paper:
                continue
            shared = [g for g in paper if g in est.index]
            if len(shared) < 2:
                continue
            paper_order = sorted(shared, key=lambda g: paper[g])
            data_order = sorted(shared, key=lambda g: (est[g], shared.index(g)))
            complete = wide[shared].dropna()
            boot = (
                _bootstrap_estimates(complete, n_boot, rng)
                if n_boot > 0 and len(complete)
                else np.empty((0, len(shared)))
            )
            orders.append(
                {
                    "criterion": crit,
                    "epoch": label,
                    "groups": ", ".join(shared),
                    "paper_order": " < ".join(paper_order),
                    "data_order": " < ".join(data_order),
                    "agrees": paper_order == data_order,
                    "p_paper_order": _order_probability(boot, shared, paper_order),
                    "p_data_order": _order_probability(boot, shared, data_order),
                    "n_units": len(complete),
                }
            )
            n_done = len(boot)
            for k in ("p_paper_order", "p_data_order"):
                orders[-1][f"{k}_mc_se"] = mc_standard_error(orders[-1][k], n_done)
    table = pd.DataFrame(
        rows, columns=["criterion", "epoch", "group", "mean_score", "rank", "n_units"]
    )
    order = pd.DataFrame(
        orders,
        columns=["criterion", "epoch", "groups", "paper_order", "data_order", "agrees",
                 "p_paper_order", "p_paper_order_mc_se", "p_data_order", "p_data_order_mc_se",
                 "n_units"],
    )  # fmt: skip
    return Table1(table, order, epochs, n_boot, dict(criteria), units.attrs.get("measures", {}))


def rank_table(
    agg_all: pd.DataFrame | None,
    scores: pd.DataFrame,
    criteria: Mapping[str, Sequence[Target]] | None = None,
    *,
    epochs: str | Sequence[int] = EACH_EPOCH,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 1 style: (mean scores, ranks) with (criterion, epoch block) rows and algorithm groups
    as columns; see :func:`table1` (``agg_all`` is not needed: kept for callers that pass it)."""
    t = table1(scores, criteria, epochs=epochs, n_boot=0).table
    if t.empty:
        return pd.DataFrame(), pd.DataFrame()
    idx = ["criterion", "epoch"]
    means = t.pivot_table(index=idx, columns="group", values="mean_score", sort=False)
    ranks = t.pivot_table(index=idx, columns="group", values="rank", sort=False)
    return means, ranks


def compare_with_paper(ranks: pd.DataFrame) -> pd.DataFrame:
    """For the groups both tables have, the order implied by the paper's Table 1 and by the data,
    per criterion (and epoch block when ``ranks`` has one; ranks re-computed among the shared
    groups only). The probability of the order is in :func:`table1`."""
    rows = []
    for key, row in ranks.iterrows():
        crit, epoch = key if isinstance(key, tuple) else (key, None)
        paper = PAPER_TABLE1.get(crit)
        if not paper:
            continue
        shared = [g for g in paper if g in row.index and pd.notna(row[g])]
        if len(shared) < 2:
            continue
        p = pd.Series({g: paper[g] for g in shared}).rank()
        d = row[shared].astype(float).rank()
        rows.append(
            {
                "criterion": crit,
                **({"epoch": epoch} if epoch is not None else {}),
                "groups": ", ".join(shared),
                "paper_order": " < ".join(p.sort_values().index),
                "data_order": " < ".join(d.sort_values().index),
                "agrees": bool((p == d).all()),
            }
        )
    return pd.DataFrame(rows)


def epoch_trends(
    agg_category: pd.DataFrame,
    scores: pd.DataFrame,
    targets: Sequence[Target],
) -> pd.DataFrame:
    """Mean category score per epoch (over configs, with the SE over configs) for each target,
    plus the change from the first to the last epoch."""
    out = []
    for target in targets:
        m = resolve_measure(scores, target)
        if m is None:
            continue
        metric, enc, res, pt = m
        sel = agg_category[
            (agg_category["metric"] == metric)
            & (agg_category["encoder"] == enc)
            & (agg_category["resize"] == res)
            & (agg_category["prompt_type"] == pt)
        ]
        g = sel.groupby(["category", "epoch"], dropna=False)["mean"]
        t = pd.DataFrame({"mean": g.mean(), "se": g.std(ddof=1) / np.sqrt(g.count())})
        t = t.reset_index()
        t.insert(0, "measure", f"{target.label} ({enc}, {res or 'no resize'})")
        out.append(t)
    if not out:
        return pd.DataFrame(columns=["measure", "category", "epoch", "mean", "se"])
    return pd.concat(out, ignore_index=True)


def epoch_change(trends: pd.DataFrame) -> pd.DataFrame:
    """measure × category: score at the first and last epoch and the change."""
    rows = []
    for (measure, cat), t in trends.dropna(subset=["epoch"]).groupby(["measure", "category"]):
        t = t.sort_values("epoch")
        if len(t) < 2:
            continue
        first, last = t.iloc[0], t.iloc[-1]
        rows.append(
            {
                "measure": measure,
                "category": cat,
                "first_epoch": int(first["epoch"]),
                "last_epoch": int(last["epoch"]),
                "first": first["mean"],
                "last": last["mean"],
                "change": last["mean"] - first["mean"],
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class EpochClaim:
    """A finding of the paper on training length: ``target`` in ``categories`` rises (``sign`` +1)
    or falls (-1) from the first to the last checkpoint; ``source`` says where the paper says so."""

    categories: tuple[str, ...]
    target: Target
    sign: int
    source: str


#: The paper's epoch findings. §5.3.2: more epochs improve concept fidelity while compromising
#: text-image alignment, except for scenes and stuffed toys, overtrained after epoch 10 (fidelity
#: falls). Appendix G.4.2 (and F.4): for anime characters the text alignment on generalization
#: (alter) prompts *improves* with training ("overfit, then generalize").
EPOCH_CLAIMS: tuple[EpochClaim, ...] = (
    EpochClaim(("anime", "people"), Target("image_similarity", "train"), +1, "§5.3.2"),
    EpochClaim(("people",), Target("text_alignment", "alter"), -1, "§5.3.2"),
    EpochClaim(("anime",), Target("text_alignment", "alter"), +1, "appendix G.4.2"),
    EpochClaim(("scene", "stuffed_toy"), Target("image_similarity", "train"), -1, "§5.3.2"),
)
#: Family-wise error rate of the epoch claims (Holm over all claims checked).
CLAIMS_ALPHA = 0.05


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (NaN stays NaN and does not count)."""
    p = np.asarray(p, dtype="float64")
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return out


def check_epoch_claims(
    scores: pd.DataFrame,
    first: int | None = None,
    last: int | None = None,
    claims: Sequence[EpochClaim] = EPOCH_CLAIMS,
    alpha: float = CLAIMS_ALPHA,
) -> pd.DataFrame:
    """The paper's epoch findings against the data, with a paired test.

    Per training run (config × seed) present at both epochs (``first``/``last`` None = the first
    and last epoch in the results), the change of its category score (mean over the category's
    classes) from ``first`` to ``last``; a one-sample t test of the mean change gives a two-sided
    p-value, Holm-adjusted over every claim row checked. ``outcome``: ``agrees`` (adjusted p <
    ``alpha`` and the change has the claimed sign), ``contradicts`` (adjusted p < ``alpha``, the
    opposite sign) or ``inconclusive``. Scores of several bases: one row per base and claim (a
    ``base`` column first; runs compared within their base), Holm over all of them.
    """
    cols = ["category", "measure", "claim", "source", "first_epoch", "last_epoch", "first",
            "last", "change", "ci_low", "ci_high", "n_runs", "p", "p_holm", "outcome"]  # fmt: skip
    epochs = sorted(int(e) for e in scores["epoch"].dropna().unique())
    if len(epochs) < 2:
        return pd.DataFrame(columns=cols)
    first = epochs[0] if first is None else first
    last = epochs[-1] if last is None else last
    rows = []
    for base, sub in by_base(scores):  # several bases: each run is compared within its base
        rows += _claim_rows(sub, first, last, claims, base)
    if not rows:
        return pd.DataFrame(columns=cols)
    t = pd.DataFrame(rows)
    t["p_holm"] = holm(t["p"].to_numpy())
    significant = t["p_holm"] < alpha
    same = np.sign(t["change"]) == t["sign"]
    t["outcome"] = np.where(
        significant & same, "agrees", np.where(significant, "contradicts", "inconclusive")
    )
    return t[(["base"] if "base" in t.columns else []) + cols]


def _claim_rows(scores, first, last, claims, base) -> list[dict]:
    from scipy import stats

    rows = []
    for claim in claims:
        m = resolve_measure(scores, claim.target)
        if m is None:
            continue
        metric, enc, res, pt = m
        sel = scores[
            (scores["metric"] == metric)
            & (scores["encoder"] == enc)
            & (scores["resize"] == res)
            & (scores["prompt_type"] == pt)
            & scores["epoch"].isin([first, last])
            & scores["category"].isin(claim.categories)
        ]
        if sel.empty:
            continue
        per_class = class_scores(sel)
        run = per_class.groupby(["category", "config", "seed", "epoch"], dropna=False)["score"]
        wide = run.mean().unstack("epoch")
        for cat in claim.categories:
            if cat not in wide.index.get_level_values("category"):
                continue
            w = wide.xs(cat, level="category")
            if first not in w.columns or last not in w.columns:
                continue
            d = (w[last] - w[first]).dropna().to_numpy(dtype="float64")
            n = len(d)
            if n == 0:
                continue
            mean_d = float(d.mean())
            if n >= 2 and d.std(ddof=1) > 0:
                p = float(stats.ttest_1samp(d, 0.0).pvalue)
                half = float(stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n))
            else:
                p, half = math.nan, math.nan
            rows.append(
                {
                    "category": cat,
                    "measure": f"{claim.target.label} ({enc}, {res or 'no resize'})",
                    "claim": "rises" if claim.sign > 0 else "falls",
                    "source": claim.source,
                    "first_epoch": first,
                    "last_epoch": last,
                    "first": float(w[first].mean()),
                    "last": float(w[last].mean()),
                    "change": mean_d,
                    "ci_low": mean_d - half,
                    "ci_high": mean_d + half,
                    "n_runs": n,
                    "p": p,
                    "sign": claim.sign,
                    **({} if base is None else {"base": base}),
                }
            )
    return rows


def add_epoch_claims(section, claims: pd.DataFrame) -> None:
    """Append the paper's epoch findings and their test to a report section."""
    if claims.empty:
        return
    section.text(
        "The paper's epoch findings: with more training, image similarity on train prompts rises "
        "for anime and movie characters and text alignment on alter prompts falls for movie "
        "characters (§5.3.2), but rises for anime characters (appendix G.4.2); for scenes and "
        "stuffed toys image similarity falls (overtrained after epoch 10). Each is tested on the "
        "paired change of every training run (config × seed) between the first and last epoch: "
        f"one-sample t test, Holm-adjusted over the {len(claims)} rows (family-wise α = "
        f"{CLAIMS_ALPHA:g}); outcome agrees / contradicts / inconclusive."
    )
    shown = claims.drop(columns=["source", "first_epoch", "last_epoch"]).rename(
        columns={"first": f"epoch {claims['first_epoch'].iloc[0]}",
                 "last": f"epoch {claims['last_epoch'].iloc[0]}"}
    )  # fmt: skip
    section.table(shown, "the paper's epoch findings, paired test per training run")


def table1_section(
    scores: pd.DataFrame,
    criteria: Mapping[str, Sequence[Target]] | None = None,
    *,
    epochs: str | Sequence[int] = EACH_EPOCH,
    n_boot: int = TABLE1_BOOTSTRAP,
    seed: int = 0,
    result: Table1 | None = None,
    plots: bool = False,
    out=None,
    files: list | None = None,
    base: str | None = None,
):
    """The "Algorithms (Table 1)" report section: ranks per epoch side by side, the order among
    the groups shared with the paper with its bootstrap probability, and the paper's table.
    ``base``: the section is that base's (results of several bases: one section per base)."""

    from t2ibench.analysis.report import Section

    sec = Section("Algorithms (Table 1)" + (f", base {base}" if base is not None else ""))
    if base is not None:
        sec.text(
            f"The checkpoints of base {base} only: with several bases, ranks, orders and their "
            "probabilities are computed within each base (a method's order on one base says "
            "nothing about another)."
        )
    t1 = result if result is not None else table1(
        scores, criteria, epochs=epochs, n_boot=n_boot, seed=seed
    )  # fmt: skip
    if t1.table.empty:
        return sec.text("No algorithm groups or criterion measurements in the results.")
    how = "; ".join(f"{c}: " + ", ".join(ms) for c, ms in t1.measures.items())
    sec.text(
        "Each algorithm's default config (native fine-tuning split by learning rate: the paper's "
        "native (low lr) = 1e-6, native (high lr) = 5e-6). A group's score for a criterion is the "
        "mean rank score over categories, seed × class units and the criterion's measurements "
        f"({how}); rank 1 = lowest score, as in the paper's Table 1 where a larger number means "
        "more of the criterion. "
        + (
            "One column per epoch: the order changes with training (on the paper's data LoRA, "
            "LoHa and LoKr keep the paper's order at epoch 10 but not later or pooled)."
            if t1.epochs == EACH_EPOCH
            else f"Epochs: {t1.epochs}."
        )
    )
    wide = t1.wide("rank").astype(object)
    score = t1.wide("mean_score")
    for c in wide.columns:
        wide[c] = [
            f"{r:g} ({m:.2f})" if pd.notna(r) else ""
            for r, m in zip(wide[c], score[c], strict=True)
        ]
    sec.table(wide.reset_index(), "rank (mean score) per epoch", max_rows=200)
    if not t1.order.empty:
        sec.text(
            f"Order among the groups shared with the paper. p_paper_order: share of {t1.n_boot} "
            "paired bootstrap resamples (seed × class units resampled within each category, the "
            "same units for every group) that keep the paper's order; p_data_order: the same for "
            "the order found here; *_mc_se: their Monte Carlo standard error √(p(1 − p)/B) "
            f"(at most {mc_standard_error(0.5, t1.n_boot):.4f} with B = {t1.n_boot}), the "
            "resampling noise only. With 3 seeds and few classes per category these are rough."
        )
        sec.table(t1.order.drop(columns=["groups"]), "the paper's order, epoch by epoch")
    sec.table(pd.DataFrame(PAPER_TABLE1), "the paper's Table 1 (ranks)")
    if plots and out is not None:
        import t2ibench.analysis.plots as P

        for label in dict.fromkeys(t1.table["epoch"]):
            means, ranks = t1.block(label)
            tag = "" if base is None else base_tag(base) + "_"
            name = f"rank_table_{tag}epoch_{label}.png"
            p = P.rank_table_plot(means, ranks, out / "plots" / name)
            if p:
                if files is not None:
                    files.append(p)
                sec.figure(p, f"rank table, epoch {label}")
    return sec
