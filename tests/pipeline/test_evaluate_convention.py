"""Issue 13 item 2: results rows say which text-alignment convention their value is in."""

import shutil

import pytest
import torch

from t2ibench.data import load_dataset, make_demo_dataset
from t2ibench.encoders import create_encoder, encode_images_cached
from t2ibench.metrics import text_alignment
from t2ibench.pipeline.evaluate import evaluate_images
from t2ibench.pipeline.manifest import ManifestRecord, write_manifest


def test_item02_results_rows_record_the_text_alignment_convention(tmp_path):
    ds = load_dataset(make_demo_dataset(tmp_path / "demo"))
    leaf = ds.leaves["characters/kiro/vest"]
    gen_dir = tmp_path / "gen"
    recs = []
    for k, im in enumerate(leaf.images):
        rel = f"{leaf.key}/train/{k:04d}-s{k}.png"
        (gen_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(im.path, gen_dir / rel)
        recs.append(ManifestRecord("ck", leaf.key, "train", im.caption, k, rel, k))
    write_manifest(gen_dir / "manifest.jsonl", recs)
    clip = create_encoder("clip-l14", tiny=True)
    for convention in ("cosine", "clipscore-hessel", "clipscore-torchmetrics"):
        df = evaluate_images(
            gen_dir, ds, [clip], metrics=["text_alignment", "image_similarity"],
            metric_options={"text_alignment": {"convention": convention}}, progress=False,
        )  # fmt: skip
        by_metric = df.set_index("metric")
        assert by_metric.loc["text_alignment", "convention"] == convention
        assert by_metric.loc["image_similarity", "convention"] == ""
        img = encode_images_cached(clip, [gen_dir / r.file for r in recs], None)
        txt = clip.encode_texts(["robot, " + im.caption.split(", ", 2)[2] for im in leaf.images])
        expected = text_alignment(img, txt, convention)
        assert by_metric.loc["text_alignment", "value"] == pytest.approx(expected, abs=1e-5)
    assert torch.is_tensor(img)
