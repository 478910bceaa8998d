import re

import pytest
from typer.testing import CliRunner

from t2ibench.analysis import Target, analyze
from t2ibench.analysis.synthetic import synthetic_results
from t2ibench.cli import app
from t2ibench.errors import ResultsError
from t2ibench.results import write_results

ALIGN = "text_alignment <alter> (clip-l14, stretch)"


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("results")
    df = synthetic_results(seeds=("a", "b"))
    df.loc[df["config"] == "exp-5-lora32a16", "caption"] = "<script>alert('x')</script>"
    write_results(df, d)
    return d


def test_analyze_writes_report(results_dir, tmp_path):
    targets = [Target("image_similarity", "train")]
    res = analyze(results_dir, tmp_path, shap_iterations=30, shap_targets=targets)
    for name in ("report.html", "summary.md", "scores.csv", "aggregate_category.csv",
                 "shap_values.csv", "shap_fit.csv", "rank_table.csv", "epoch_claims.csv"):  # fmt: skip
        assert (tmp_path / name).is_file(), name
    html = (tmp_path / "report.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert re.search(r"src='data:image/png;base64,", html)  # figures embedded
    assert "score" in res.scores.columns and len(res.scores) == len(synthetic_results(("a", "b")))
    # the synthetic trends: fidelity rises for characters, falls for overtrained scenes
    claims = res.epoch_claims.set_index(["category", "measure"])["outcome"]
    assert len(claims) == 6 and (claims.drop(("anime", ALIGN)) == "agrees").all()
    # the synthetic text alignment falls for every category; the paper has it rise for anime
    assert claims[("anime", ALIGN)] == "contradicts"
    assert {"lora", "loha", "lokr"} <= set(res.ranks.columns)
    assert not res.shap_fit.empty


def test_filters_and_errors(results_dir, tmp_path):
    res = analyze(results_dir, tmp_path, categories=["anime"], epochs=[10, 50], shap=False,
                  plots=False)  # fmt: skip
    assert set(res.scores["category"]) == {"anime"} and set(res.scores["epoch"]) == {10, 50}
    with pytest.raises(ResultsError, match="category"):
        analyze(results_dir, tmp_path, categories=["nope"])
    one = synthetic_results(seeds=("a",), epochs=(10,))
    # one checkpoint: no ranks, but the raw view (its values are what the user needs)
    res = analyze(one, tmp_path / "one", configs=["exp-1-lora"], shap=False, plots=False)
    assert res.scores.empty and set(res.raw["checkpoint"]) == set(one_ckpt(one))


def one_ckpt(df):
    return df[df["config"] == "exp-1-lora"]["checkpoint"].unique()


def test_cli(results_dir, tmp_path):
    r = CliRunner().invoke(
        app,
        [
            "analyze",
            str(results_dir),
            "--out",
            str(tmp_path),
            "--category",
            "people",
            "--no-shap",
            "--no-plots",
        ],  # fmt: skip
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "report.html").is_file()
    r = CliRunner().invoke(app, ["analyze", str(tmp_path / "nothing"), "--out", str(tmp_path)])
    assert isinstance(r.exception, ResultsError)


def no_epoch_rows(checkpoints=("gen",)):
    """The issue's repro: the 12 required columns, empty epochs, two leaves, image_similarity and
    text_alignment rows."""
    import pandas as pd

    rows = []
    for i, ck in enumerate(checkpoints):
        for j, leaf in enumerate(("things/cup", "things/mug")):
            for metric, enc, v in (("image_similarity", "dinov2-l", 0.5),
                                   ("text_alignment", "clip-l14", 0.3)):  # fmt: skip
                rows.append(dict(checkpoint=ck, config=ck, seed="", epoch="", category="things",
                                 **{"class": leaf.split("/")[1]}, leaf=leaf, prompt_type="alter",
                                 metric=metric, encoder=enc, resize="letterbox",
                                 value=v + 0.05 * i + 0.01 * j))  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize("checkpoints", [("gen",), ("gen", "other")])
def test_issue22_item01_results_without_epochs_give_a_report_with_the_line(checkpoints, tmp_path):
    no_epoch_rows(checkpoints).to_csv(tmp_path / "r.csv", index=False)
    res = analyze(tmp_path / "r.csv", tmp_path / "rep")
    assert (tmp_path / "rep" / "plots" / "checkpoint_line.png").is_file()
    assert (tmp_path / "rep" / "report.html").is_file()
    assert res.raw["epoch"].isna().all()
