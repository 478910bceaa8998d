"""The sequential rule of adaptive evaluation (``--budget adaptive``): intervals that stay valid
however often they are looked at, and the stopping decisions made from them.

**Alpha spending over looks.** Look ``j`` (1, 2, ...: one per round) spends
``α_j = α · 6 / (π² j²)``; the ``α_j`` sum to ``α`` over infinitely many looks. At look ``j`` an
entity's interval is the Student-t interval at level ``1 − α_j``: ``mean ± t(1 − α_j/2, n − 1) ·
sd / √n``. By the union bound the probability that *any* look's interval misses the mean is at
most ``Σ α_j = α``, so stopping at whichever look a rule likes (a data-dependent stopping time)
keeps coverage ``1 − α`` (exact for normal values of known SD; the t quantile carries the SD's
estimation). Racing several entities (configs, checkpoints) on several measurements splits ``α``
over them (Bonferroni), so every interval of every look holds jointly with probability ``≥ 1 − α``.

**The population.** The mean an interval is about is the mean over the *full* run's images: the
adaptive order (:func:`t2ibench.pipeline.adaptive.ordered_jobs`) admits a seeded random sample of
them, leaf by leaf, and the t interval of a sample drawn without replacement is conservative for
the finite population's mean.

**Decisions.**

- *width*: an entity × prompt type stops when every judged measurement's half-width is at most the
  target (:func:`width_met`).
- *racing*: on one criterion, entity ``c`` is *out* when one other entity ``d`` beats it on every
  headline measurement of the criterion: the interval of their mean paired difference over the
  units both have (the same image seed of a leaf is the same job for every checkpoint) lies above
  0 after turning lower-is-better values around (:func:`paired_race`; :func:`race` is the unpaired
  form, disjoint intervals); it is the *winner* when every other entity is out. An entity whose place is settled on every criterion
  (out or winner) stops (:func:`race`). With the joint coverage above, a settled entity is wrong
  (out but truly the best on that criterion's measurements) with probability ``≤ α``.

Everything here is pure (numbers in, decisions out) and tested by simulation
(``tests/analysis/test_sequential.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def spent_alpha(alpha: float, look: int) -> float:
    """``α_j = α · 6 / (π² j²)``: the error look ``j`` (1-based) may spend; ``Σ_j α_j = α``."""
    if look < 1:
        raise ValueError(f"look must be >= 1, got {look}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return alpha * 6.0 / (math.pi**2 * look**2)


@dataclass(frozen=True)
class Interval:
    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def interval(values: Sequence[float], look: int, alpha: float, split: int = 1) -> Interval:
    """The always-valid interval of ``values``' mean at ``look`` (``α`` split ``split`` ways).
    Fewer than two values: an infinite half-width (nothing can be decided yet)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n < 2:
        return Interval(float(x.mean()) if n else math.nan, math.inf, n)
    a = spent_alpha(alpha, look) / max(1, split)
    sd = float(x.std(ddof=1))
    return Interval(float(x.mean()), float(stats.t.ppf(1 - a / 2, n - 1) * sd / math.sqrt(n)), n)


def width_met(intervals: Sequence[Interval], width: float) -> bool:
    """Whether every interval's half-width is at most ``width`` (none: never met)."""
    return bool(intervals) and all(iv.half_width <= width for iv in intervals)


def race(
    intervals: Mapping[str, Mapping[str, Mapping[str, Interval]]],
    higher_is_better: Mapping[str, bool],
) -> dict[str, dict[str, str]]:
    """Racing: ``intervals[criterion][measurement][entity]`` at the current look (each already at
    the split level) and each measurement's direction → per entity, the criteria on which its place
    is settled, with the reason (``"out: beaten by D"`` or ``"winner"``). An entity settled on
    every criterion of ``intervals`` may stop."""
    settled: dict[str, dict[str, str]] = {}
    for criterion, measures in intervals.items():
        entities = sorted(set.intersection(*(set(m) for m in measures.values())))
        out: dict[str, str] = {}
        for c in entities:
            for d in entities:
                if d != c and all(
                    _beats(m[d], m[c], higher_is_better.get(name, True))
                    for name, m in measures.items()
                ):
                    out[c] = f"out: beaten by {d}"
                    break
        for c in entities:
            if c in out:
                settled.setdefault(c, {})[criterion] = out[c]
            elif len(entities) > 1 and len(out) == len(entities) - 1:
                settled.setdefault(c, {})[criterion] = "winner"
    return settled


def paired_race(
    values: Mapping[str, Mapping[str, object]],
    higher_is_better: Mapping[str, bool],
    look: int,
    alpha: float,
) -> dict[str, dict[str, str]]:
    """Racing on paired values: ``values[criterion][measurement]`` is a table (pandas DataFrame)
    with one row per unit shared by the entities (an image seed of a leaf: the same job in every
    checkpoint; a (seed, leaf)) and one column per entity. ``d`` beats ``c`` on a measurement when
    the always-valid interval of the mean paired difference ``d − c`` (direction-adjusted, over the
    units both have) lies above 0; α is split over entity pairs × measurements. Out / winner and
    the result's shape as in :func:`race`. Pairing removes what the units share (the leaf, the
    seed's noise), which an unpaired comparison counts as noise."""
    settled: dict[str, dict[str, str]] = {}
    measures_n = sum(len(m) for m in values.values())
    for criterion, measures in values.items():
        entities = sorted(set.intersection(*(set(t.columns) for t in measures.values())))
        k = len(entities)
        split = max(1, k * (k - 1) // 2 * measures_n)
        arrays = {
            name: (
                np.asarray(t[entities], float),
                1.0 if higher_is_better.get(name, True) else -1.0,
            )
            for name, t in measures.items()
        }
        out: dict[str, str] = {}
        for i, c in enumerate(entities):
            for j, d in enumerate(entities):
                if d == c:
                    continue
                wins = True
                for x, sign in arrays.values():
                    diff = sign * (x[:, j] - x[:, i])  # NaN where either lacks the unit
                    if not interval(diff, look, alpha, split).low > 0:
                        wins = False
                        break
                if wins:
                    out[c] = f"out: beaten by {d}"
                    break
        for c in entities:
            if c in out:
                settled.setdefault(c, {})[criterion] = out[c]
            elif k > 1 and len(out) == k - 1:
                settled.setdefault(c, {})[criterion] = "winner"
    return settled


def _beats(a: Interval, b: Interval, higher: bool) -> bool:
    """``a`` is better than ``b`` with disjoint intervals."""
    if higher:
        return a.low > b.high
    return a.high < b.low


def stopped_entities(settled: Mapping[str, Mapping[str, str]], criteria: Sequence[str]) -> dict:
    """The entities settled on every one of ``criteria``, with a one-line reason each."""
    out = {}
    for entity, by in settled.items():
        if criteria and all(c in by for c in criteria):
            out[entity] = "settled: " + "; ".join(f"{c} {by[c]}" for c in criteria)
    return out


def budget_section(path) -> object | None:
    """The report's section on an adaptive budget (``results/budget.csv``: images used per
    checkpoint × prompt type and which rule stopped it); None without one."""
    from pathlib import Path

    import pandas as pd

    from t2ibench.analysis.report import Section

    path = Path(path)
    if not path.is_file():
        return None
    table = pd.read_csv(path, keep_default_na=False)
    used, full = int(table["images"].sum()), int(table["images_full"].sum())
    rules = table.groupby("rule")["images"].agg(["count", "sum"]).reset_index()
    rules.columns = ["rule", "checkpoint x prompt type", "images"]
    return (
        Section("Adaptive budget")
        .text(
            f"{used} of the full run's {full} images ({used / max(full, 1):.0%}). Rounds in a fixed "
            "seeded image order; each checkpoint x prompt type stopped by the rule named "
            "(width: its always-valid interval met the target half-width; settled: its config's "
            "or checkpoint's place was settled by racing; all images: the full count reached; "
            "not judged: no per-image headline measurement uses the prompt type). Alpha spending "
            "over looks, docs/budget.md."
        )
        .table(rules, "which rule stopped what")
        .table(table, "images used and the stopping reason per checkpoint x prompt type")
    )
