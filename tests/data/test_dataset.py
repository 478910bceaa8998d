"""The dataset spec: a valid tree loads; every kind of bad input names the file and the field."""

from pathlib import Path

import pytest

from t2ibench.data import contains_word, load_dataset, make_demo_dataset
from t2ibench.errors import DatasetError


@pytest.fixture()
def demo(tmp_path) -> Path:
    return make_demo_dataset(tmp_path / "demo")


def test_demo_loads(demo):
    ds = load_dataset(demo)
    assert set(ds.leaves) == {
        "characters/kiro",
        "characters/kiro/vest",
        "characters/kiro/cape",
        "stuffed_toy/blob",
        "scene/tower",
        "style/dots",
    }
    assert len(ds.images) == 23
    assert ds.leaves["characters/kiro/vest"].descriptor == "kiro robot, vstx outfit"
    # auto repeats: equal exposure per class (11 images ↔ 3 × 4 ↔ 6 × 2)
    assert ds.repeats("characters/kiro") == 1
    assert ds.repeats("stuffed_toy/blob") == 4
    assert ds.repeats("style/dots") == 2


def test_demo_is_deterministic_and_hash_tracks_content(tmp_path):
    a = load_dataset(make_demo_dataset(tmp_path / "a", seed=3))
    b = load_dataset(make_demo_dataset(tmp_path / "b", seed=3))
    assert [im.caption for im in a.images] == [im.caption for im in b.images]
    assert a.sha256 == b.sha256
    cap = a.leaves["scene/tower"].images[0].path.with_suffix(".txt")
    cap.write_text("twrq scene, changed")
    assert load_dataset(a.root).sha256 != a.sha256


def test_whole_word_matching():
    assert contains_word("wai girl, waist", "wai")
    assert not contains_word("waist, waj", "wai")


def expect(root: Path, match: str):
    with pytest.raises(DatasetError, match=match) as info:
        load_dataset(root)
    return str(info.value)


def test_corrupt_image_names_the_file(demo):
    bad = demo / "scene/tower/001.png"
    bad.write_bytes(b"not a png")
    msg = expect(demo, "image")
    assert str(bad) in msg


def test_missing_caption_names_the_image(demo):
    (demo / "style/dots/002.txt").unlink()
    msg = expect(demo, "caption")
    assert "002.png" in msg


def test_caption_without_trigger(demo):
    (demo / "style/dots/002.txt").write_text("dots style, circle")
    msg = expect(demo, "trigger 'dtsy'")
    assert "002.txt" in msg


def test_caption_without_subclass_trigger(demo):
    (demo / "characters/kiro/vest/000.txt").write_text("kiro robot, red")
    expect(demo, "subclass trigger 'vstx'")


def test_unknown_key_is_named(demo):
    toml = demo / "dataset.toml"
    toml.write_text(toml.read_text().replace('kind = "scene"', 'kind = "scene"\nrepeat = 3'))
    msg = expect(demo, "repeat")
    assert "dataset.toml" in msg and 'classes."scene/tower".repeat' in msg


def test_empty_leaf(demo):
    for p in (demo / "stuffed_toy/blob").iterdir():
        p.unlink()
    expect(demo, "empty leaf")


def test_undeclared_folder_and_subfolder(demo):
    extra = demo / "characters/kiro/hat"
    extra.mkdir()
    expect(demo, "subfolder 'hat'")
    extra.rmdir()
    other = demo / "scene/lake"
    other.mkdir()
    (demo / "scene/tower/000.png").rename(other / "000.png")
    expect(demo, "scene/lake")


def test_bad_values(demo):
    toml = demo / "dataset.toml"
    text = toml.read_text()
    toml.write_text(text.replace('kind = "object"', 'kind = "thing"'))
    expect(demo, "kind")
    toml.write_text(text.replace('trigger = "twrq"', 'trigger = "blbo"'))
    expect(demo, "also the trigger")
    toml.write_text(text + "\n[classes.\"a/b/c\"]\ntrigger='x'\n")
    expect(demo, "<category>/<class>")
    toml.write_text("not = [toml")
    expect(demo, "syntax")
    toml.unlink()
    expect(demo, "dataset.toml")
