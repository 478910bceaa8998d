"""The evaluation engine (t2ibench.evaluation): a metric's error is an error naming it, never a NaN;
a value the metric declares undefined is missing with a warning; bad metric options are refused
before any work; a measure's pairing is a provider choice."""

import logging
import math
import shutil

import pytest
import torch

from t2ibench.data import load_dataset, make_demo_dataset
from t2ibench.encoders import create_encoder, encode_images_cached
from t2ibench.errors import ConfigError, T2IBenchError
from t2ibench.evaluation import MetricError, pairing_sources, plan_metrics
from t2ibench.metric_profiles import get_metric_profile, parse_metric_profile
from t2ibench.metric_profiles.compile import check_profile, profile_plans
from t2ibench.metrics import METRICS, MetricSpec, get_metric, image_similarity, register_metric
from t2ibench.pipeline.evaluate import evaluate_images
from t2ibench.pipeline.manifest import ManifestRecord, write_manifest


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return load_dataset(make_demo_dataset(tmp_path_factory.mktemp("engine") / "demo"))


@pytest.fixture(scope="module")
def dino():
    return create_encoder("dinov2-l", tiny=True)


def folder(ds, root, prompt_type="train", n=3, leaf_key="characters/kiro/vest", checkpoint="ck"):
    leaf = ds.leaves[leaf_key]
    recs = []
    for k in range(n):
        rel = f"{leaf.key}/{prompt_type}/{k:04d}-s{k}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(leaf.images[k % len(leaf.images)].path, root / rel)
        recs.append(ManifestRecord(checkpoint, leaf.key, prompt_type, leaf.images[k].caption, k,
                                   rel, k))  # fmt: skip
    write_manifest(root / "manifest.jsonl", recs)
    return recs


def test_a_metric_error_names_the_metric_never_a_nan(ds, dino, tmp_path):
    """Issue 18: ``_value`` turned any ValueError into NaN with a warning (a shape bug read as a
    missing value)."""

    def broken(gen, ref):
        raise ValueError("feature rows 3 and 4 do not line up")

    folder(ds, tmp_path / "gen")
    register_metric(MetricSpec("broken", "fidelity", None, (), True, (0, 1), broken, list,
                               ("gen", "ref")))  # fmt: skip
    try:
        with pytest.raises(MetricError, match=r"broken on dinov2-l for characters/kiro/vest "
                           r"<train> \(ck\): feature rows 3 and 4 do not line up"):  # fmt: skip
            evaluate_images(tmp_path / "gen", ds, [dino], metrics=["broken"], progress=False)
    finally:
        METRICS._items.pop("broken")


def test_undefined_values_are_declared_by_the_metric(ds, dino, tmp_path, caplog):
    """Fréchet distance of one image is undefined (a covariance of one sample): the metric says so
    (UndefinedValue), the row is NaN and the log names the metric."""
    folder(ds, tmp_path / "gen", n=1)
    with caplog.at_level(logging.WARNING):
        df = evaluate_images(tmp_path / "gen", ds, [dino], metrics=["frechet_distance",
                             "image_similarity"], progress=False)  # fmt: skip
    by = df.set_index("metric")["value"]
    assert math.isnan(by["frechet_distance"]) and not math.isnan(by["image_similarity"])
    assert "frechet_distance on dinov2-l" in caplog.text and "recorded as missing" in caplog.text


def test_pairing_is_a_provider_choice():
    sim, drift, text = (get_metric(n) for n in ("image_similarity", "drift", "text_alignment"))
    assert pairing_sources(sim, "all-pairs") == ({}, False)  # its own ref input
    assert pairing_sources(sim, "paired") == ({"ref": "paired_ref"}, True)
    assert pairing_sources(sim, "base-paired") == ({"ref": "base"}, True)
    assert pairing_sources(drift, "base-paired") == ({}, False)  # drift pairs its own base input
    assert pairing_sources(text, "prompt", "keep") == (
        {"text_feats": "text_feats_as_written"},
        False,
    )
    for metric, pairing in ((text, "all-pairs"), (drift, "all-pairs"), (sim, "prompt")):
        with pytest.raises(ConfigError, match=f"metric {metric.name} takes .* cannot be paired"):
            pairing_sources(metric, pairing)


def test_profiles_refuse_what_cannot_be_honoured():
    bad = parse_metric_profile({"name": "bad", "measure": [
        {"label": "X", "metric": "image_similarity", "encoder": "dinov2-l", "clamp": "pair"}]},
        "bad.toml")  # fmt: skip
    with pytest.raises(ConfigError, match="measure X clamps \\(pair\\), which metric "
                       "image_similarity has no convention for"):  # fmt: skip
        check_profile(bad)
    with pytest.raises(ConfigError, match="pairs each image with its own reference"):
        check_profile(get_metric_profile("dreambench-pp"), single_reference=False)
    check_profile(get_metric_profile("dreambench-pp"), single_reference=True)
    with pytest.raises(ConfigError, match="'nope'"):
        plan_metrics(["image_similarity"], {"nope": {"x": 1}})


def test_item33_base_paired_measure_is_computed_image_by_image(ds, dino, tmp_path):
    """Issue 22 item 33 (engine side): image i against the base image of the same prompt and
    seed, averaged — not all pairs with the references."""
    recs = folder(ds, tmp_path / "gen", n=3)
    base = folder(ds, tmp_path / "base", n=3, checkpoint="base")
    # the base images differ from the generated ones: shift which dataset image each copies
    leaf = ds.leaves[recs[0].leaf]
    for k, r in enumerate(base):
        shutil.copy(leaf.images[(k + 1) % len(leaf.images)].path, tmp_path / "base" / r.file)
    write_manifest(tmp_path / "base" / "manifest.jsonl", base)
    profile = parse_metric_profile({"name": "bp", "measure": [
        {"label": "B", "metric": "image_similarity", "encoder": "dinov2-l",
         "pairing": "base-paired", "scale": 100.0}]}, "bp.toml")  # fmt: skip
    enc = dino
    df = evaluate_images(tmp_path / "gen", ds, [enc], base_images_dir=tmp_path / "base",
                         plans=profile_plans(profile, [enc]), progress=False)  # fmt: skip
    g = encode_images_cached(enc, [tmp_path / "gen" / r.file for r in recs], None)
    b = encode_images_cached(enc, [tmp_path / "base" / r.file for r in base], None)
    want = 100.0 * sum(image_similarity(g[i : i + 1], b[i : i + 1]) for i in range(3)) / 3
    assert list(df["measure"]) == ["B"] and df["value"].item() == pytest.approx(want, abs=1e-9)
    refs = encode_images_cached(enc, [im.path for im in leaf.images], None)
    assert abs(df["value"].item() - 100.0 * image_similarity(g, refs)) > 1e-3
    # without base images the measure is an error naming it, not a silently missing row
    with pytest.raises(T2IBenchError, match="measure B .*no base-model images"):
        evaluate_images(tmp_path / "gen", ds, [enc], plans=profile_plans(profile, [enc]),
                        progress=False)  # fmt: skip
    assert torch.is_tensor(g)
