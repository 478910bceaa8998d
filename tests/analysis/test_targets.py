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


def _two_encoders(metric, encoders, prompt_type="train"):
    rows = []
    for i, enc in enumerate(encoders):
        for ck in ("c1", "c2"):
            rows.append(dict(checkpoint=ck, config=ck, seed="a", epoch=1, category="k",
                             **{"class": "k"}, leaf="k", prompt_type=prompt_type, metric=metric,
                             encoder=enc, resize="stretch", value=0.1 * i))  # fmt: skip
    return pd.DataFrame(rows)


def test_fidelity_and_diversity_read_the_dino_like_encoder_of_the_run():
    from t2ibench.analysis.shap_analysis import resolve_measure
    from t2ibench.analysis.targets import encoder_family

    assert encoder_family("toy-dino") == encoder_family("dinov2-l") == "dino"
    assert encoder_family("toy-clip") == encoder_family("clip-l14") == "clip"
    assert encoder_family("not-registered") is None
    # the toy world: toy-clip sorts first by name, but fidelity and diversity are DINO measures
    for metric in ("image_similarity", "vendi"):
        df = _two_encoders(metric, ["toy-clip", "toy-dino"])
        assert resolve_measure(df, Target(metric, "train"))[1] == "toy-dino"
    # text alignment names CLIP: its toy stand-in wins over a DINO-like encoder
    df = _two_encoders("text_alignment", ["dino-vits16", "toy-clip"], "alter")
    assert resolve_measure(df, Target("text_alignment", "alter"))[1] == "toy-clip"
    # the metric's own encoder beats one of its family
    df = _two_encoders("image_similarity", ["dinov2-l", "dinov2-b", "toy-dino"])
    assert resolve_measure(df, Target("image_similarity", "train"))[1] == "dinov2-l"
