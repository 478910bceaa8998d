"""The raw-value view: recomputed independently from results.parquet; constant measurements dropped;
a one-config run gets the raw view and no rank sections."""

import math
import statistics

import pandas as pd
import pytest
from scipy import stats

from t2ibench.analysis import analyze
from t2ibench.analysis.checkpoints import recommend
from t2ibench.analysis.raw import constant_measures, t_interval
from t2ibench.analysis.synthetic import synthetic_results
from t2ibench.results import read_results, write_results

CONFIG = "exp-1-lora"


@pytest.fixture(scope="module")
def one_config_dir(tmp_path_factory):
    """One config at three epochs plus the base model (its rows: the epoch-10 values − 0.05), with
    Vendi on alter prompts constant (1.0) as with one image per prompt."""
    d = tmp_path_factory.mktemp("one")
    df = synthetic_results(seeds=("a",), epochs=(10, 30, 50))
    df = df[df["config"] == CONFIG].copy()
    first = df[df["epoch"] == 10].copy()
    base = first.assign(
        checkpoint="base", config="base", seed="", epoch=0, value=first["value"] - 0.05
    )
    for c in ("algorithm", "preset", "lr", "dim", "alpha", "factor", "caption"):
        if c in base.columns:
            base[c] = None
    df = pd.concat([df, base], ignore_index=True)
    alter = df[(df["metric"] == "vendi") & (df["prompt_type"] == "train")]
    df = pd.concat([df, alter.assign(prompt_type="alter", value=1.0)], ignore_index=True)
    write_results(df, d)
    return d


@pytest.fixture(scope="module")
def analysed(one_config_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return analyze(one_config_dir, out, shap=False), out


def _leaf_values(df, checkpoint, metric, prompt_type, encoder):
    sel = df[(df.checkpoint == checkpoint) & (df.metric == metric) & (df.prompt_type == prompt_type)
             & (df.encoder == encoder)]  # fmt: skip
    return sel.set_index(["leaf", "resize"])["value"]


def test_three_raw_values_and_one_interval_recomputed(one_config_dir, analysed):
    res, out = analysed
    df = read_results(one_config_dir)
    raw = pd.read_csv(out / "raw_values.csv", keep_default_na=False, na_values=[""])
    ck = sorted(c for c in df.checkpoint.unique() if c != "base")
    cases = [
        (ck[0], "image_similarity", "train", "dinov2-l"),
        (ck[-1], "text_alignment", "alter", "clip-l14"),
        ("base", "image_similarity", "alter", "dinov2-l"),
    ]
    for checkpoint, metric, pt, enc in cases:
        vals = _leaf_values(df, checkpoint, metric, pt, enc)
        resize = vals.index.get_level_values("resize")[0]
        vals = vals.xs(resize, level="resize")
        row = raw[(raw.checkpoint == checkpoint) & (raw.metric == metric) & (raw.prompt_type == pt)
                  & (raw.encoder == enc) & (raw.resize == resize)]  # fmt: skip
        assert len(row) == 1
        assert row["mean"].iloc[0] == pytest.approx(statistics.fmean(vals), rel=1e-12)
        assert row["n"].iloc[0] == len(vals)
    # one interval, from the textbook formula; and the delta against base is the paired mean
    vals = _leaf_values(df, ck[0], "image_similarity", "train", "dinov2-l").xs("letterbox", level=1)
    n = len(vals)
    half = stats.t.ppf(0.975, n - 1) * statistics.stdev(vals) / math.sqrt(n)
    row = raw[(raw.checkpoint == ck[0]) & (raw.metric == "image_similarity")
              & (raw.prompt_type == "train") & (raw.encoder == "dinov2-l")
              & (raw.resize == "letterbox")].iloc[0]  # fmt: skip
    assert row["ci_low"] == pytest.approx(statistics.fmean(vals) - half, rel=1e-9)
    assert row["ci_high"] == pytest.approx(statistics.fmean(vals) + half, rel=1e-9)
    assert row["delta"] == pytest.approx(0.05, abs=1e-9)  # base = epoch 10 − 0.05, leaf by leaf


def test_t_interval_small_n():
    assert math.isnan(t_interval([0.3])[1])
    m, lo, hi, n = t_interval([1.0, 2.0, 3.0])
    assert (m, n) == (2.0, 3) and hi - lo == pytest.approx(2 * 4.302652729911275 / math.sqrt(3))


def test_constant_measure_dropped_and_flagged(one_config_dir, analysed):
    res, out = analysed
    const = constant_measures(read_results(one_config_dir))
    assert set(zip(const.metric, const.prompt_type, strict=True)) == {("vendi", "alter")}
    assert not ((res.raw.metric == "vendi") & (res.raw.prompt_type == "alter")).any()
    html = (out / "report.html").read_text()
    assert "constant measurements" in html


def test_one_config_report_has_raw_view_and_no_rank_sections(analysed):
    res, out = analysed
    html = (out / "report.html").read_text()
    assert html.index("Checkpoints and recommendation") < html.index("Raw values")  # answer first
    assert "Recommended checkpoint:" in html
    for absent in (
        "<h2>Algorithms",
        "CatBoost",
        "<h2>Metric pairs",
        "the paper's Table 1",
        "rank 1",
    ):
        assert absent not in html, absent
    assert "at least 3 configs" in html
    assert res.scores.empty and not (out / "scores.csv").exists()
    assert "base" not in set(res.ranks.columns)


def test_recommendation_pareto():
    rows = []
    # a: best fidelity, worst controllability; b: dominated by c; c: good on both
    for ck, ep, fid, ctl in (("base", 0, 0.1, 0.5), ("a", 1, 0.9, 0.1), ("b", 2, 0.4, 0.3),
                             ("c", 3, 0.5, 0.4)):  # fmt: skip
        for metric, pt, v in (("image_similarity", "train", fid), ("text_alignment", "alter", ctl)):
            rows.append(dict(checkpoint=ck, config="x", epoch=ep, metric=metric, prompt_type=pt,
                             encoder="dinov2-l" if metric == "image_similarity" else "clip-l14",
                             resize="letterbox", mean=v))  # fmt: skip
    table, chosen = recommend(
        pd.DataFrame(rows), {"image_similarity": True, "text_alignment": True}
    )
    assert list(table["pareto"]) == [True, False, True]  # a, b, c by epoch
    # a: 1 + 0 = 1.0; c: 0.5 + 0.75 = 1.25
    assert chosen == "c"
