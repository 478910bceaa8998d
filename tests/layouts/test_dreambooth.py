"""Layout ``dreambooth``: the DreamBooth dataset's subject folders and prompt list, and images
generated per subject and prompt. The minimal example tree, built below::

    db/prompts_and_classes.txt      2 subjects (dog: live, backpack: object), 2 prompts per list
    db/dog/00.jpg 01.jpg            real images
    db/backpack/00.jpg 01.jpg
    gen/dog/0_0.png 1_0.png 1_1.png     <prompt index>_<image index>
    gen/backpack/0_0.png 1_0.png
"""

from __future__ import annotations

import pytest
from layout_testing import evaluate_cli, mean_cos_all_pairs, mean_cos_rows, noise, open_images

from t2ibench.encoders import create_encoder
from t2ibench.layouts import LayoutError, scan_layout

PROMPTS = """Classes

subject_name,class
backpack,backpack
dog,dog

Prompts

Object Prompts

prompt_list = [
'a {0} {1} in the jungle'.format(unique_token, class_token),
'a red {0} {1}'.format(unique_token, class_token)
]

Live Subject Prompts

prompt_list = [
'a {0} {1} in the snow'.format(unique_token, class_token),
'a {0} {1} wearing a red hat'.format(unique_token, class_token)
]
"""
GENERATED = {"dog": ["0_0", "1_0", "1_1"], "backpack": ["0_0", "1_0"]}


@pytest.fixture
def tree(tmp_path):
    db, gen = tmp_path / "db", tmp_path / "gen"
    db.mkdir()
    (db / "prompts_and_classes.txt").write_text(PROMPTS)
    seed = 0
    for subject, names in GENERATED.items():
        for k in range(2):
            noise(db / subject / f"{k:02d}.jpg", seed := seed + 1, (80, 60))
        for name in names:
            noise(gen / subject / f"{name}.png", seed := seed + 1)
    return db, gen, tmp_path


def test_rows_and_values(tree):
    db, gen, tmp = tree
    df = evaluate_cli(str(gen), "--layout", "dreambooth", "--dataset", str(db),
                      "--out", str(tmp / "out"), "--metric-profile", "dreambooth",
                      "--encoders", "dino-vits16@tiny,clip-b32@tiny")  # fmt: skip
    assert set(df["leaf"]) == {"live/dog", "object/backpack"}
    assert set(df["prompt_type"]) == {"alter"} and set(df["checkpoint"]) == {"gen"}
    assert set(df["measure"]) == {"DINO", "CLIP-I", "CLIP-T"} and len(df) == 6
    got = df.set_index(["leaf", "measure"])["value"]

    # Row 1: DINO of the dog = mean cosine over all (generated, real) pairs, DINO's centre crop.
    dino = create_encoder("dino-vits16", tiny=True, resize="center-crop")
    g = dino.encode_images(open_images(sorted((gen / "dog").iterdir())))
    r = dino.encode_images(open_images(sorted((db / "dog").iterdir())))
    assert got["live/dog", "DINO"] == pytest.approx(mean_cos_all_pairs(g, r), abs=1e-6)

    # Row 2: CLIP-T of the backpack: each image against its prompt with the identifier removed;
    # prompt p comes from the object list ("a sks backpack in the jungle" → without "sks").
    clip = create_encoder("clip-b32", tiny=True, resize="center-crop")
    imgs = clip.encode_images(open_images([gen / "backpack/0_0.png", gen / "backpack/1_0.png"]))
    txt = clip.encode_texts(["a backpack in the jungle", "a red backpack"])
    assert got["object/backpack", "CLIP-T"] == pytest.approx(mean_cos_rows(imgs, txt), abs=1e-6)


def test_scan_maps_to_the_results_schema(tree):
    db, gen, _ = tree
    scan = scan_layout("dreambooth", gen, dataset=db, identifier="zwx")
    recs = {r.file: r for r in scan.records}
    assert recs["dog/1_1.png"].prompt == "a zwx dog wearing a red hat"  # live-subject list
    assert recs["dog/1_1.png"].seed == 1 and recs["dog/1_1.png"].leaf == "live/dog"
    assert recs["backpack/0_0.png"].prompt == "a zwx backpack in the jungle"  # object list
    assert [im.path.name for im in scan.dataset.leaves["live/dog"].images] == ["00.jpg", "01.jpg"]


@pytest.mark.parametrize(
    ("damage", "named", "why"),
    [
        (lambda db, gen: noise(gen / "dog" / "snow.png", 99), "snow.png", "<prompt index>"),
        (lambda db, gen: noise(gen / "dog" / "2_0.png", 99), "2_0.png", "prompt index 2"),
        (lambda db, gen: noise(gen / "cat" / "0_0.png", 99), "cat", "not a subject"),
        (
            lambda db, gen: (gen / "dog" / "notes.txt").write_text("x"),
            "notes.txt",
            "not a generated",
        ),
        (
            lambda db, gen: (db / "prompts_and_classes.txt").unlink(),
            "prompts_and_classes",
            "missing",
        ),
    ],
)
def test_first_misfit_is_named_in_one_line(tree, damage, named, why):
    db, gen, _ = tree
    damage(db, gen)
    with pytest.raises(LayoutError) as exc:
        scan_layout("dreambooth", gen, dataset=db)
    msg = str(exc.value)
    assert named in msg and why in msg and "\n" not in msg


def test_a_profile_this_layout_cannot_pair_is_refused(tree):
    """DreamBench++ pairs each image with its own source image; a DreamBooth subject has several
    real images, so the stage refuses rather than silently averaging all pairs."""
    from t2ibench.errors import ConfigError

    db, gen, tmp = tree
    with pytest.raises(ConfigError, match="pairs each image with its own reference"):
        evaluate_cli(str(gen), "--layout", "dreambooth", "--dataset", str(db),
                     "--out", str(tmp / "x"), "--metric-profile", "dreambench-pp")  # fmt: skip
