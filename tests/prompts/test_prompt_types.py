"""Prompt registry: counts, seeds and text cleaning exactly as PROTOCOL "Generation" says."""

from collections import Counter

import pytest

from t2ibench.data import load_dataset, make_demo_dataset
from t2ibench.errors import DatasetError
from t2ibench.prompts import (
    clean_prompt,
    get_prompt_type,
    jobs_for,
    list_alter_sets,
    list_prompt_types,
    read_template_file,
    strip_concept,
)


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return load_dataset(make_demo_dataset(tmp_path_factory.mktemp("p") / "demo"))


def test_registry_names():
    assert list_prompt_types() == sorted(["train", "trigger", "alter", "style", "concept-agnostic"])


def test_shipped_templates():
    assert len(read_template_file("style.txt")) == 5
    for name in list_alter_sets():
        assert len(read_template_file(f"alter/{name}.txt")) == 10
    assert "person" in list_alter_sets() and "plushie" in list_alter_sets()


def test_counts_and_seeds(ds):
    leaf = ds.leaves["characters/kiro/vest"]
    for pt in ["train", "trigger", "alter", "style", "concept-agnostic"]:
        jobs = get_prompt_type(pt).jobs(leaf, ds, 100)
        assert len(jobs) == 100
        assert [j.seed for j in jobs] == [1000 + k for k in range(100)]
        assert [j.index for j in jobs] == list(range(100))
        assert len({j.stem for j in jobs}) == 100
    alter = Counter(j.prompt for j in get_prompt_type("alter").jobs(leaf, ds, 100))
    assert len(alter) == 10 and set(alter.values()) == {10}
    alter_jobs = get_prompt_type("alter").jobs(leaf, ds, 100)
    assert (
        alter_jobs[0].prompt
        == "kiro robot, vstx outfit selfie standing under the pink blossoms of a cherry tree"
    )
    assert alter_jobs[9].prompt == alter_jobs[0].prompt != alter_jobs[10].prompt
    style = Counter(j.prompt for j in get_prompt_type("style").jobs(leaf, ds, 100))
    assert len(style) == 5 and set(style.values()) == {20}
    trig = {j.prompt for j in get_prompt_type("trigger").jobs(leaf, ds, 100)}
    assert trig == {"kiro robot, vstx outfit"}
    train = Counter(j.prompt for j in get_prompt_type("train").jobs(leaf, ds, 100))
    assert set(train) == set(leaf.captions) and set(train.values()) == {25}


def test_style_none_for_style_classes(ds):
    assert get_prompt_type("style").jobs(ds.leaves["style/dots"], ds, 100) == []


def test_total_jobs(ds):
    jobs = jobs_for(ds, n=100)
    # 6 leaves × 5 types × 100, minus style for the style class
    assert len(jobs) == 6 * 5 * 100 - 100
    assert len({(j.leaf, j.prompt_type, j.index) for j in jobs}) == len(jobs)


def test_concept_agnostic_has_no_trigger(ds):
    leaf = ds.leaves["characters/kiro/cape"]
    jobs = get_prompt_type("concept-agnostic").jobs(leaf, ds, 10)
    for j in jobs:
        assert "kiro" not in j.prompt and "cpqz" not in j.prompt
    assert all("robot" in j.prompt for j in jobs[:5])
    assert not any("robot" in j.prompt for j in jobs[5:])
    assert {j.variant for j in jobs} == {"class-word", "no-class-word"}


def test_clean_prompt_rules(ds):
    char = ds.leaves["characters/kiro/vest"]
    assert (
        clean_prompt("kiro robot, vstx outfit, red, white background", char)
        == "robot, red, white background"
    )
    assert (
        clean_prompt("kiro robot, vstx outfit in a chef's outfit", char)
        == "robot, in a chef's outfit"
    )
    scene = ds.leaves["scene/tower"]
    assert clean_prompt("twrq scene in times square", scene) == "tower scene in times square"
    style = ds.leaves["style/dots"]
    assert clean_prompt("dtsy style of a city skyline", style) == "of a city skyline"
    toy = ds.leaves["stuffed_toy/blob"]
    assert clean_prompt("blbo stuffed toy, blbox, blbo", toy) == "blob stuffed toy, blbox, blob"


def test_whole_word_cleaning_does_not_eat_words(ds):
    leaf = ds.leaves["characters/kiro"]
    assert (
        strip_concept("kiro robot, kirov waistcoat", leaf, keep_class_word=True)
        == "robot, kirov waistcoat"
    )


def test_alter_templates_from_dataset_file(ds, tmp_path):
    import shutil

    root = tmp_path / "d"
    shutil.copytree(ds.root, root)
    (root / "mine.txt").write_text("{} on the moon\n{} in a box\n")
    toml = root / "dataset.toml"
    toml.write_text(
        toml.read_text().replace('alter_templates = "castle"', 'alter_templates = "mine.txt"')
    )
    d2 = load_dataset(root)
    jobs = get_prompt_type("alter").jobs(d2.leaves["scene/tower"], d2, 4)
    assert [j.prompt for j in jobs] == ["twrq scene on the moon"] * 2 + ["twrq scene in a box"] * 2
    toml.write_text(toml.read_text().replace('"mine.txt"', '"../escape.txt"'))
    with pytest.raises(DatasetError, match="outside"):
        get_prompt_type("alter").jobs(load_dataset(root).leaves["scene/tower"], d2, 4)
    toml.write_text(toml.read_text().replace('"../escape.txt"', '"nosuchset"'))
    with pytest.raises(DatasetError, match="unknown set"):
        get_prompt_type("alter").jobs(load_dataset(root).leaves["scene/tower"], d2, 4)
