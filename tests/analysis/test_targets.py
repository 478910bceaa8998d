"""The report's measurements come from the metric registry, not from lists in analysis/."""

import pandas as pd
import pytest

from t2ibench.analysis import (
    Target,
    analyze,
    criteria_targets,
    pair_targets,
    rank_table,
    report_targets,
)
from t2ibench.analysis.synthetic import synthetic_results
from t2ibench.metrics import METRICS, MetricSpec, ReportUse, mean_score, register_metric
from t2ibench.metrics.quality import MeanScore


def test_builtin_metrics_give_the_papers_measurements():
    # What analysis/ used to list by hand (PROTOCOL "Analysis"), now declared by each metric.
    assert {c: set(t) for c, t in criteria_targets().items() if c != "quality"} == {
        "fidelity": {Target("image_similarity", "train"), Target("image_similarity", "alter")},
        "controllability": {Target("text_alignment", "alter")},
        "diversity": {Target("vendi", "train"), Target("vendi", "alter")},
        "preservation": {Target("style_loss", "style")},
    }
    assert set(report_targets("shap")) == {
        Target("image_similarity", "train"),
        Target("image_similarity", "alter"),
        Target("text_alignment", "alter"),
        Target("vendi", "train"),
        Target("style_loss", "style"),
    }
    assert set(report_targets("epochs")) == {
        Target("image_similarity", "train"),
        Target("image_similarity", "alter"),
        Target("text_alignment", "train"),
        Target("text_alignment", "alter"),
        Target("vendi", "train"),
        Target("style_loss", "style"),
    }
    assert set(pair_targets()) == {
        (Target("image_similarity", "alter"), Target("text_alignment", "alter")),
        (Target("image_similarity", "train"), Target("text_alignment", "train")),
        (Target("centroid_distance", "train"), Target("vendi", "train")),
        (Target("image_similarity", "train"), Target("style_loss", "style")),
    }
    # Only the metrics present in the results count.
    assert criteria_targets(["vendi"]) == {
        "diversity": (Target("vendi", "train"), Target("vendi", "alter"))
    }
    assert pair_targets(["vendi"]) == ()


@pytest.fixture
def sharpness():
    spec = register_metric(
        MetricSpec(
            "sharpness", "crispness", None, (), True, (0.0, 1.0), mean_score, MeanScore,
            ("scores",), report=ReportUse(criterion=("train",), shap=("train",),
                                          epochs=("train",)),
        )
    )  # fmt: skip
    yield spec
    METRICS._items.pop("sharpness")


def test_a_new_metric_reaches_the_report_without_edits(sharpness, tmp_path):
    df = synthetic_results(seeds=("a", "b"), epochs=(10, 50))
    new = df[(df["metric"] == "image_similarity") & (df["prompt_type"] == "train")].copy()
    new["metric"], new["encoder"], new["resize"] = "sharpness", "", ""
    new["value"] = new["value"] * -1.0
    both = pd.concat([df, new], ignore_index=True)
    res = analyze(both, tmp_path, shap_iterations=10, plots=False)
    assert "crispness" in res.ranks.index  # a new criterion in the rank table
    assert "sharpness <train>" in set(res.shap_fit["target"])
    assert res.epoch_trends["measure"].str.startswith("sharpness <train>").any()
    report = (tmp_path / "report.html").read_text()
    assert "crispness" in report and "sharpness" in report
    means, _ = rank_table(res.aggregates["all"], res.scores)
    assert "crispness" in means.index
