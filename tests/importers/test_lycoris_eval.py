import math
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from t2ibench.cli import app
from t2ibench.errors import ResultsError
from t2ibench.importers import import_lycoris_eval, parse_checkpoint, parse_column
from t2ibench.results import read_results

REF = Path(__file__).resolve().parents[2] / "reference_results" / "lycoris-iclr2024" / "source"
MAPPING = REF / "config_mapping.csv"


CHECKPOINTS = (
    "ddim-v1-5-pruned-emaonly-exp-1001-sd15-lora8a4-a-000010",
    "ddim-v1-5-pruned-emaonly-exp-1001-sd15-lora8a4-a",
    "ddim-v1-5-pruned-emaonly-exp-1021-sd15-lokrf8-b-000030",
)


@pytest.fixture(scope="module")
def published_slice(tmp_path_factory) -> Path:
    """Every row (leaves and folder means) of three checkpoints of the published mean CSV."""
    raw = pd.read_csv(REF / "ddim_sd15_metrics_mean.csv.gz", dtype={"Folder": str})
    keep = raw["Folder"].str.split("/").str[0].isin(CHECKPOINTS)
    path = tmp_path_factory.mktemp("slice") / "metrics.csv"
    raw[keep].to_csv(path, index=False)
    assert keep.sum() == 3 * 12
    return path


def test_column_names():
    c = parse_column("Image Similarity (dinov2-l-fb-padding) (in)")
    assert (c.metric, c.prompt_type, c.encoder, c.resize) == (
        "image_similarity", "train", "dinov2-l", "letterbox")  # fmt: skip
    c = parse_column("Squared Centroid Distance (clip-L-14-crop) (out)")
    assert (c.metric, c.prompt_type, c.encoder, c.resize) == (
        "centroid_distance", "alter", "clip-l14", "center-crop")  # fmt: skip
    assert parse_column("Image Similarity (convnextv2-l-resize) (trigger)").resize == "scale"
    assert parse_column("Image Similarity (dinov2-l-fb-resize) (trigger)").resize == "stretch"
    assert parse_column("Text Similarity (out)").metric == "text_alignment"
    assert parse_column("Vendi (clip-L-14) (in)").encoder == "clip-l14"
    c = parse_column("Style Loss (base model)")
    assert (c.metric, c.prompt_type, c.encoder) == ("style_loss", "style", "vgg19")
    assert parse_column("Mystery (in)") is None


def test_checkpoint_names():
    p = parse_checkpoint("ddim-v1-5-pruned-emaonly-exp-1001-sd15-lora8a4-a-000010")
    assert (p.config, p.seed, p.epoch) == ("exp-1001-sd15-lora8a4", "a", 10)
    p = parse_checkpoint("ddim-v1-5-pruned-emaonly-exp-1004-sd15-lora8a4-full-c")
    assert (p.config, p.seed, p.epoch) == ("exp-1004-sd15-lora8a4-full", "c", 50)
    assert (
        parse_checkpoint("ddim-v1-5-pruned-emaonly-exp-1004-sd15-x-b", final_epoch=20).epoch == 20
    )
    assert parse_checkpoint("ddim-v1-5-pruned-emaonly") is None


def test_published_slice_value_by_value(published_slice):
    raw = pd.read_csv(published_slice)
    out = import_lycoris_eval(published_slice, MAPPING)
    # folder means are gone: 3 checkpoints × 9 leaves × 63 columns
    assert out["checkpoint"].nunique() == 3
    assert sorted(out["leaf"].unique()) == sorted(
        ["anime/abukuma", "anime/ikamusume", "people/Admiral_Piett", "people/Bodhi_Rook",
         "people/Rose_Tico", "people/Saw_Gerrera", "scene", "stuffed_toy", "style"])  # fmt: skip
    assert len(out) == 3 * 9 * 63
    by_folder = raw.set_index("Folder")
    checked = 0
    for col in raw.columns[1:]:
        spec = parse_column(col)
        sel = out[(out.metric == spec.metric) & (out.prompt_type == spec.prompt_type)
                  & (out.encoder == spec.encoder) & (out.resize == spec.resize)]  # fmt: skip
        assert len(sel) == 27, col
        for r in sel.itertuples():
            expected = by_folder.loc[f"{r.checkpoint}/{r.leaf}", col]
            assert r.value == expected or (math.isnan(r.value) and math.isnan(expected))
            checked += 1
    assert checked == 3 * 9 * 63
    row = out[(out.leaf == "scene")].iloc[0]
    assert (row["category"], row["class"]) == ("scene", "scene")
    first = out[out.checkpoint.str.endswith("lora8a4-a-000010")].iloc[0]
    assert (first["config"], first["seed"], first["epoch"]) == ("exp-1001-sd15-lora8a4", "a", 10)
    assert (first["algorithm"], first["preset"], first["lr"], first["dim"], first["alpha"]) == (
        "lora", "attn-mlp", 0.0005, 8, 4)  # fmt: skip
    assert math.isnan(first["factor"]) and first["caption"] == ".txt"
    final = out[out.checkpoint == "ddim-v1-5-pruned-emaonly-exp-1001-sd15-lora8a4-a"]
    assert set(final["epoch"]) == {50}
    kept = import_lycoris_eval(published_slice, keep_means=True)
    assert {"anime", "all"} <= set(kept["leaf"]) and "algorithm" not in kept.columns


def test_native_alias_and_style_losses():
    out = import_lycoris_eval(REF / "style_classes_style_losses.csv", MAPPING)
    assert set(out["metric"]) == {"style_loss"}
    assert "native" in set(out["algorithm"]) and "full" not in set(out["algorithm"])
    assert set(out["prompt_type"]) == {"train", "alter", "trigger"}


def test_errors(published_slice, tmp_path):
    raw = pd.read_csv(published_slice)
    bad = tmp_path / "bad.csv"
    raw.assign(**{"Mystery (in)": 1.0}).to_csv(bad, index=False)
    with pytest.raises(ResultsError, match=r"unknown metric column.*Mystery"):
        import_lycoris_eval(bad)
    raw2 = raw.copy()
    raw2.loc[0, "Folder"] = "not-a-checkpoint/anime"
    raw2.to_csv(bad, index=False)
    with pytest.raises(ResultsError, match="not-a-checkpoint"):
        import_lycoris_eval(bad)
    raw3 = raw.copy()
    raw3.loc[0, "Folder"] = raw3.loc[1, "Folder"] + "/a/b/c/d"
    raw3.to_csv(bad, index=False)
    with pytest.raises(ResultsError, match="unparseable Folder"):
        import_lycoris_eval(bad)
    small = tmp_path / "map.csv"
    pd.read_csv(MAPPING).iloc[:2].to_csv(small, index=False)
    with pytest.raises(ResultsError, match="exp-1001-sd15-lora8a4"):
        import_lycoris_eval(published_slice, small)


def test_cli_import(published_slice, tmp_path):
    args = ["import-lycoris-eval", str(published_slice), "--configs", str(MAPPING), "--out",
            str(tmp_path)]  # fmt: skip
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, args)  # importing twice changes nothing
    assert r.exit_code == 0, r.output
    assert len(read_results(tmp_path)) == 3 * 9 * 63


def test_paper_config_set_leaves_out_what_the_authors_notebooks_exclude(published_slice, tmp_path):
    from t2ibench.importers import PAPER_EXCLUDED_CONFIGS

    assert PAPER_EXCLUDED_CONFIGS == ("exp-1007", "exp-1017", "exp-1027")
    out = import_lycoris_eval(REF / "style_classes_style_losses.csv", MAPPING,
                              exclude_configs=PAPER_EXCLUDED_CONFIGS)  # fmt: skip
    everything = import_lycoris_eval(REF / "style_classes_style_losses.csv", MAPPING)
    dropped = sorted(set(everything["config"]) - set(out["config"]))
    assert dropped == ["exp-1007-sd15-lora8a4-lr5e-5", "exp-1017-sd15-loha4a2-lr5e-3",
                       "exp-1027-sd15-lokrf8-lr5e-3"]  # fmt: skip
    # a whole config name works too; excluding every config is an error, not an empty table
    one = import_lycoris_eval(published_slice, exclude_configs=["exp-1021-sd15-lokrf8"])
    assert set(one["config"]) == {"exp-1001-sd15-lora8a4"}
    with pytest.raises(ResultsError, match="every config is excluded"):
        import_lycoris_eval(published_slice, exclude_configs=["exp-1001", "exp-1021"])
    r = CliRunner().invoke(app, ["import-lycoris-eval", str(REF / "style_classes_style_losses.csv"),
                                 "--configs", str(MAPPING), "--paper-configs", "--out",
                                 str(tmp_path)])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert not read_results(tmp_path)["config"].str.contains("-10[012]7-").any()
