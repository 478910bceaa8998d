"""The sequential rule of ``--budget adaptive``: its error under repeated looks, by simulation."""

import math

import numpy as np
import pytest

from t2ibench.analysis.sequential import (
    Interval,
    interval,
    race,
    spent_alpha,
    stopped_entities,
    width_met,
)

LOOKS, STEP, SIMS, ALPHA = 12, 4, 2000, 0.10


def _miss_rates(rng):
    """Over SIMS studies of N(0, 1) values looked at after every STEP values: the share in which
    some look's interval misses 0 — the spending rule's and a fixed-level interval's."""
    from scipy import stats

    x = rng.standard_normal((SIMS, LOOKS * STEP))
    spent = fixed = np.zeros(SIMS, bool)
    for look in range(1, LOOKS + 1):
        n = look * STEP
        m, sd = x[:, :n].mean(1), x[:, :n].std(1, ddof=1)
        for rate, flag in ((spent_alpha(ALPHA, look), "spent"), (ALPHA, "fixed")):
            miss = np.abs(m) > stats.t.ppf(1 - rate / 2, n - 1) * sd / math.sqrt(n)
            if flag == "spent":
                spent = spent | miss
            else:
                fixed = fixed | miss
    return spent.mean(), fixed.mean()


def test_spending_sums_to_alpha():
    assert sum(spent_alpha(0.05, j) for j in range(1, 200_000)) == pytest.approx(0.05, rel=1e-4)
    with pytest.raises(ValueError):
        spent_alpha(0.05, 0)


def test_error_under_repeated_looks_stays_below_alpha():
    spent, fixed = _miss_rates(np.random.default_rng(0))
    # Monte Carlo SE of a rate near 0.1 over 2000 studies is 0.007
    assert spent <= ALPHA + 0.015
    # what the rule guards against: a fixed-level interval looked at 12 times errs far more often
    assert fixed > 2 * ALPHA


def test_interval_matches_its_definition():
    from scipy import stats

    x = [1.0, 2.0, 4.0, 7.0]
    iv = interval(x, look=2, alpha=0.1, split=3)
    a = spent_alpha(0.1, 2) / 3
    assert iv.mean == pytest.approx(3.5)
    assert iv.half_width == pytest.approx(stats.t.ppf(1 - a / 2, 3) * np.std(x, ddof=1) / 2)
    assert interval([1.0], 1, 0.1).half_width == math.inf
    assert not width_met([], 1.0) and width_met([iv], iv.half_width)


def test_race_settles_only_separated_entities():
    iv = {"a": Interval(1.0, 0.1, 9), "b": Interval(0.5, 0.1, 9), "c": Interval(0.95, 0.1, 9)}
    got = race({"fidelity": {"sim": iv}}, {"sim": True})
    assert got == {"b": {"fidelity": "out: beaten by a"}}
    # lower is better turns it around; the winner is settled once every other entity is out
    lower = race({"k": {"loss": {"a": iv["a"], "b": iv["b"]}}}, {"loss": False})
    assert lower == {"a": {"k": "out: beaten by b"}, "b": {"k": "winner"}}
    assert stopped_entities(lower, ["k"]) == {
        "a": "settled: k out: beaten by b",
        "b": "settled: k winner",
    }
    assert stopped_entities(got, ["fidelity", "diversity"]) == {}


def test_race_under_the_null_rarely_settles_anything():
    """Three entities of equal means, raced over 12 looks: some entity declared out in at most
    about alpha of the studies."""
    rng = np.random.default_rng(1)
    sims, wrong = 400, 0
    for _ in range(sims):
        x = rng.standard_normal((3, LOOKS * STEP))
        for look in range(1, LOOKS + 1):
            n = look * STEP
            ivs = {f"e{i}": interval(x[i, :n], look, ALPHA, split=3) for i in range(3)}
            if race({"c": {"m": ivs}}, {"m": True}):
                wrong += 1
                break
    assert wrong / sims <= ALPHA + 0.03


def test_paired_race_sees_what_pairing_removes():
    """Two entities 0.1 apart on units that differ by far more (a leaf effect): the unpaired
    intervals overlap, the paired differences settle it; under the null (no difference) over 12
    looks the paired race settles nothing in about alpha of the studies at most."""
    import pandas as pd

    from t2ibench.analysis.sequential import paired_race

    rng = np.random.default_rng(2)
    unit = rng.normal(0, 1.0, 40)
    t = pd.DataFrame({"a": unit + 0.1 + rng.normal(0, 0.02, 40), "b": unit})
    got = paired_race({"k": {"m": t}}, {"m": True}, look=1, alpha=0.05)
    assert got == {"b": {"k": "out: beaten by a"}, "a": {"k": "winner"}}
    unpaired = {e: interval(t[e], 1, 0.05, 2) for e in t}
    assert race({"k": {"m": unpaired}}, {"m": True}) == {}
    sims, wrong = 150, 0
    for _ in range(sims):
        u = rng.normal(0, 1.0, LOOKS * STEP)
        x = pd.DataFrame({e: u + rng.normal(0, 0.1, u.size) for e in ("a", "b", "c")})
        for look in range(1, LOOKS + 1):
            if paired_race({"k": {"m": x.iloc[: look * STEP]}}, {"m": True}, look, ALPHA):
                wrong += 1
                break
    assert wrong / sims <= ALPHA + 0.04
