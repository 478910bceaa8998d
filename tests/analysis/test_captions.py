"""The caption study section (paper appendix H.3): matched groups by caption, ranks among the study's
checkpoints only, and the paper's findings checked with three outcomes."""

import pandas as pd
import pytest

from t2ibench.analysis import analyze
from t2ibench.analysis.captions import check_findings, criterion_scores, matched_groups
from t2ibench.analysis.scores import metric_directions
from t2ibench.analysis.synthetic import synthetic_results

STUDY = ["exp-1-lora", "exp-11-loha", "exp-21-lokr", "exp-32-native-lr5e-6"]
#: The paper's trends (H.3) as value shifts: (image_similarity, text_alignment, style_loss, vendi)
SHIFTS = {".txtdb": (0.08, -0.03, 150.0, 0.8), ".txttags": (-0.08, 0.03, -150.0, 0.8)}


def caption_results(shifts=SHIFTS):
    df = synthetic_results(seeds=("a", "b"), epochs=(10, 30))
    df["caption"] = ".txt"
    parts = [df]
    for caption, (sim, text, style, vendi) in shifts.items():
        alt = df[df["config"].isin(STUDY)].copy()
        alt["config"] = alt["config"] + caption.replace(".", "-")
        alt["checkpoint"] = alt["checkpoint"] + caption.replace(".", "-")
        alt["caption"] = caption
        shift = alt["metric"].map({"image_similarity": sim, "text_alignment": text,
                                   "style_loss": style, "vendi": vendi}).fillna(0.0)  # fmt: skip
        alt["value"] = alt["value"] + shift
        parts.append(alt)
    return pd.concat(parts, ignore_index=True)


def test_matched_groups_and_study_ranks():
    df = caption_results()
    groups = matched_groups(df)
    assert sorted(groups["group"].unique()) == sorted(STUDY)
    assert len(groups) == 12  # 4 groups × 3 captions; the other configs are not in the study
    scores = criterion_scores(df, metric_directions(df))
    assert set(scores["caption"]) == {".txt", ".txtdb", ".txttags"}
    assert len(scores) == 12 * 2 * 2  # checkpoints of the study only
    assert scores[["fidelity", "controllability", "preservation"]].stack().between(0, 1).all()


def test_findings_agree_and_contradict():
    df = caption_results()
    got = check_findings(criterion_scores(df, metric_directions(df)))
    assert len(got) == 8 and set(got["outcome"]) == {"agrees"}, got
    # The opposite trends contradict the paper.
    flipped = {k: tuple(-v for v in s[:3]) + (-s[3],) for k, s in SHIFTS.items()}
    df = caption_results(flipped)
    got = check_findings(criterion_scores(df, metric_directions(df))).set_index(
        ["caption", "criterion"])["outcome"]  # fmt: skip
    assert got[("no tags (.txtdb)", "fidelity")] == "contradicts"
    assert got[("all tags (.txttags)", "controllability")] == "contradicts"


def test_section_only_with_a_caption_study(tmp_path):
    df = caption_results()
    analyze(df, tmp_path / "with", shap=False, plots=False)
    html = (tmp_path / "with" / "report.html").read_text()
    assert "<h2>Caption study (paper appendix H.3)</h2>" in html
    assert "no tags (.txtdb)" in html and "agrees" in html
    analyze(synthetic_results(seeds=("a",), epochs=(10,)), tmp_path / "without", shap=False,
            plots=False)  # fmt: skip
    assert "Caption study" not in (tmp_path / "without" / "report.html").read_text()


@pytest.mark.parametrize("column", ["caption", None])
def test_no_caption_column_no_groups(column):
    df = synthetic_results(seeds=("a",), epochs=(10,))
    if column is None:
        df = df.drop(columns="caption")
    assert matched_groups(df).empty
