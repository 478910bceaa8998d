"""Judges in the evaluate stage: a results row per group on the judge's own encoder, the mean of
its scores of each image with its cleaned prompt, cached by image and prompt."""

import pytest
from PIL import Image

from t2ibench.data import load_dataset, make_demo_dataset
from t2ibench.encoders import FeatureCache, create_encoder
from t2ibench.pipeline.evaluate import evaluate_images
from t2ibench.pipeline.manifest import write_manifest
from t2ibench.prompts import clean_prompt
from tests.pipeline.test_evaluate import copy_as_generated


def test_judges_land_in_results_and_rerun_from_cache(tmp_path):
    ds = load_dataset(make_demo_dataset(tmp_path / "demo"))
    leaf = ds.leaves["characters/kiro/vest"]
    prompts = ["kiro robot, vstx outfit on the moon", "kiro robot, vstx outfit in a box"] * 2
    recs = copy_as_generated(ds, tmp_path / "gen", "ck", leaf.key, "alter", prompts)
    write_manifest(tmp_path / "gen" / "manifest.jsonl", recs)
    judges = [
        create_encoder(n, tiny=True, cache_dir=tmp_path / "w") for n in ("pickscore", "hpsv2")
    ]
    dino = create_encoder("dinov2-l", tiny=True, cache_dir=tmp_path / "w")
    cache = FeatureCache(tmp_path / "cache")
    df = evaluate_images(tmp_path / "gen", ds, [dino, *judges], metrics=["pickscore", "hpsv2",
                         "image_similarity"], cache=cache, progress=False)  # fmt: skip
    rows = df.set_index(["metric", "encoder"])
    assert ("pickscore", "dinov2-l") not in rows.index and ("hpsv2", "pickscore") not in rows.index
    images = [Image.open(tmp_path / "gen" / r.file) for r in recs]
    texts = [clean_prompt(r.prompt, leaf) for r in recs]
    assert "vstx" not in texts[0] and "moon" in texts[0]  # the identifier is removed
    for judge in judges:
        expected = float(judge.score(images, texts).mean())
        assert rows.loc[(judge.name, judge.name), "value"] == pytest.approx(expected, abs=1e-5)
        assert rows.loc[(judge.name, judge.name), "encoder_weights"] == judge.weights_id
    passes = [j.forward_passes for j in judges]
    again = evaluate_images(tmp_path / "gen", ds, [dino, *judges], metrics=["pickscore", "hpsv2"],
                            cache=cache, progress=False)  # fmt: skip
    assert [j.forward_passes for j in judges] == passes  # every score came from the cache
    assert sorted(again["value"]) == sorted(df[df.metric != "image_similarity"]["value"])


def test_cache_keys_by_image_and_prompt(tmp_path):
    from t2ibench.metrics.judges._common import judge_pair_scores

    judge = create_encoder("hpsv2", tiny=True, cache_dir=tmp_path / "w")
    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "a.png")
    cache = FeatureCache(tmp_path / "cache")
    paths = [tmp_path / "a.png"] * 2
    first = judge_pair_scores(judge, paths, ["a red square", "a blue circle"], cache)
    assert first.shape == (2, 1) and first[0] != first[1]  # same image, two prompts, two scores
    again = judge_pair_scores(judge, paths, ["a blue circle", "a red square"], cache)
    assert again[0] == first[1] and again[1] == first[0]


def test_api_evaluate_gives_the_cli_values_for_score_judges(tmp_path):
    """t2ibench.evaluate(metric_profile="judges") on a DreamBooth-layout folder gives the rows of
    `t2ibench evaluate --layout dreambooth --protocol judges`, value for value: the judges read
    the same decoded images and the same prompts, identifier removed."""
    import numpy as np
    import pandas as pd
    from typer.testing import CliRunner

    import t2ibench
    from t2ibench.cli import app

    data, images = tmp_path / "dreambooth", tmp_path / "images"
    (data / "dog").mkdir(parents=True)
    (data / "prompts_and_classes.txt").write_text(
        "subject_name,class\ndog,dog\n\nObject Prompts\n"
        "'a {0} {1} in the jungle'.format(unique_token, class_token),\n\n"
        "Live Subject Prompts\n"
        "'a {0} {1} in the jungle'.format(unique_token, class_token),\n"
        "'a {0} {1} in the snow'.format(unique_token, class_token),\n"
    )
    rng = np.random.default_rng(3)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(
            data / "dog" / f"{i:02d}.jpg"
        )
    (images / "dog").mkdir(parents=True)
    for p, k in ((0, 0), (1, 0), (1, 1)):
        Image.fromarray(rng.integers(0, 255, (48, 32, 3), dtype=np.uint8)).save(
            images / "dog" / f"{p}_{k}.png"
        )
    judges = ("pickscore", "hpsv2", "imagereward")
    tiny = ",".join(f"{n}@tiny" for n in ("dinov2-l", "clip-l14", *judges))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "evaluate", str(images), "--layout", "dreambooth", "--dataset", str(data), "--out",
        str(out), "--protocol", "judges", "--encoders", tiny,
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    cli_rows = pd.read_parquet(out / "results.parquet")
    prompts = ["a sks dog in the jungle", "a sks dog in the snow", "a sks dog in the snow"]
    api_rows = t2ibench.evaluate(sorted((images / "dog").iterdir()), data / "dog", prompts,
                                 metric_profile="judges", identifier="sks", tiny=True)  # fmt: skip
    key = ["metric", "encoder"]
    a = cli_rows.set_index(key)[["value", "n_images"]].sort_index()
    b = api_rows.set_index(key)[["value", "n_images"]].sort_index()
    assert set(judges) <= set(b.index.get_level_values(0))
    assert list(a.index) == list(b.index)
    assert a["value"].tolist() == b["value"].tolist()  # value for value, not approximately
    assert a["n_images"].tolist() == b["n_images"].tolist() == [3] * len(a)
    assert set(api_rows["size"]) == {224}  # each judge's own input size


def test_judges_vlm_profile_rows_are_the_judges_mean_scores(tmp_path):
    """The judges-vlm profile end to end on tiny random models: one row per measure, VQAScore
    and HPSv3 each the mean of its judge's scores of the images with their cleaned prompts."""
    import numpy as np

    import t2ibench

    rng = np.random.default_rng(5)
    images = [Image.fromarray(rng.integers(0, 255, (40, 64, 3), dtype=np.uint8)) for _ in range(2)]
    refs = [Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)) for _ in range(2)]
    prompts = ["a sks dog on the beach", "a sks dog in a box"]
    rows = t2ibench.evaluate(images, refs, prompts, metric_profile="judges-vlm", identifier="sks",
                             tiny=True).set_index("measure")  # fmt: skip
    assert list(rows.index) == ["DINOv2 similarity", "CLIP-T", "VQAScore", "HPSv3"]
    assert rows.loc["HPSv3", "size"] == "" and rows.loc["VQAScore", "size"] == 336
    for measure, name in (("VQAScore", "vqascore"), ("HPSv3", "hpsv3")):
        judge = create_encoder(name, tiny=True)  # the same tiny folder, from the session cache
        expected = float(judge.score(images, ["a dog on the beach", "a dog in a box"]).mean())
        assert rows.loc[measure, "value"] == pytest.approx(expected, abs=1e-6)
