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
