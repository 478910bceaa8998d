"""The base model's Gram matrices are computed once and shared by every checkpoint (issue 14)."""

import shutil

import pytest

from t2ibench.data import load_dataset, make_demo_dataset
from t2ibench.encoders import FeatureCache, create_encoder
from t2ibench.pipeline.evaluate import evaluate_images
from t2ibench.pipeline.manifest import ManifestRecord, write_manifest


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return load_dataset(make_demo_dataset(tmp_path_factory.mktemp("g") / "demo"))


def _style_images(ds, folder, checkpoint, offset):
    leaf = ds.leaves["characters/kiro/vest"]
    records = []
    for k in range(4):
        rel = f"{leaf.key}/style/{k:04d}-s{1000 + k}.png"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(leaf.images[(k + offset) % len(leaf.images)].path, folder / rel)
        records.append(
            ManifestRecord(checkpoint, leaf.key, "style", "kiro in pixel art", 1000 + k, rel, k)
        )
    write_manifest(folder / "manifest.jsonl", records)


def test_base_grams_are_encoded_once_for_all_checkpoints(ds, tmp_path):
    vgg = create_encoder("vgg19", tiny=True, batch_size=1)  # one forward pass per image
    base = tmp_path / "base"
    _style_images(ds, base, "base", offset=1)
    cache = FeatureCache(tmp_path / "cache")
    values = []
    for i, ck in enumerate(("ck-a", "ck-b", "ck-c")):
        _style_images(ds, tmp_path / ck, ck, offset=i)
        before = vgg.forward_passes
        df = evaluate_images(
            tmp_path / ck, ds, [vgg], metrics=["style_loss"], base_images_dir=base,
            cache=cache, progress=False,
        )  # fmt: skip
        values.append(float(df["value"].iloc[0]))
        # 4 own images always; the 4 base images only for the first checkpoint.
        assert vgg.forward_passes - before == (8 if i == 0 else 4)
    # The same images as checkpoint a's give the same value whether base Grams came from the cache.
    df = evaluate_images(
        tmp_path / "ck-a", ds, [vgg], metrics=["style_loss"], base_images_dir=base,
        cache=None, progress=False,
    )  # fmt: skip
    assert float(df["value"].iloc[0]) == pytest.approx(values[0], rel=1e-6)
