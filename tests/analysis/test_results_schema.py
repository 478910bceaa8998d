import numpy as np
import pandas as pd
import pytest

from t2ibench.errors import ResultsError
from t2ibench.results import (
    KEY_COLUMNS,
    REQUIRED_COLUMNS,
    append_results,
    merge_results,
    read_results,
    validate_results,
    write_results,
)


def table(**over) -> pd.DataFrame:
    rows = []
    for ck, ep in (("ck-a-10", 10), ("ck-b-10", 10), ("ck-a-50", 50)):
        rows.append(
            dict(checkpoint=ck, config="exp-1", seed=ck.split("-")[1], epoch=ep, category="anime",
                 **{"class": "abukuma"}, leaf="anime/abukuma", prompt_type="train",
                 metric="image_similarity", encoder="dinov2-l", resize="letterbox", value=0.5,
                 algorithm="lora", lr=5e-4)
        )  # fmt: skip
    df = pd.DataFrame(rows)
    for k, v in over.items():
        df[k] = v
    return df


def test_roundtrip_parquet_and_csv(tmp_path):
    df = table(caption="<script>alert(1)</script>")
    df.loc[1, "value"] = np.nan
    write_results(df, tmp_path)
    assert (tmp_path / "results.parquet").is_file() and (tmp_path / "results.csv").is_file()
    a = read_results(tmp_path)
    b = read_results(tmp_path / "results.csv")
    assert list(a.columns[: len(REQUIRED_COLUMNS)]) == list(REQUIRED_COLUMNS)
    assert "caption" in a.columns and a["caption"].iloc[0] == "<script>alert(1)</script>"
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert np.isnan(a["value"].iloc[1]) and a["epoch"].tolist() == [10, 10, 50]
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


@pytest.mark.parametrize(
    "column,value,needle",
    [
        ("prompt_type", "in", "prompt_type"),
        ("resize", "padding", "resize"),
        ("metric", "Image Similarity", "metric"),
        ("epoch", -1, "epoch"),
        ("value", "abc", "value"),
        ("leaf", "", "leaf"),
    ],
)
def test_validation_names_the_column(column, value, needle, tmp_path):
    df = table()
    df[column] = df[column].astype(object)
    df.loc[0, column] = value
    with pytest.raises(ResultsError, match=needle):
        write_results(df, tmp_path)
    assert not (tmp_path / "results.parquet").exists()


def test_missing_column_and_duplicate_key():
    with pytest.raises(ResultsError, match="missing column"):
        validate_results(table().drop(columns=["resize"]))
    df = pd.concat([table(), table().iloc[:1]])
    with pytest.raises(ResultsError, match="repeat a key"):
        validate_results(df)


def test_merge_is_idempotent_and_new_wins(tmp_path):
    old = table()
    new = table().iloc[:2].assign(value=0.9)
    extra = table().assign(metric="vendi", value=7.0)
    merged = merge_results(old, new)
    assert merged.set_index("checkpoint")["value"].to_dict() == {
        "ck-a-10": 0.9, "ck-b-10": 0.9, "ck-a-50": 0.5}  # fmt: skip
    again = merge_results(merged, new)
    pd.testing.assert_frame_equal(merged, again)
    append_results(old, tmp_path)
    append_results(extra, tmp_path)
    out = append_results(extra, tmp_path)
    assert len(out) == 6 and not out.duplicated(list(KEY_COLUMNS)).any()
    assert len(read_results(tmp_path)) == 6


def test_read_errors(tmp_path):
    with pytest.raises(ResultsError, match="no results.parquet"):
        read_results(tmp_path)
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ResultsError, match="x.csv: missing column"):
        read_results(tmp_path / "x.csv")


def test_names_are_checked_against_the_registries(tmp_path):
    # Unregistered names are refused with the registered ones listed, whatever the column.
    for column, value in (("prompt_type", "sketch"), ("metric", "sharpness"), ("encoder", "x-l")):
        df = table()
        df.loc[0, column] = value
        with pytest.raises(
            ResultsError, match=rf"column '{column}' has unregistered value.*{value}"
        ):
            validate_results(df)
    # A prompt type registered by a plug-in is valid as soon as it is registered.
    from t2ibench.prompts import PROMPT_TYPES, register_prompt_type

    register_prompt_type("sketch", "test only")(lambda leaf, ds, n: [])
    try:
        assert validate_results(table(prompt_type="sketch"))["prompt_type"].eq("sketch").all()
    finally:
        PROMPT_TYPES._items.pop("sketch")
    # A metric outside the registry is known when the caller or the table gives its direction.
    assert len(validate_results(table(metric="sharpness"), known={"metric": ["sharpness"]})) == 3
    assert len(validate_results(table(metric="sharpness", higher_is_better=True))) == 3


def test_metric_profile_is_part_of_the_key():
    """The same metric under two metric profiles is two rows; merging one profile's rows again
    replaces only that profile's rows."""
    a = table(metric_profile="lycoris2024")
    b = table(metric_profile="dreambooth", value=0.7)
    merged = merge_results(a, b)
    assert len(merged) == 6
    assert merged.groupby("metric_profile")["value"].first().to_dict() == {
        "dreambooth": 0.7, "lycoris2024": 0.5}  # fmt: skip
    again = merge_results(merged, b.assign(value=0.8))
    assert len(again) == 6
    assert set(again.loc[again.metric_profile == "dreambooth", "value"]) == {0.8}
    assert set(again.loc[again.metric_profile == "lycoris2024", "value"]) == {0.5}
    with pytest.raises(ResultsError, match="repeat a key"):
        validate_results(pd.concat([a, a.iloc[:1]]))
