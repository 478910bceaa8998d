"""Layout ``t2ibench`` (the default): what ``t2ibench run`` writes. The minimal example tree, built
below::

    demo/                                   a t2ibench dataset (make_demo_dataset)
    gen/manifest.jsonl                      checkpoint, leaf, prompt_type, prompt, seed, file
    gen/characters/kiro/vest/train/0000-s0.png ...
"""

from __future__ import annotations

import pytest
from layout_testing import evaluate_cli, mean_cos_all_pairs, mean_cos_rows, noise, open_images

from t2ibench.data import load_dataset, make_demo_dataset
from t2ibench.encoders import create_encoder
from t2ibench.layouts import LayoutError, scan_layout
from t2ibench.pipeline.manifest import ManifestRecord, write_manifest
from t2ibench.prompts import clean_prompt
from t2ibench.testing import run_cli


@pytest.fixture
def tree(tmp_path):
    demo = make_demo_dataset(tmp_path / "demo")
    leaf = load_dataset(demo).leaves["characters/kiro/vest"]
    gen = tmp_path / "gen"
    recs = []
    for k in range(3):
        rel = f"{leaf.key}/train/{k:04d}-s{k}.png"
        noise(gen / rel, 100 + k)
        recs.append(ManifestRecord("ckpt-e1", leaf.key, "train", leaf.images[k].caption, k, rel, k))
    write_manifest(gen / "manifest.jsonl", recs)
    return demo, gen, leaf, recs, tmp_path


def test_rows_and_values(tree):
    demo, gen, leaf, recs, tmp = tree
    df = evaluate_cli(str(gen), "--layout", "t2ibench", "--dataset", str(demo),
                      "--out", str(tmp / "out"), "--encoders", "dinov2-l@tiny,clip-l14@tiny",
                      "--metrics", "image_similarity,text_alignment")  # fmt: skip
    assert set(df["leaf"]) == {leaf.key} and set(df["checkpoint"]) == {"ckpt-e1"}
    assert set(df["metric_profile"]) == {"lycoris2024"}
    got = df.set_index(["metric", "encoder"])["value"]
    images = open_images([gen / r.file for r in recs])
    # Row 1: DINOv2-L similarity, all (generated, dataset image) pairs, letterbox 224.
    dino = create_encoder("dinov2-l", tiny=True)
    refs = open_images([im.path for im in leaf.images])
    expected = mean_cos_all_pairs(dino.encode_images(images), dino.encode_images(refs))
    assert got["image_similarity", "dinov2-l"] == pytest.approx(expected, abs=1e-6)
    # Row 2: text alignment against each caption cleaned of its trigger words.
    clip = create_encoder("clip-l14", tiny=True)
    texts = [clean_prompt(r.prompt, leaf) for r in recs]
    expected = mean_cos_rows(clip.encode_images(images), clip.encode_texts(texts))
    assert got["text_alignment", "clip-l14"] == pytest.approx(expected, abs=1e-6)


def test_the_default_layout_and_its_misfits(tree):
    demo, gen, leaf, recs, tmp = tree
    assert scan_layout("t2ibench", gen, dataset=demo).records == recs
    with pytest.raises(LayoutError, match="--dataset"):
        scan_layout("t2ibench", gen)
    (gen / "manifest.jsonl").unlink()
    with pytest.raises(LayoutError, match=r"manifest\.jsonl: missing"):
        scan_layout("t2ibench", gen, dataset=demo)
    # The CLI says it in one line, without a traceback.
    out = run_cli("evaluate", gen, "--dataset", demo, "--out", tmp / "o")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "manifest.jsonl: missing" in lines[0]
