"""The toy world generator: determinism, vocabulary separation, captions, the dataset spec."""

import numpy as np
import pytest
from PIL import Image

from t2ibench.data import load_dataset
from t2ibench.errors import ConfigError
from t2ibench.toy import world
from t2ibench.toy.dataset import load_truth, make_toy_dataset


def test_render_is_deterministic_and_order_free():
    a = [np.asarray(world.render(world.sample_base_scene(3, i))) for i in range(5)]
    b = [np.asarray(world.render(world.sample_base_scene(3, i))) for i in reversed(range(5))][::-1]
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    assert a[0].shape == (32, 32, 3) and a[0].dtype == np.uint8
    other = np.asarray(world.render(world.sample_base_scene(4, 0)))
    assert not (other == a[0]).all()


def test_base_stream_uses_base_vocabulary_only():
    scenes = [world.sample_base_scene(0, i) for i in range(400)]
    assert {s.shape for s in scenes} == set(world.BASE_SHAPES)
    assert {s.colour for s in scenes} == set(world.BASE_COLOURS)
    assert {s.background for s in scenes} == set(world.BASE_BACKGROUNDS)
    assert {s.style for s in scenes} == set(world.BASE_STYLES)
    assert {s.outfit for s in scenes} == {"none"}
    held_out = set(world.HELD_OUT_SHAPES + world.HELD_OUT_BACKGROUNDS + world.HELD_OUT_STYLES)
    for s in scenes[:50]:
        for t in range(len(world.BASE_TEMPLATES)):
            words = set(world.base_caption(s, t).replace(",", " ").split())
            assert not words & held_out
            assert not words & {c.trigger for c in world.CONCEPTS}


def test_attributes_change_pixels():
    s = world.Scene("circle", "red", "white", "flat")
    base = np.asarray(world.render(s)).astype(int)
    for change in (
        {"shape": "square"},
        {"colour": "blue"},
        {"background": "striped"},
        {"style": "outline"},
        {"shape": "star", "outfit": "hat"},
    ):
        other = np.asarray(world.render(world.with_attrs(s, **change))).astype(int)
        assert np.abs(other - base).sum() > 2000, change
    # the shape colour is where the shape is
    assert tuple(base[16, 16]) == pytest.approx((225, 40, 40), abs=2)
    assert tuple(base[1, 1]) == pytest.approx((243, 243, 243), abs=2)


def test_every_probe_value_is_reachable():
    scenes = [world.sample_any_scene(0, i) for i in range(1500)]
    for attr, values in world.ATTRIBUTES.items():
        assert {getattr(s, attr) for s in scenes} == set(values), attr


def test_captions():
    s = world.Scene("triangle", "blue", "grey", "outline")
    assert world.base_caption(s, 0) == "a blue triangle on a grey background, outline style"
    assert world.base_caption(s, 2) == "an outline drawing of a blue triangle on a grey background"
    assert world.base_caption(s, 1) == "triangle, blue, grey background, outline style"
    star = world.concept("characters/starling/hat")
    rng = world.rng_for(0, "x")
    caps = {star.caption(star.sample(rng), rng) for _ in range(20)}
    assert all(c.startswith(("sks character, kep outfit", "a ")) for c in caps)
    assert all("sks character, kep outfit" in c for c in caps)
    assert world.describe(world.Scene("bear", "brown", "checker", "flat")) == (
        "a brown bear on a checkerboard background, flat style"
    )


def test_toy_dataset_follows_the_spec(tmp_path):
    root = make_toy_dataset(tmp_path / "toy")
    ds = load_dataset(root)
    assert len(ds.leaves) == len(world.CONCEPTS) == 9
    counts = {k: len(leaf.images) for k, leaf in ds.leaves.items()}
    assert counts["characters/starling/hat"] == 60 and counts["toys/ring"] == 5
    assert {c.kind for c in ds.concepts.values()} == {"character", "object", "scene", "style"}
    assert ds.repeats("toys/ring") > ds.repeats("characters/starling") == 1
    truth = load_truth(root)
    assert len(truth) == len(ds.images)
    rec = ds.leaves["characters/starling/hat"].images[0]
    scene = truth[rec.path.relative_to(root).as_posix()]
    assert scene.shape == "star" and scene.outfit == "hat"
    assert np.array_equal(np.asarray(world.render(scene)), np.asarray(Image.open(rec.path)))
    # deterministic: a rebuild has the same content hash; another seed differs
    first = ds.sha256
    make_toy_dataset(root)
    assert load_dataset(root).sha256 == first
    assert load_dataset(make_toy_dataset(tmp_path / "other", seed=1)).sha256 != first


def test_toy_dataset_refuses_foreign_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mine.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a toy dataset"):
        make_toy_dataset(tmp_path / "x")
    assert (tmp_path / "x" / "mine.txt").read_text() == "keep me"
