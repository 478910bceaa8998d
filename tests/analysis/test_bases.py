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


def test_recommendation_is_within_base(report):
    """One recommendation per base: every FLUX value beats every SDXL one, so rescaled together
    the SDXL checkpoints could never be chosen; within base each base has its own."""
    import json

    from t2ibench.analysis.checkpoints import recommend
    from t2ibench.analysis.raw_sections import WITHIN_BASE

    res, html = report
    answer = json.loads((res.out_dir / "recommendation.json").read_text(encoding="utf-8"))
    assert set(answer["bases"]) == {"sdxl", "flux"} == set(answer["recommended"])
    for base, chosen in answer["recommended"].items():
        assert chosen.startswith(base + "/")
        assert answer["bases"][base]["pareto"]
        assert all(p.startswith(base + "/") for p in answer["bases"][base]["pareto"])
    assert answer["rule"].startswith(WITHIN_BASE)
    table = pd.read_csv(res.out_dir / "recommendation.csv")
    assert set(table["base"]) == {"sdxl", "flux"} and table["recommended"].sum() == 2
    # pooled (what the rule did before), image similarity alone would pick a FLUX checkpoint
    sim = res.raw[res.raw["metric"] == "image_similarity"]
    pooled = recommend(sim, {"image_similarity": True})[0]
    assert not pooled[pooled["pareto"]].index.str.startswith("sdxl").any()
    section = html[html.index("Checkpoints and recommendation") : html.index("<h2>Overview")]
    assert "one recommended checkpoint per base" in section
    assert "sdxl: recommended checkpoint: sdxl/" in section
    assert "flux: recommended checkpoint: flux/" in section


def test_epochs_and_table1_are_within_base(report):
    res, html = report
    # the epoch claims compare each training run within its base: 5 configs × 2 seeds per base
    claims = res.epoch_claims
    assert list(claims.columns)[0] == "base" and set(claims["base"]) == {"sdxl", "flux"}
    assert (claims["n_runs"] == 10).all()
    assert set(res.epoch_trends["base"]) == {"sdxl", "flux"}
    t1 = pd.read_csv(res.out_dir / "rank_table.csv")
    assert set(t1["base"]) == {"sdxl", "flux"}
    # FLUX is SDXL shifted on one metric: within base the two bases' orders are the same
    key = ["criterion", "epoch", "group"]
    a, b = (t1[t1["base"] == x].set_index(key)["mean_score"].sort_index() for x in ("sdxl", "flux"))
    assert np.allclose(a, b)
    assert set(res.rank_means.index.get_level_values("base")) == {"sdxl", "flux"}
    for base in ("sdxl", "flux"):
        assert f"Algorithms (Table 1), base {base}" in html
    assert "computed within each base" in html


def test_shap_has_a_base_feature(tmp_path):
    """Several bases: SHAP explains each model with the base as a categorical feature too."""
    from t2ibench.analysis.targets import Target

    res = analyze(
        two_bases(),
        tmp_path,
        plots=False,
        categories=["anime"],
        shap_targets=[Target("image_similarity", "train")],
        shap_iterations=10,
    )
    assert "shap_base" in res.shap_values.columns and "mean_abs_shap_base" in res.shap_fit.columns
    assert set(res.shap_values["base"]) == {"sdxl", "flux"}
    # without it (one base's rows) the feature is not added
    one = analyze(two_bases().query("base == 'sdxl'"), tmp_path / "one", plots=False,
                  categories=["anime"], shap_targets=[Target("image_similarity", "train")],
                  shap_iterations=10)  # fmt: skip
    assert "shap_base" not in one.shap_values.columns and len(one.shap_fit) == 1


def test_tables_without_a_base_column_still_analyse(tmp_path):
    """A table from before results named their base is one base; concatenated with a newer
    table, its rows are the 'unnamed base' beside the named one."""
    import json

    from t2ibench.analysis.scores import UNNAMED_BASE

    df = two_bases()
    old = df[df["base"] == "sdxl"].drop(columns="base")
    res = analyze(old, tmp_path / "old", shap=False, plots=False)
    html = (tmp_path / "old" / "report.html").read_text(encoding="utf-8")
    assert "Bases side by side" not in html and "base" not in res.scores.columns
    answer = json.loads((tmp_path / "old" / "recommendation.json").read_text(encoding="utf-8"))
    assert isinstance(answer["recommended"], str) and "bases" not in answer
    mixed = pd.concat([old, df[df["base"] == "flux"]], ignore_index=True)
    res = analyze(mixed, tmp_path / "mixed", shap=False, plots=False)
    assert set(res.scores["base"]) == {UNNAMED_BASE, "flux"}
    answer = json.loads((tmp_path / "mixed" / "recommendation.json").read_text(encoding="utf-8"))
    assert set(answer["recommended"]) == {UNNAMED_BASE, "flux"}


def test_scatter_plots_one_figure_per_base(tmp_path, monkeypatch):
    """Scores are ranked within base: a scatter panel never mixes two bases' points."""
    import t2ibench.analysis.plots as plots
    from t2ibench.analysis.aggregate import aggregate
    from t2ibench.analysis.configs import config_table, varied_hyperparameter

    ck = two_bases()
    scores = rank_normalise(ck[ck["checkpoint"] != "base"])
    varied = varied_hyperparameter(config_table(scores))
    drawn: list[set] = []
    real = plots._measure_rows
    monkeypatch.setattr(
        plots, "_measure_rows", lambda agg, m: drawn.append(set(agg["base"])) or real(agg, m)
    )
    pairs = plots.pair_targets(scores["metric"].unique())[:1]  # one pair: a figure per base
    cat = aggregate(scores)["category"]
    written = plots.scatter_pairs(cat, scores, varied, tmp_path, pairs)
    labels = [label for label, _ in written]
    assert len(labels) == 2 and labels[0].startswith(pairs[0][0].label)
    assert {label.split(" (base ")[1] for label in labels} == {"flux)", "sdxl)"}
    assert all(p.is_file() and p.stem.endswith(("_flux", "_sdxl")) for _, p in written)
    assert drawn and all(len(b) == 1 for b in drawn)  # each figure's rows: one base
    # one base: the figures as before, no base in their names
    one = scores[scores["base"] == "sdxl"]
    single = plots.scatter_pairs(aggregate(one)["category"], one, varied, tmp_path / "1", pairs)
    assert len(single) == 1 and "base" not in single[0][0]
