"""The evaluate stage on images from "another tool": a hand-written folder and manifest."""

import shutil

import pandas as pd
import pytest
import torch

from t2ibench.data import load_dataset, make_demo_dataset
from t2ibench.encoders import FeatureCache, create_encoder, encode_images_cached
from t2ibench.errors import T2IBenchError
from t2ibench.metrics import centroid_distance, image_similarity, style_loss, vendi_score
from t2ibench.pipeline.evaluate import evaluate_images
from t2ibench.pipeline.manifest import ManifestRecord, write_manifest


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return load_dataset(make_demo_dataset(tmp_path_factory.mktemp("e") / "demo"))


@pytest.fixture(scope="module")
def encoders():
    return [create_encoder(n, tiny=True) for n in ("dinov2-l", "clip-l14", "vgg19")]


def copy_as_generated(ds, folder, checkpoint, leaf_key, prompt_type, prompts, offset=0):
    """'Generate' by copying dataset images, one per prompt; returns the records."""
    leaf = ds.leaves[leaf_key]
    records = []
    for k, prompt in enumerate(prompts):
        src = leaf.images[(k + offset) % len(leaf.images)].path
        rel = f"{leaf_key}/{prompt_type}/{k:04d}-s{1000 + k}.png"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, folder / rel)
        records.append(ManifestRecord(checkpoint, leaf_key, prompt_type, prompt, 1000 + k, rel, k))
    return records


def test_values_match_direct_computation(ds, encoders, tmp_path):
    gen_dir, base_dir = tmp_path / "gen", tmp_path / "base"
    leaf = ds.leaves["characters/kiro/vest"]
    train = [im.caption for im in leaf.images]  # 4 images: exactly the dataset's
    alter = ["kiro robot, vstx outfit on the moon"] * 2 + ["kiro robot, vstx outfit in a box"] * 2
    style = ["kiro robot, vstx outfit in the style of pixel art"] * 4
    recs = copy_as_generated(ds, gen_dir, "ext", leaf.key, "train", train)
    recs += copy_as_generated(ds, gen_dir, "ext", leaf.key, "alter", alter)
    recs += copy_as_generated(ds, gen_dir, "ext", leaf.key, "style", style)
    write_manifest(gen_dir / "manifest.jsonl", recs)
    base = copy_as_generated(ds, base_dir, "base", leaf.key, "style", style, offset=1)
    write_manifest(base_dir / "manifest.jsonl", base)

    cache = FeatureCache(tmp_path / "cache")
    df = evaluate_images(
        gen_dir, ds, encoders, base_images_dir=base_dir, cache=cache, progress=False
    )
    assert set(df.prompt_type) == {"train", "alter", "style"}
    assert not df.duplicated(
        ["checkpoint", "leaf", "prompt_type", "metric", "encoder", "resize"]
    ).any()
    val = df.set_index(["prompt_type", "metric", "encoder"])["value"]

    dino = encoders[0]
    ref = encode_images_cached(dino, [im.path for im in leaf.images], None)
    # The train "generations" are the dataset images themselves.
    assert val["train", "centroid_distance", "dinov2-l"] == pytest.approx(0.0, abs=1e-9)
    assert val["train", "image_similarity", "dinov2-l"] == pytest.approx(image_similarity(ref, ref))
    alter_feats = encode_images_cached(dino, [gen_dir / r.file for r in recs[4:8]], None)
    per_prompt = (vendi_score(alter_feats[:2]) + vendi_score(alter_feats[2:])) / 2
    assert val["alter", "vendi", "dinov2-l"] == pytest.approx(per_prompt)
    assert val["alter", "vendi", "dinov2-l"] != pytest.approx(vendi_score(alter_feats))
    assert val["alter", "centroid_distance", "dinov2-l"] == pytest.approx(
        centroid_distance(alter_feats, ref)
    )
    vgg = encoders[2]
    g = encode_images_cached(vgg, [gen_dir / r.file for r in recs[8:]], None)
    b = encode_images_cached(vgg, [base_dir / r.file for r in base], None)
    assert val["style", "style_loss", "vgg19"] == pytest.approx(float(style_loss(b, g).mean()))
    assert ("train", "style_loss", "vgg19") not in val.index  # style prompts only

    clip = encoders[1]
    img = encode_images_cached(clip, [gen_dir / r.file for r in recs[:4]], None)
    txt = clip.encode_texts(["robot, " + c.split(", ", 2)[2] for c in train])  # cleaned
    expected = float(torch.nn.functional.cosine_similarity(img, txt).mean())
    assert val["train", "text_alignment", "clip-l14"] == pytest.approx(expected, abs=1e-6)

    # Everything came from the cache the second time: no forward pass for dino and clip.
    passes = [e.forward_passes for e in encoders[:2]]
    again = evaluate_images(
        gen_dir, ds, encoders, base_images_dir=base_dir, cache=cache, progress=False
    )
    assert [e.forward_passes for e in encoders[:2]] == passes
    pd.testing.assert_frame_equal(df, again)


def test_unknown_leaf_and_missing_pairs(ds, encoders, tmp_path):
    gen = tmp_path / "gen"
    recs = copy_as_generated(ds, gen, "ext", "scene/tower", "style", ["twrq scene"] * 2)
    write_manifest(gen / "manifest.jsonl", [*recs])
    base = tmp_path / "base"
    other = copy_as_generated(ds, base, "base", "scene/tower", "style", ["twrq scene"])
    write_manifest(base / "manifest.jsonl", other)
    with pytest.raises(T2IBenchError, match="paired by seed"):
        evaluate_images(gen, ds, encoders, base_images_dir=base, progress=False)
    bad = ManifestRecord("ext", "scene/lake", "train", "x", 1000, recs[0].file, 0)
    write_manifest(gen / "manifest.jsonl", [bad])
    with pytest.raises(T2IBenchError, match="scene/lake"):
        evaluate_images(gen, ds, encoders, progress=False)


def test_metric_without_input_provider_stops_with_its_name(ds, encoders, tmp_path):
    from t2ibench.metrics import METRICS, MetricInputError, MetricSpec, register_metric

    gen = tmp_path / "gen"
    write_manifest(gen / "manifest.jsonl", copy_as_generated(ds, gen, "ext", "scene/tower", "train", ["twrq scene"]))  # fmt: skip
    register_metric(
        MetricSpec("depth_error", "geometry", None, (), False, (0, 1), len, list, ("depth_maps",))
    )
    try:
        with pytest.raises(MetricInputError, match=r"metric 'depth_error' needs input\(s\) \['depth_maps'\]"):  # fmt: skip
            evaluate_images(gen, ds, encoders, progress=False)
    finally:
        METRICS._items.pop("depth_error")


def test_encoder_free_metric_and_option_override(ds, encoders, tmp_path):
    """A metric whose input needs no encoder runs once per group (encoder column empty); a
    metric's options (text alignment's convention) can be overridden per evaluation."""
    from t2ibench.metrics import (
        INPUT_PROVIDERS,
        METRICS,
        InputProvider,
        MetricSpec,
        register_input_provider,
        register_metric,
        text_alignment,
    )

    gen = tmp_path / "gen"
    leaf = ds.leaves["scene/tower"]
    prompts = [im.caption for im in leaf.images][:3]
    write_manifest(gen / "manifest.jsonl", copy_as_generated(ds, gen, "ext", leaf.key, "train", prompts))  # fmt: skip
    register_input_provider(InputProvider("n_words", lambda ctx: [len(r.prompt.split()) for r in ctx.records]))  # fmt: skip
    register_metric(
        MetricSpec("prompt_words", "verbosity", None, (), True, (0, 99),
                   lambda n_words: sum(n_words) / len(n_words), list, ("n_words",))
    )  # fmt: skip
    try:
        df = evaluate_images(
            gen, ds, encoders[1:2], metrics=["prompt_words", "text_alignment"], progress=False,
            metric_options={"text_alignment": {"convention": "clipscore-hessel"}},
        )  # fmt: skip
    finally:
        METRICS._items.pop("prompt_words")
        INPUT_PROVIDERS._items.pop("n_words")
    row = df[df["metric"] == "prompt_words"].iloc[0]
    assert len(df[df["metric"] == "prompt_words"]) == 1
    assert row["encoder"] == "" and row["resize"] == ""
    assert row["value"] == pytest.approx(sum(len(p.split()) for p in prompts) / 3)
    clip = encoders[1]
    img = encode_images_cached(clip, [gen / f"{leaf.key}/train/{k:04d}-s{1000 + k}.png" for k in range(3)], None)  # fmt: skip
    from t2ibench.prompts import clean_prompt

    txt = clip.encode_texts([clean_prompt(p, leaf) for p in prompts])
    value = df.loc[df["metric"] == "text_alignment", "value"].item()
    assert value == pytest.approx(text_alignment(img, txt, convention="clipscore-hessel"), abs=1e-4)
    assert value != pytest.approx(text_alignment(img, txt), abs=1e-4)


def test_item18_bare_clipscore_is_refused_before_any_work(ds, tmp_path):
    """Issue 22 item 18: ``convention = "clipscore"`` given to the evaluate stage made NaN rows and
    a log warning; it is refused in one line, before an encoder runs."""
    gen = tmp_path / "gen"
    leaf = ds.leaves["characters/kiro/vest"]
    prompts = [im.caption for im in leaf.images][:2]
    write_manifest(
        gen / "manifest.jsonl", copy_as_generated(ds, gen, "ck", leaf.key, "train", prompts)
    )
    clip = create_encoder("clip-l14", tiny=True)
    passes = clip.forward_passes
    with pytest.raises(T2IBenchError, match="text_alignment.*'clipscore' is ambiguous"):
        evaluate_images(tmp_path / "gen", ds, [clip], metrics=["text_alignment"], progress=False,
                        metric_options={"text_alignment": {"convention": "clipscore"}})  # fmt: skip
    assert clip.forward_passes == passes
