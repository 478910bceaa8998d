"""A results table across two bases: ranks within base, the side-by-side section, the config
table's base column (t2ibench/analysis/bases.py, scores.rank_group)."""

import numpy as np
import pandas as pd
import pytest

from t2ibench.analysis import analyze
from t2ibench.analysis.bases import BASE_MODEL_ROW, side_by_side
from t2ibench.analysis.scores import RANK_GROUP, rank_normalise
from t2ibench.analysis.synthetic import synthetic_results

CONFIGS = ["exp-1-lora", "exp-3-lora-lr1e-3", "exp-11-loha", "exp-21-lokr", "exp-22-lokr-f4"]


def two_bases() -> pd.DataFrame:
    """The synthetic table on "sdxl", and again on "flux" with every image-similarity value 1.0 higher
    (FLUX's worst beats SDXL's best); each base with its base-model rows."""
    one = synthetic_results(seeds=("a", "b"), epochs=(10, 30))
    one = one[one["config"].isin(CONFIGS)]
    parts = []
    for base, shift in (("sdxl", 0.0), ("flux", 1.0)):
        t = one.assign(
            base=base,
            config=base + "-" + one["config"],
            checkpoint=base + "/" + one["checkpoint"],
        )
        sim = t["metric"] == "image_similarity"
        t.loc[sim, "value"] += shift
        b = t[t["checkpoint"] == t["checkpoint"].iloc[0]].assign(
            checkpoint="base", config="base", seed="", epoch=np.nan, algorithm=np.nan
        )
        b["value"] = b["value"] - 0.05
        parts += [t, b]
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    res = analyze(two_bases(), out, shap=False, plots=False)
    return res, (out / "report.html").read_text(encoding="utf-8")


def test_ranks_are_within_base():
    df = two_bases()
    ck = df[df["checkpoint"] != "base"]
    scores = rank_normalise(ck)
    sim = scores[scores["metric"] == "image_similarity"]
    # each base's best scores 1 although every FLUX value beats every SDXL one
    best = sim.groupby([*RANK_GROUP, "base"])["score"].max()
    assert (best == 1.0).all()
    assert set(best.index.get_level_values("base")) == {"sdxl", "flux"}
    # one base alone: the groups are the plain ones (the base column changes nothing)
    only = rank_normalise(ck[ck["base"] == "sdxl"])
    assert np.allclose(only["score"], scores[scores["base"] == "sdxl"]["score"])
    # across bases (the column dropped) SDXL's best would not be 1: the split is what did it
    mixed = rank_normalise(ck.drop(columns="base"))
    assert (
        mixed[(mixed["metric"] == "image_similarity") & mixed["config"].str.startswith("sdxl")][
            "score"
        ].max()
        < 0.5
    )


def test_side_by_side_pairs_each_base_with_its_own_model():
    t = side_by_side(two_bases())
    sim = t[(t["metric"] == "image_similarity") & (t["prompt_type"] == "train")]
    cell = sim.set_index(["base", "method"])
    assert set(cell.index) == {
        (b, m) for b in ("sdxl", "flux") for m in (BASE_MODEL_ROW, "lora", "loha", "lokr")
    }
    # 10 leaves are the units; the shift shows in the raw means
    assert (cell["n"] == 10).all()
    diff = cell.loc[("flux", "lora"), "mean"] - cell.loc[("sdxl", "lora"), "mean"]
    assert diff == pytest.approx(1.0, abs=1e-9)
    # each method: its configs at their last epoch (30), both seeds
    assert cell.loc[("sdxl", "lokr"), "checkpoints"] == 4
    assert cell.loc[("flux", BASE_MODEL_ROW), "checkpoints"] == 1


def test_report_has_a_section_per_base_and_names_the_base(report):
    res, html = report
    assert "Bases side by side" in html
    assert "ranks never compare checkpoints of different bases" in html
    section = html[html.index("Bases side by side") :]
    assert "<th>flux</th>" in section and "<th>sdxl</th>" in section
    assert BASE_MODEL_ROW in section
    # the scores the report wrote are ranked within base
    sim = res.scores[res.scores["metric"] == "image_similarity"]
    assert (sim.groupby([*RANK_GROUP, "base"])["score"].max() == 1.0).all()
    # the overview's config table: base is its first column
    overview = html[html.index("configs, their hyperparameters") :]
    first_header = overview[overview.index("<th>") :].split("</th>")[1]
    assert "base" in first_header
    # both base models are in the raw values, each paired with its own base
    raw = res.raw
    assert set(raw[raw["checkpoint"] == "base"]["base"]) == {"sdxl", "flux"}
    lora = raw[(raw["config"] == "flux-exp-1-lora") & (raw["metric"] == "image_similarity")]
    assert (lora["delta"] > 0).all()


def test_few_checkpoints_show_one_column_per_base_model(tmp_path):
    """Up to six checkpoints the raw view is one column per checkpoint: each base model its own."""
    df = two_bases()
    df = df[(df["epoch"].isna() | (df["epoch"] == 30)) & (df["seed"].isin(["a", ""]))]
    df = df[df["config"].isin(["base", "sdxl-exp-1-lora", "flux-exp-1-lora"])]
    analyze(df, tmp_path, shap=False, plots=False)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    raw = html[html.index("<h2>Raw values") :]
    assert "<th>base (flux)</th>" in raw and "<th>base (sdxl)</th>" in raw
    assert "Bases side by side" in html
