"""``t2ibench run --metric-profile``: the evaluate stage computes the profile's measures (its
encoders, preprocessing, scale), every row — the base model's too — says which profile, and run.json
records it; the profile is part of the run's identity (another profile is another run)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from t2ibench.encoders import create_encoder
from t2ibench.errors import ConfigError
from t2ibench.pipeline.manifest import read_manifest
from t2ibench.pipeline.run import RunOptions, execute, resolve
from t2ibench.results import read_results


def options(tmp_path, **kw) -> RunOptions:
    quick = {
        "trainer": "lora",
        "evaluate.encoders": ["dinov2-l@tiny"],  # only tiny encoders: the profile's go tiny too
        "generate.images_per_leaf": 2,
        "generate.steps": 2,
        "generate.prompt_types": ["trigger"],
        "trainer.epochs": 1,
    }
    return RunOptions(layers=[("test", quick)], profile="tiny", out=str(tmp_path / "results"),
                      progress=False, **kw)  # fmt: skip


def test_run_with_a_metric_profile(tmp_path):
    resolved = resolve(options(tmp_path, metric_profile="dreambooth"))
    assert resolved.metrics == ["image_similarity", "text_alignment"]
    default = resolve(options(tmp_path))
    assert default.metric_profile == "lycoris2024" and default.run_dir != resolved.run_dir
    assert "metric_profile" not in default.identity()  # older runs keep their names

    run_dir = execute(resolved)
    assert json.loads((run_dir / "run.json").read_text())["metric_profile"] == "dreambooth"
    df = read_results(run_dir / "results")
    assert set(df["metric_profile"]) == {"dreambooth"}
    assert set(df["measure"]) == {"DINO", "CLIP-I", "CLIP-T"}
    assert {"base", "lora-e000001"} <= set(df["checkpoint"])
    assert set(df["encoder"]) == {"dino-vits16", "clip-b32"}

    # One row checked against its definition: DINO = mean cosine over all (generated, real)
    # pairs, DINO ViT-S/16 on DINO's evaluation crop (short side 256, centre 224).
    from t2ibench.metric_profiles.preprocess import set_resize_size

    ck = "lora-e000001"
    row = df[(df.checkpoint == ck) & (df.measure == "DINO")].iloc[0]
    folder = run_dir / "images" / ck
    recs = [r for r in read_manifest(folder / "manifest.jsonl") if r.leaf == row["leaf"]]
    enc = set_resize_size(create_encoder("dino-vits16", tiny=True, resize="center-crop"), 256)
    g = enc.encode_images([Image.open(r.path(folder)) for r in recs]).double().numpy()
    leaf = resolved.dataset.leaves[row["leaf"]]
    ref = enc.encode_images([Image.open(im.path) for im in leaf.images]).double().numpy()
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    assert row["value"] == pytest.approx(float((g @ ref.T).mean()), abs=1e-6)


def test_a_profile_the_stage_cannot_compute_stops_before_training(tmp_path):
    with pytest.raises(ConfigError, match="pairs each image with its own reference"):
        resolve(options(tmp_path, metric_profile="dreambench-pp"))
