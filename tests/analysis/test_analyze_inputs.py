"""What `analyze` reads: the table beside its twin, values it must refuse, names whose plug-in is
gone (issue 22 items 6, 10, 12; issue 18 item 4)."""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from t2ibench.analysis import analyze
from t2ibench.cli import app
from t2ibench.errors import ResultsError
from t2ibench.results import read_results, write_results

MEASURES = (("image_similarity", "dinov2-l", "train", 0.6), ("text_alignment", "clip-l14", "alter",
            0.3), ("style_loss", "vgg19", "style", 0.8))  # fmt: skip


def small_table(checkpoints=("base", "run-e1", "run-e2"), leaves=3, seed=0) -> pd.DataFrame:
    """The base model and two epochs of one run, a few leaves, one measurement per criterion."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, ck in enumerate(checkpoints):
        for j in range(leaves):
            for metric, enc, pt, v in MEASURES:
                rows.append(dict(
                    checkpoint=ck, config="base" if ck == "base" else "run", seed="23", epoch=i,
                    category="things", **{"class": f"c{j}"}, leaf=f"things/c{j}", prompt_type=pt,
                    metric=metric, encoder=enc, resize="letterbox",
                    value=v + 0.05 * i + 0.02 * rng.standard_normal(),
                ))  # fmt: skip
    return pd.DataFrame(rows)


def test_issue22_item06_an_edited_csv_beside_the_parquet_is_refused(tmp_path):
    """`analyze FOLDER` read results.parquet and silently ignored an edited results.csv beside it.
    Decision (README, Analysis): when they differ, refuse in one line naming the difference and the
    newer file; the user names the file they mean."""
    write_results(small_table(), tmp_path / "res")
    analyze(tmp_path / "res", tmp_path / "ok", plots=False)  # the two as written agree
    csv = tmp_path / "res" / "results.csv"
    edited = pd.read_csv(csv, dtype=str)
    edited.loc[edited["metric"] == "text_alignment", "value"] = "0.99"
    edited.to_csv(csv, index=False)
    with pytest.raises(ResultsError) as exc:
        analyze(tmp_path / "res", tmp_path / "rep", plots=False)
    msg = str(exc.value)
    assert "results.csv differs from results.parquet" in msg and "'value'" in msg
    assert "results.csv is newer" in msg and "\n" not in msg
    # Named by its file, the edited CSV is what is analysed.
    res = analyze(csv, tmp_path / "rep", plots=False)
    assert (res.raw.loc[res.raw["metric"] == "text_alignment", "mean"] == 0.99).all()
    # A column dropped, through the CLI: one line, exit 2.
    edited.drop(columns="resize").to_csv(csv, index=False)
    got = CliRunner().invoke(app, ["analyze", str(tmp_path / "res"), "--out", str(tmp_path / "x")])
    assert isinstance(got.exception, ResultsError) and "resize" in str(got.exception)


def test_issue22_item06_readme_states_the_rule():
    root = Path(__file__).parents[2]
    pages = [root / "README.md", *sorted((root / "docs").glob("**/*.md"))]
    text = " ".join(" ".join(p.read_text(encoding="utf-8").split()) for p in pages)
    assert "when `results.csv` differs from `results.parquet`" in text
    assert "`analyze` refuses in one line naming the difference and the newer file" in text


PLUGINS = Path(__file__).parents[1] / "plugins"


def test_issue18_item4_results_record_what_their_metrics_mean(tmp_path):
    from t2ibench.results import read_description

    write_results(small_table(), tmp_path)
    for source in (tmp_path / "results.parquet", tmp_path / "results.csv"):
        d = read_description(source)
        sim = d["metrics"]["image_similarity"]
        assert sim["criterion"] == "fidelity" and sim["higher_is_better"] is True
        assert sim["range"] == [-1.0, 1.0] and sim["encoder"] == "dinov2-l"
        assert d["metrics"]["style_loss"]["higher_is_better"] is False
        assert d["prompt_types"] == ["alter", "style", "train"]
        assert d["encoders"] == ["clip-l14", "dinov2-l", "vgg19"]
    assert json.loads((tmp_path / "results.csv.meta.json").read_text()) == d


def test_issue18_item4_analyze_a_table_whose_plugin_is_not_installed(tmp_path):
    """A table written where the example plug-in is installed (its `brightness` metric, its
    `closeup` prompt type, its `mean-colour` encoder), analysed in this process, where it is not:
    a report, with a warning that names what is missing and what the file records, and the metric
    read as recorded (its criterion, direction and report uses)."""
    sys.path.insert(0, str(PLUGINS))
    from test_example_plugin import plugin_env, run_python

    code = f"""
import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_analyze_inputs import small_table
from t2ibench.metrics import get_metric
from t2ibench.results import write_results
df = small_table()
extra = df[df.metric == "image_similarity"].assign(metric="brightness", encoder="",
                                                   prompt_type="closeup", resize="")
mean = df[df.metric == "image_similarity"].assign(encoder="mean-colour")
write_results(__import__("pandas").concat([df, extra, mean]), {str(tmp_path / "res")!r})
print(get_metric("brightness").criterion)
"""
    assert run_python(code, plugin_env(tmp_path)).split()[-1] == "exposure"
    res = analyze(tmp_path / "res", tmp_path / "rep", plots=False)
    assert "brightness" in set(res.raw["metric"]) and "mean-colour" in set(res.raw["encoder"])
    html = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert "Warning: metric(s) brightness are not installed here" in html
    assert "brightness (exposure, higher is better, range [0, 1])" in html
    # ...and reads it as recorded: its headline measurement under the criterion it declared.
    assert "the report reads them as recorded" in html
    raw = html[html.index("<h2>Raw values") :]
    head = raw[: raw.index("every measurement")]
    assert "brightness ↑ &lt;closeup&gt;" in head and "exposure" in head
    from t2ibench.analysis import criteria_targets

    assert "exposure" not in criteria_targets(["brightness"])  # only for that analysis
    assert "prompt type(s) closeup are not installed" in html
    assert "encoder(s) mean-colour are not installed" in html
    # Without its description (a table written before tables described themselves) it is refused.
    plain = read_results(tmp_path / "res" / "results.csv")
    plain.to_csv(tmp_path / "bare.csv", index=False)
    with pytest.raises(ResultsError, match="unregistered"):
        analyze(tmp_path / "bare.csv", tmp_path / "rep2", plots=False)


def test_issue22_item10_an_infinite_value_is_refused_with_its_row(tmp_path):
    df = small_table()
    df.loc[7, "value"] = np.inf
    write_results(df, tmp_path / "res")
    got = CliRunner().invoke(app, ["analyze", str(tmp_path / "res"), "--out", str(tmp_path / "r")])
    assert isinstance(got.exception, ResultsError)
    msg = str(got.exception)
    assert "value inf in row 7" in msg and f"metric={df.loc[7, 'metric']!r}" in msg
    assert f"checkpoint={df.loc[7, 'checkpoint']!r}" in msg and "\n" not in msg
    assert not (tmp_path / "r" / "report.html").exists()


def test_issue22_item10_a_criterion_with_only_missing_values_is_named_as_left_out(tmp_path):
    df = small_table()
    df.loc[df["metric"] == "text_alignment", "value"] = np.nan
    res = analyze(df, tmp_path, plots=False)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert ("left out: controllability: every value of text_alignment &lt;alter&gt; is "
            "missing (NaN)") in html  # fmt: skip
    rule = html[html.index("Rule: ") :].split("</p>")[0]
    assert "fidelity / preservation" in rule and "controllability" not in rule
    assert set(pd.read_csv(tmp_path / "recommendation.csv").columns) >= {"fidelity",
                                                                          "preservation"}  # fmt: skip
    assert res.raw["metric"].isin(["image_similarity", "style_loss"]).all()


def test_issue22_item11_the_answer_comes_first_in_the_report_and_last_on_the_console(tmp_path):
    write_results(small_table(), tmp_path / "res")
    got = CliRunner().invoke(app, ["analyze", str(tmp_path / "res"), "--out", str(tmp_path / "r")])
    assert got.exit_code == 0, got.output
    lines = got.output.strip().splitlines()
    assert lines[-2].startswith("recommended checkpoint: run-e2 (epoch 2; fidelity "), lines
    assert lines[-1] == "  Pareto set (none beats another on every criterion): run-e1, run-e2"
    html = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    first = html.index("<h2>")
    assert html.index("<h2>Checkpoints and recommendation</h2>") == first
    assert html.index("Recommended checkpoint: run-e2 (epoch 2;") < html.index("<h2>Raw values")


def test_issue22_item12_a_semicolon_csv_is_named_as_such(tmp_path):
    small_table().to_csv(tmp_path / "r.csv", sep=";", index=False)
    with pytest.raises(ResultsError) as exc:
        analyze(tmp_path / "r.csv", tmp_path / "rep")
    assert "looks ';'-separated" in str(exc.value) and "\n" not in str(exc.value)


def test_issue22_item12_share_of_ceiling_is_clipped_at_zero_and_says_so():
    from t2ibench.analysis.raw import raw_table
    from t2ibench.analysis.raw_sections import wide_raw

    df = small_table()
    df.loc[(df["metric"] == "text_alignment") & (df["checkpoint"] == "run-e2"), "value"] = -0.2
    ceilings = df[df["checkpoint"] == "base"][["leaf", "metric", "encoder", "resize"]].assign(
        value=0.5
    )
    raw = raw_table(df, ceilings, {"text_alignment": True, "image_similarity": True,
                                   "style_loss": False})  # fmt: skip
    share = raw.set_index(["checkpoint", "metric"])["share_of_ceiling"]
    assert share["run-e2", "text_alignment"] == 0 and share["run-e1", "text_alignment"] > 0
    wide = wide_raw(raw, {"text_alignment": True, "image_similarity": True, "style_loss": False})
    cells = wide["share of ceiling (last)"]
    assert cells[cells.index.str.startswith("text_alignment")].tolist() == ["0 % (mean < 0)"]
    assert not cells.str.startswith("-").any()


def test_issue22_item12_overview_says_when_no_seed_or_epoch_is_recorded(tmp_path):
    df = small_table().assign(seed="", epoch=pd.NA)
    df = df[df["checkpoint"] != "run-e2"]
    analyze(df, tmp_path, plots=False)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "seeds none recorded, epochs none recorded" in html and "seeds []" not in html
