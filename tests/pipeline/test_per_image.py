"""Per-image values: each image scored as a one-image group of the evaluate stage."""

import pytest
import torch

from t2ibench.data import load_dataset, make_demo_dataset
from t2ibench.encoders import create_encoder, encode_images_cached
from t2ibench.metrics import image_similarity
from t2ibench.pipeline.manifest import write_manifest
from t2ibench.pipeline.per_image import per_image_scores
from tests.pipeline.test_evaluate import copy_as_generated


def test_one_row_per_image_equal_to_the_metric_on_that_image(tmp_path):
    ds = load_dataset(make_demo_dataset(tmp_path / "demo"))
    enc = [create_encoder("dinov2-l", tiny=True), create_encoder("clip-l14", tiny=True)]
    leaf = ds.leaves["characters/kiro/vest"]
    prompts = ["kiro robot, vstx outfit on the moon", "kiro robot, vstx outfit in a box"] * 2
    recs = copy_as_generated(ds, tmp_path / "gen", "ckpt-a", leaf.key, "alter", prompts)
    write_manifest(tmp_path / "gen" / "manifest.jsonl", recs)
    df = per_image_scores(tmp_path / "gen", ds, enc, metrics=["image_similarity", "vendi",
                                                             "text_alignment"])  # fmt: skip
    assert "vendi" not in set(df["metric"])  # a set metric has no per-image value
    sim = df[(df.metric == "image_similarity") & (df.encoder == "dinov2-l")]
    assert sorted(sim["image"]) == sorted(r.file for r in recs)
    assert set(sim["system"]) == {"ckpt-a"} and set(sim["checkpoint"]) == {"ckpt-a"}
    ref = encode_images_cached(enc[0], [im.path for im in leaf.images], None)
    for r in recs:
        feat = encode_images_cached(enc[0], [tmp_path / "gen" / r.file], None)
        got = sim[sim.image == r.file]
        assert got["value"].item() == pytest.approx(image_similarity(feat, ref))
        assert got["prompt"].item() == r.prompt
    text = df[df.metric == "text_alignment"]
    assert len(text) == 4 and torch.isfinite(torch.tensor(text["value"].to_numpy())).all()
