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
from layout_testing import (
    DREAMBOOTH_PROMPTS,
    evaluate_cli,
    mean_cos_all_pairs,
    mean_cos_rows,
    noise,
    open_images,
)

from t2ibench.encoders import create_encoder
from t2ibench.layouts import LayoutError, scan_layout
from t2ibench.metric_profiles.preprocess import set_resize_size

PROMPTS = DREAMBOOTH_PROMPTS
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
    assert set(df["base"]) == {"unknown"}  # outside images: no base given, none recorded
    got = df.set_index(["leaf", "measure"])["value"]

    # Row 1: DINO of the dog = mean cosine over all (generated, real) pairs, DINO's evaluation
    # crop (short side 256, centre 224; dreambooth.toml).
    dino = set_resize_size(create_encoder("dino-vits16", tiny=True, resize="center-crop"), 256)
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
            "unexpected file among the generated images",
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


def test_item08_upper_case_extensions_and_os_files(tree):
    """Issue 22 item 8: ``00.JPG`` / ``0_0.PNG`` are images (any case), ``Thumbs.db``,
    ``desktop.ini``, ``.DS_Store``, ``._00.jpg`` (AppleDouble) and ``__MACOSX/`` are skipped."""
    db, gen, _ = tree
    (db / "dog" / "01.jpg").rename(db / "dog" / "01.JPG")
    (gen / "dog" / "1_1.png").rename(gen / "dog" / "1_1.PNG")
    for folder in (db / "dog", gen / "dog", gen):
        (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 not an image")
        (folder / "desktop.ini").write_text("[.ShellClassInfo]\n")
        (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (gen / "dog" / "._0_0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (gen / "__MACOSX" / "dog").mkdir(parents=True)
    scan = scan_layout("dreambooth", gen, dataset=db)
    assert sorted(r.file for r in scan.records if r.leaf == "live/dog") == [
        "dog/0_0.png", "dog/1_0.png", "dog/1_1.PNG"
    ]  # fmt: skip
    assert [im.path.name for im in scan.dataset.leaves["live/dog"].images] == ["00.jpg", "01.JPG"]


def test_item08_not_a_readable_image_only_for_undecodable_files(tree):
    """A wrong suffix says so; a file with an image suffix that does not decode is named "not a
    readable image" — and only such a file."""
    db, gen, _ = tree
    (gen / "dog" / "notes.txt").write_text("x")
    with pytest.raises(LayoutError) as exc:
        scan_layout("dreambooth", gen, dataset=db)
    where, _, why = str(exc.value).partition(": ")
    assert where.endswith("notes.txt") and why.startswith("unexpected file among the generated")
    assert "not a real" not in why and "readable" not in why
    (gen / "dog" / "notes.txt").unlink()
    (db / "dog" / "01.JPG").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(LayoutError, match=r"01\.JPG: not a readable image"):
        scan_layout("dreambooth", gen, dataset=db)


@pytest.mark.parametrize("where", ["generated", "reference"])
@pytest.mark.parametrize("damage", ["garbage", "truncated-jpeg", "truncated-png"])
def test_item09_corrupt_image_refused_in_the_scan_before_any_encoder(
    tree, monkeypatch, where, damage
):
    """Issue 22 item 9: a corrupt image stops ``t2ibench evaluate`` in the layout scan, before any
    encoder is constructed, with one line naming the file (no ``<_io.BytesIO object at …>``)."""
    from typer.testing import CliRunner

    import t2ibench.encoders as encoders_pkg
    from t2ibench.cli import app

    db, gen, tmp = tree
    bad = gen / "dog" / "1_0.png" if where == "generated" else db / "dog" / "01.jpg"
    if damage == "garbage":
        bad.write_bytes(b"definitely not an image")
    else:
        if damage == "truncated-png" and bad.suffix != ".png":
            bad = bad.rename(bad.with_suffix(".png"))
        elif damage == "truncated-jpeg" and bad.suffix != ".jpg":
            bad = bad.rename(bad.with_suffix(".jpg"))
        src = noise(tmp / f"whole{bad.suffix}", 5, (300, 200))
        data = src.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    constructed = []
    real_create = encoders_pkg.create_encoder

    def spy(*args, **kwargs):
        constructed.append(args[0] if args else kwargs.get("name"))
        return real_create(*args, **kwargs)

    monkeypatch.setattr(encoders_pkg, "create_encoder", spy)
    result = CliRunner().invoke(
        app,
        ["evaluate", str(gen), "--layout", "dreambooth", "--dataset", str(db),
         "--out", str(tmp / "out"), "--metric-profile", "dreambooth",
         "--encoders", "dino-vits16@tiny,clip-b32@tiny"],
    )  # fmt: skip
    # The console script prints a T2IBenchError as one "error: ..." line and exits 2.
    assert isinstance(result.exception, LayoutError), result.output
    line = str(result.exception)
    assert line.startswith(f"{bad}: not a readable image (") and "\n" not in line
    assert "BytesIO" not in line and " at 0x" not in line
    assert constructed == []  # refused before any encoder was built
    assert not (tmp / "out" / "results.parquet").exists()


def test_item12_report_rows_carry_the_papers_labels(tree):
    """Issue 22 item 12 (labels): the dreambooth profile's rows reach the report as DINO / CLIP-I /
    CLIP-T — the label beside t2ibench's metric name, whose column keeps its name."""
    import html

    import pandas as pd
    from typer.testing import CliRunner

    from t2ibench.cli import app

    db, gen, tmp = tree
    df = evaluate_cli(str(gen), "--layout", "dreambooth", "--dataset", str(db),
                      "--out", str(tmp / "out"), "--metric-profile", "dreambooth",
                      "--encoders", "dino-vits16@tiny,clip-b32@tiny", "--base", "sdxl")  # fmt: skip
    assert set(df["metric"]) == {"image_similarity", "text_alignment"}  # names unchanged
    assert set(df["base"]) == {"sdxl"}  # --base names the results' base
    r = CliRunner().invoke(app, ["analyze", str(tmp / "out"), "--out", str(tmp / "rep"),
                                 "--no-plots"])  # fmt: skip
    assert r.exit_code == 0, r.output
    raw = pd.read_csv(tmp / "rep" / "raw_values.csv")
    keys = zip(raw["metric"], raw["encoder"], strict=True)
    labels = dict(zip(keys, raw["measure"], strict=True))
    assert labels[("image_similarity", "dino-vits16")] == "DINO"
    assert labels[("image_similarity", "clip-b32")] == "CLIP-I"
    assert labels[("text_alignment", "clip-b32")] == "CLIP-T"
    page = (tmp / "rep" / "report.html").read_text(encoding="utf-8")
    page = html.unescape(page.replace("<wbr>", ""))  # table cells may wrap after "_"
    for label, metric in (("DINO", "image_similarity"), ("CLIP-I", "image_similarity"),
                          ("CLIP-T", "text_alignment")):  # fmt: skip
        assert f"{label}: {metric}" in page


def test_issue22_phone_like_files_are_read_upright_and_on_white(tree):
    """The hidden-style scenario's layout half: references as phones and editors write them
    (EXIF-rotated ``.JPG``, RGBA ``.PNG``, greyscale ``.jpeg``), generated RGBA and 16-bit PNGs
    with upper-case names; ``t2ibench evaluate`` scores exactly the pictures the one decoder
    gives (upright, transparency on white, 16-bit scaled)."""
    import numpy as np
    from layout_testing import unit
    from PIL import Image

    from t2ibench.images import open_image

    db, gen, tmp = tree
    rng = np.random.default_rng(7)
    for p in list((db / "dog").iterdir()) + list((gen / "dog").iterdir()):
        p.unlink()
    upright = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90° clockwise to view
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(
        db / "dog" / "00.JPG", exif=exif, quality=95
    )
    rgba = rng.integers(0, 256, (70, 70, 4), dtype=np.uint8)
    rgba[:35, :, 3] = 0  # the top half transparent
    Image.fromarray(rgba, "RGBA").save(db / "dog" / "01.PNG")
    Image.fromarray(rng.integers(0, 256, (64, 80), dtype=np.uint8), "L").save(
        db / "dog" / "02.jpeg"
    )
    Image.fromarray(rgba, "RGBA").save(gen / "dog" / "0_0.PNG")
    deep = (rng.integers(0, 65536, (64, 72))).astype(np.uint16)
    Image.fromarray(deep).save(gen / "dog" / "1_0.PNG")  # 16-bit greyscale
    df = evaluate_cli(str(gen), "--layout", "dreambooth", "--dataset", str(db),
                      "--out", str(tmp / "out"), "--metric-profile", "dreambooth",
                      "--encoders", "dino-vits16@tiny,clip-b32@tiny")  # fmt: skip
    got = df.set_index(["leaf", "measure"])["value"]["live/dog", "DINO"]
    assert open_image(db / "dog" / "00.JPG").size == (90, 60)  # upright
    assert np.asarray(open_image(db / "dog" / "01.PNG"))[:35].min() == 255  # white, not black
    dino = set_resize_size(create_encoder("dino-vits16", tiny=True, resize="center-crop"), 256)
    g = dino.encode_images([open_image(p) for p in sorted((gen / "dog").iterdir())])
    r = dino.encode_images([open_image(p) for p in sorted((db / "dog").iterdir())])
    assert got == pytest.approx(float((unit(g) @ unit(r).T).mean()), abs=1e-6)
