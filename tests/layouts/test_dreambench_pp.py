"""Layout ``dreambench-pp``: a method folder as DreamBench++ writes it. The minimal example tree,
built below::

    method/src_image/object_0_backpack/0_0.jpg 0_1.jpg 1_0.jpg     copies of the source image
    method/tgt_image/object_0_backpack/0_0.jpg 0_1.jpg 1_0.jpg     generated
    method/text/object_0_backpack/0_0.txt 0_1.txt 1_0.txt          prompts
    method/{src_image,tgt_image,text}/live_subject_animal_1_dog/0_0.* 1_0.*
"""

from __future__ import annotations

import shutil

import pytest
from layout_testing import evaluate_cli, mean_cos_rows, noise, open_images

from t2ibench.encoders import create_encoder
from t2ibench.layouts import LayoutError, scan_layout
from t2ibench.metric_profiles.preprocess import set_resize_size

INSTANCES = {
    "object_0_backpack": {"0_0": "a backpack on a snowy mountain", "0_1": "a backpack on a "
                          "snowy mountain", "1_0": "a backpack in the style of van gogh"},
    "live_subject_animal_1_dog": {"0_0": "a dog reading a book", "1_0": "a dog on the moon"},
}  # fmt: skip


@pytest.fixture
def tree(tmp_path):
    method = tmp_path / "dreambooth_sd_gs7_5"
    seed = 0
    for inst, prompts in INSTANCES.items():
        source = noise(tmp_path / "sources" / f"{inst}.jpg", seed := seed + 1, (80, 100))
        for stem, prompt in prompts.items():
            (method / "src_image" / inst).mkdir(parents=True, exist_ok=True)
            shutil.copy(source, method / "src_image" / inst / f"{stem}.jpg")
            noise(method / "tgt_image" / inst / f"{stem}.jpg", seed := seed + 1, (64, 64))
            (method / "text" / inst).mkdir(parents=True, exist_ok=True)
            (method / "text" / inst / f"{stem}.txt").write_text(prompt)
    (method / "negative_prompt.txt").write_text("")
    return method, tmp_path


def test_rows_and_values(tree):
    method, tmp = tree
    df = evaluate_cli(str(method), "--layout", "dreambench-pp", "--out", str(tmp / "out"),
                      "--metric-profile", "dreambench-pp",
                      "--encoders", "dino-vits8@tiny,dinov2-s@tiny,clip-b32@tiny")  # fmt: skip
    assert set(df["leaf"]) == {"object/object_0_backpack",
                               "live_subject_animal/live_subject_animal_1_dog"}  # fmt: skip
    assert set(df["checkpoint"]) == {"dreambooth_sd_gs7_5"}
    assert set(df["measure"]) == {"DINO-I", "DINOv2-I", "CLIP-I", "CLIP-T"} and len(df) == 8
    got = df.set_index(["leaf", "measure"])["value"]
    inst = method / "tgt_image" / "object_0_backpack"
    gen = open_images(sorted(inst.iterdir()))
    src = open_images(sorted((method / "src_image" / "object_0_backpack").iterdir()))

    # Row 1: DINO-I = 100 × mean over outputs of cos(output, its own source image), DINOv1 S/8
    # on the 256 → 224 crop.
    dino = set_resize_size(create_encoder("dino-vits8", tiny=True, resize="center-crop"), 256)
    expected = 100 * mean_cos_rows(dino.encode_images(gen), dino.encode_images(src))
    assert got["object/object_0_backpack", "DINO-I"] == pytest.approx(expected, abs=1e-4)

    # Row 2: CLIP-T = 100 × mean cos(output, its prompt as written).
    clip = create_encoder("clip-b32", tiny=True, resize="center-crop")
    texts = [INSTANCES["object_0_backpack"][p.stem] for p in sorted(inst.iterdir())]
    expected = 100 * mean_cos_rows(clip.encode_images(gen), clip.encode_texts(texts))
    assert got["object/object_0_backpack", "CLIP-T"] == pytest.approx(expected, abs=1e-4)


def test_source_copies_are_one_reference(tree):
    method, _ = tree
    scan = scan_layout("dreambench-pp", method)
    assert scan.single_reference and scan.identifier_free
    leaf = scan.dataset.leaves["object/object_0_backpack"]
    assert [im.path.name for im in leaf.images] == ["0_0.jpg"]
    rec = next(r for r in scan.records if r.file.endswith("object_0_backpack/1_0.jpg"))
    assert rec.prompt == "a backpack in the style of van gogh" and rec.seed == 0
    # Differing copies are two references: then "paired" is refused, not silently all-pairs.
    noise(method / "src_image" / "object_0_backpack" / "1_0.jpg", 77, (80, 100))
    assert not scan_layout("dreambench-pp", method).single_reference


@pytest.mark.parametrize(
    ("damage", "named", "why"),
    [
        (lambda m: (m / "text/object_0_backpack/1_0.txt").unlink(), "1_0.jpg", "no text/"),
        (lambda m: (m / "tgt_image/object_0_backpack/0_1.jpg").unlink(), "0_1.jpg",
         "no tgt_image/"),
        (lambda m: (m / "tgt_image/object_0_backpack").rename(m / "tgt_image/backpack"),
         "src_image/object_0_backpack", "no tgt_image/object_0_backpack"),
        (lambda m: shutil.rmtree(m / "text"), "text", "missing"),
        (lambda m: noise(m / "tgt_image/object_0_backpack/final.jpg", 5), "final.jpg",
         "<prompt index>_<image index>"),
    ],
)  # fmt: skip
def test_first_misfit_is_named_in_one_line(tree, damage, named, why):
    method, _ = tree
    damage(method)
    with pytest.raises(LayoutError) as exc:
        scan_layout("dreambench-pp", method)
    msg = str(exc.value)
    assert named in msg and why in msg and "\n" not in msg


def test_item08_mixed_case_extensions_and_os_files(tree):
    """Issue 22 item 8 in this layout: any case of .png/.jpg/.jpeg; OS files skipped."""
    method, _ = tree
    inst = "object_0_backpack"
    (method / "tgt_image" / inst / "1_0.jpg").rename(method / "tgt_image" / inst / "1_0.Jpg")
    for part in ("src_image", "tgt_image", "text"):
        (method / part / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
        (method / part / inst / "desktop.ini").write_text("[.ShellClassInfo]\n")
    scan = scan_layout("dreambench-pp", method)
    assert f"tgt_image/{inst}/1_0.Jpg" in {r.file for r in scan.records}
    assert len(scan.records) == 5
