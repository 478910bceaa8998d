"""Layout ``customconcept101``: sample folders as CustomConcept101's evaluate.py reads them. The
minimal example tree, built below::

    bench/pet_cat1/00.jpg 01.jpg 02.jpg          the concept's target (real) images
    bench/things_cup2/00.jpg 01.jpg
    samples/pet_cat1/samples/0.png 1.png 2.png   generated
    samples/pet_cat1/prompts.json                {"0": "<new1> cat swimming in a pool", ...}
    samples/things_cup2/samples/0.png 1.png
    samples/things_cup2/prompts.json
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from layout_testing import evaluate_cli, mean_cos_all_pairs, noise, open_images, unit

from t2ibench.encoders import create_encoder
from t2ibench.layouts import LayoutError, scan_layout
from t2ibench.metric_profiles.preprocess import set_resize_size

PROMPTS = {
    "pet_cat1": ["<new1> cat swimming in a pool", "a <new1> cat in times square", "<new1> cat"],
    "things_cup2": ["<new1> cup on a wooden table", "a watercolor painting of <new1> cup"],
}


@pytest.fixture
def tree(tmp_path):
    bench, samples = tmp_path / "bench", tmp_path / "samples"
    seed = 0
    for concept, prompts in PROMPTS.items():
        for k in range(3 if concept == "pet_cat1" else 2):
            noise(bench / concept / f"{k:02d}.jpg", seed := seed + 1, (90, 70))
        for k in range(len(prompts)):
            noise(samples / concept / "samples" / f"{k}.png", seed := seed + 1, (64, 64))
        (samples / concept / "prompts.json").write_text(
            json.dumps({str(k): p for k, p in enumerate(prompts)})
        )
    return bench, samples, tmp_path


def test_rows_and_values(tree, clip_b32_mixed):
    bench, samples, tmp = tree
    df = evaluate_cli(str(samples), "--layout", "customconcept101", "--dataset", str(bench),
                      "--out", str(tmp / "out"), "--metric-profile", "customconcept101",
                      "--encoders", f"dino-vits16@tiny,clip-b32@{clip_b32_mixed}")  # fmt: skip
    assert set(df["leaf"]) == {"pet/pet_cat1", "things/things_cup2"}
    assert set(df["measure"]) == {"CLIP-T", "CLIP-I", "DINO"} and len(df) == 6
    assert set(df["metric_profile"]) == {"customconcept101"}
    got = df.set_index(["leaf", "measure"])["value"]
    gen = open_images(sorted((samples / "pet_cat1" / "samples").iterdir()))

    # Row 1: DINO = mean of the (sample × target) cosine matrix, images resized to 256, cropped 224.
    dino = set_resize_size(create_encoder("dino-vits16", tiny=True, resize="center-crop"), 256)
    refs = open_images(sorted((bench / "pet_cat1").iterdir()))
    expected = mean_cos_all_pairs(dino.encode_images(gen), dino.encode_images(refs))
    assert got["pet/pet_cat1", "DINO"] == pytest.approx(expected, abs=1e-6)

    # Row 2: CLIP-T = mean over samples of 2.5·max(cos, 0), prompt from prompts.json by file stem,
    # the modifier token removed.
    clip = create_encoder("clip-b32", weights=clip_b32_mixed, resize="center-crop")
    texts = ["cat swimming in a pool", "a cat in times square", "cat"]
    cos = (unit(clip.encode_images(gen)) * unit(clip.encode_texts(texts))).sum(axis=1)
    expected = float(np.mean(2.5 * np.clip(cos, 0, None)))
    assert got["pet/pet_cat1", "CLIP-T"] == pytest.approx(expected, abs=1e-6)
    assert expected > 0


def test_one_sample_folder_is_one_concept(tree):
    bench, samples, _ = tree
    scan = scan_layout("customconcept101", samples / "things_cup2", dataset=bench)
    assert {r.leaf for r in scan.records} == {"things/things_cup2"}
    assert [r.prompt for r in scan.records] == PROMPTS["things_cup2"]
    assert scan.records[0].file == "samples/0.png" and scan.records[1].seed == 1


@pytest.mark.parametrize(
    ("damage", "named", "why"),
    [
        (lambda b, s: (s / "pet_cat1/prompts.json").write_text('{"0": "a", "1": "b"}'),
         "2.png", "no prompt"),
        (lambda b, s: noise(s / "dog/samples/0.png", 9), "dog", "no concept folder"),
        (lambda b, s: (s / "pet_cat1/samples/0.webp").write_bytes(b"x"), "0.webp", "unexpected file"),
        (lambda b, s: (s / "pet_cat1/prompts.json").unlink(), "prompts.json", "missing"),
        (lambda b, s: (s / "notes").mkdir(), "notes", "no samples/"),
    ],
)  # fmt: skip
def test_first_misfit_is_named_in_one_line(tree, damage, named, why):
    bench, samples, _ = tree
    damage(bench, samples)
    with pytest.raises(LayoutError) as exc:
        scan_layout("customconcept101", samples, dataset=bench)
    msg = str(exc.value)
    assert named in msg and why in msg and "\n" not in msg


def test_item08_upper_case_extensions_and_os_files(tree):
    """Issue 22 item 8 in this layout: ``.PNG`` / ``.Jpg`` read in any case, OS files skipped."""
    bench, samples, _ = tree
    (samples / "pet_cat1/samples/2.png").rename(samples / "pet_cat1/samples/2.PNG")
    (bench / "pet_cat1/00.jpg").rename(bench / "pet_cat1/00.Jpg")
    for folder in (samples / "pet_cat1/samples", bench / "pet_cat1", samples):
        (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
        (folder / "desktop.ini").write_text("[.ShellClassInfo]\n")
    scan = scan_layout("customconcept101", samples, dataset=bench)
    files = [r.file for r in scan.records if r.leaf == "pet/pet_cat1"]
    assert files == ["pet_cat1/samples/0.png", "pet_cat1/samples/1.png", "pet_cat1/samples/2.PNG"]
    assert scan.records[2].prompt == PROMPTS["pet_cat1"][2]
    refs = [im.path.name for im in scan.dataset.leaves["pet/pet_cat1"].images]
    assert refs == ["00.Jpg", "01.jpg", "02.jpg"]
