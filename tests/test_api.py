"""``t2ibench.evaluate`` from a notebook (paths or PIL images → tidy DataFrame, no diffusers) and
``t2ibench evaluate --metric-profile`` (the profile's encoders, scale and a metric_profile column)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import t2ibench
from t2ibench.data import load_dataset, make_demo_dataset
from t2ibench.encoders import create_encoder
from t2ibench.errors import ConfigError, T2IBenchError
from t2ibench.metric_profiles import (
    get_metric_profile,
    list_metric_profiles,
    parse_metric_profile,
)
from t2ibench.metrics import drift, image_similarity
from t2ibench.pipeline.manifest import ManifestRecord, write_manifest
from t2ibench.testing import run_cli


def noise(w, h, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_paths_and_pil_images_give_the_same_tidy_frame(tmp_path):
    ims = [noise(70, 50, i) for i in range(4)]
    paths = []
    for i, im in enumerate(ims):
        paths.append(tmp_path / f"{i}.png")
        im.save(paths[-1])
    a = t2ibench.evaluate(ims[:2], references=ims[2:], prompts=["a sks dog", "a sks cat"],
                          metric_profile="dreambooth", identifier="sks", tiny=True)  # fmt: skip
    b = t2ibench.evaluate([str(p) for p in paths[:2]], references=paths[2:],
                          prompts=["a sks dog", "a sks cat"], metric_profile="dreambooth",
                          identifier="sks", tiny=True)  # fmt: skip
    pd.testing.assert_frame_equal(a, b)
    assert list(a["measure"]) == ["DINO", "CLIP-I", "CLIP-T"]
    assert set(a["metric_profile"]) == {"dreambooth"}
    assert list(a["n_pairs"]) == [4, 4, 2] and set(a["resize"]) == {"center-crop"}


def test_errors_are_one_line(tmp_path):
    ims = [noise(40, 40, i) for i in range(2)]
    with pytest.raises(T2IBenchError, match="needs references"):
        t2ibench.evaluate(ims, prompts=["a", "b"], metric_profile="dreambooth", tiny=True)
    with pytest.raises(T2IBenchError, match="2 prompts for 1 images"):
        t2ibench.evaluate(ims[:1], ims, prompts=["a", "b"], metric_profile="dreambooth", tiny=True)
    with pytest.raises(T2IBenchError, match="one reference per image"):
        t2ibench.evaluate(ims, ims[:1], ["a", "b"], metric_profile="dreambench-pp", tiny=True)
    with pytest.raises(T2IBenchError, match="cannot read image"):
        t2ibench.evaluate([tmp_path / "missing.png"], ims, metric_profile="dreambooth", tiny=True)
    with pytest.raises(T2IBenchError, match="dreambooth"):
        t2ibench.evaluate(ims, ims, metric_profile="dreambooht", tiny=True)


def test_metric_profile_registry_and_file_errors(tmp_path):
    assert {"lycoris2024", "dreambooth", "dreambench-pp", "peft-drift"} <= set(
        list_metric_profiles()
    )
    p = get_metric_profile("dreambench-pp")
    assert {m.scale for m in p.measures} == {100.0} and p.measures[0].encoder == "dino-vits8"
    with pytest.raises(ConfigError, match="pairing 'some' is not one of"):
        parse_metric_profile({"name": "x", "measure": [{"label": "a", "metric": "m",
                              "encoder": "e", "pairing": "some"}]}, "x.toml")  # fmt: skip
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name = "bad"\n[[measure]]\nlabel = "a"\nmetric = "m"\nencoder = "e"\nscal = 1\n'
    )
    with pytest.raises(ConfigError, match=r"bad.toml: measure 1: unknown key\(s\) \['scal'\]"):
        get_metric_profile(str(bad))


def test_no_diffusers_imported():
    code = (
        "import sys, numpy as np; from PIL import Image; import t2ibench;"
        "ims=[Image.fromarray(np.full((40,40,3),i*60,np.uint8)) for i in range(4)];"
        "df=t2ibench.evaluate(ims[:2], ims[2:], ['a sks dog','a dog'], metric_profile='dreambooth',"
        " identifier='sks', tiny=True);"
        "assert len(df)==3;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('diffusers','peft')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


# --- the CLI -----------------------------------------------------------------------------------
def cli(*args):
    return run_cli(*args)  # the entry point in this process (t2ibench/testing.py)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    ds_root = make_demo_dataset(root / "demo")
    ds = load_dataset(ds_root)
    leaf = ds.leaves["characters/kiro/vest"]
    gen, base = root / "gen", root / "base"
    recs, base_recs = [], []
    for k in range(3):
        rel = f"{leaf.key}/train/{k:04d}-s{k}.png"
        for folder, img, out, ckpt in ((gen, noise(72, 56, k), recs, "ext"),
                                       (base, noise(72, 56, 10 + k), base_recs, "base")):  # fmt: skip
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            img.save(folder / rel)
            out.append(ManifestRecord(ckpt, leaf.key, "train", leaf.images[k].caption, k, rel, k))
    write_manifest(gen / "manifest.jsonl", recs)
    write_manifest(base / "manifest.jsonl", base_recs)
    return ds_root, ds, leaf, gen, base, recs, base_recs, root


def test_cli_metric_profile_rows_and_values(folders):
    ds_root, ds, leaf, gen, base, recs, base_recs, root = folders
    out = root / "out-db"
    r = cli("evaluate", str(gen), "--dataset", str(ds_root), "--out", str(out),
            "--metric-profile", "dreambooth", "--encoders", "dino-vits16@tiny,clip-b32@tiny")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    df = pd.read_parquet(out / "results.parquet") if (out / "results.parquet").is_file() else (
        pd.read_csv(out / "results.csv"))  # fmt: skip
    assert set(df["metric_profile"]) == {"dreambooth"}
    val = df.set_index(["measure"])["value"]
    assert set(val.index) == {"DINO", "CLIP-I", "CLIP-T"}
    from t2ibench.metric_profiles import get_metric_profile
    from t2ibench.metric_profiles.preprocess import set_measure_preprocess

    measure = get_metric_profile("dreambooth").measures[0]  # DINO: 256 → crop 224
    dino = set_measure_preprocess(create_encoder("dino-vits16", tiny=True, resize="center-crop"),
                                  measure)  # fmt: skip
    g = dino.encode_images([Image.open(gen / x.file) for x in recs])
    ref = dino.encode_images([Image.open(im.path) for im in leaf.images])
    assert val["DINO"] == pytest.approx(image_similarity(g, ref), abs=1e-6)
    # The same through the API on the same files.
    api = t2ibench.evaluate([gen / x.file for x in recs], [im.path for im in leaf.images],
                            metric_profile="dreambooth", tiny=True,
                            prompts=[x.prompt for x in recs])  # fmt: skip
    assert api.set_index("measure")["value"]["DINO"] == pytest.approx(val["DINO"], abs=1e-6)


def test_cli_peft_drift_and_refusals(folders):
    ds_root, ds, leaf, gen, base, recs, base_recs, root = folders
    out = root / "out-drift"
    r = cli("evaluate", str(gen), "--dataset", str(ds_root), "--out", str(out),
            "--base-images", str(base), "--metric-profile", "peft-drift",
            "--encoders", "dinov2-b@tiny")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    df = pd.read_parquet(out / "results.parquet") if (out / "results.parquet").is_file() else (
        pd.read_csv(out / "results.csv"))  # fmt: skip
    assert list(df["measure"]) == ["drift"] and list(df["metric_profile"]) == ["peft-drift"]
    from t2ibench.metric_profiles import get_metric_profile
    from t2ibench.metric_profiles.preprocess import set_measure_preprocess

    measure = get_metric_profile("peft-drift").measures[0]  # PEFT's 256 → crop 224
    enc = set_measure_preprocess(create_encoder("dinov2-b", tiny=True, resize="center-crop"),
                                 measure)  # fmt: skip
    g = enc.encode_images([Image.open(gen / x.file) for x in recs])
    b = enc.encode_images([Image.open(base / x.file) for x in base_recs])
    # PEFT's drift: (1 − mean cos)/2 = half of mean(1 − cos)
    assert df["value"].iloc[0] == pytest.approx(0.5 * drift(g, b), abs=1e-6)
    r = cli("evaluate", str(gen), "--dataset", str(ds_root), "--out", str(root / "x"),
            "--metric-profile", "dreambench-pp")  # fmt: skip
    assert r.returncode != 0
    assert "pairs each image with its own reference" in r.stderr + r.stdout
    assert "Traceback" not in r.stderr


def test_entry_point_may_name_a_toml_file(tmp_path, monkeypatch):
    from importlib.metadata import EntryPoint

    from t2ibench import metric_profiles
    from t2ibench.registry import Registry

    f = tmp_path / "mine.toml"
    f.write_text(
        'name = "mine"\n[[measure]]\nlabel = "DINO"\nmetric = "image_similarity"\n'
        'encoder = "dino-vits16"\nscale = 100.0\n'
    )
    module = tmp_path / "mine_profiles.py"
    module.write_text(f"PATH = {str(f)!r}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("metric profile", entry_point_group="x")
    reg._items.update(metric_profiles.METRIC_PROFILES._items)
    ep = EntryPoint("mine", "mine_profiles:PATH", "t2ibench.metric_profiles")
    monkeypatch.setattr("t2ibench.registry.entry_points", lambda group: [ep])
    monkeypatch.setattr(metric_profiles, "METRIC_PROFILES", reg)
    profile = metric_profiles.get_metric_profile("mine")
    assert profile.measures[0].scale == 100.0 and profile.path == f


# --- issue 22: the API and the CLI decode, clean and compute alike ------------------------------
def phone_like_files(folder, seed=0):
    """Files as phones and editors write them: an EXIF-rotated JPEG (stored sideways, orientation
    tag 6), an RGBA PNG whose transparent pixels hold a colour, a grayscale JPEG, a 16-bit PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    Image.fromarray(rgb).save(folder / "rotated.jpg", exif=exif, quality=95)
    rgba = rng.integers(0, 256, (64, 56, 4), dtype=np.uint8)
    rgba[:, :28, 3] = 0  # left half transparent, stored as random colours
    Image.fromarray(rgba).save(folder / "transparent.png")
    Image.fromarray(rng.integers(0, 256, (60, 60), dtype=np.uint8)).save(folder / "gray.jpg")
    sixteen = (rng.integers(0, 256, (52, 70)).astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(sixteen).save(folder / "sixteen.png")  # mode I;16
    return sorted(folder.iterdir())


def test_item02_paths_decode_as_the_cli(tmp_path):
    """Issue 22 item 2: paths given to t2ibench.evaluate() are read by the one decoder (EXIF
    orientation applied, transparency on white), as `t2ibench evaluate` reads them."""
    from t2ibench.images import open_image

    files = [f for f in phone_like_files(tmp_path) if f.name in ("rotated.jpg", "transparent.png")]
    for f in files:  # the naive reading really differs
        with Image.open(f) as im:
            naive = im.convert("RGB")
        assert naive.size != open_image(f).size or naive.tobytes() != open_image(f).tobytes()
    refs = [noise(64, 64, 7), noise(50, 70, 8)]
    kw = dict(references=refs, prompts=["a sks dog", "a sks cat"], metric_profile="dreambooth",
              tiny=True)  # fmt: skip
    by_path = t2ibench.evaluate(files, **kw)
    decoded = t2ibench.evaluate([open_image(f) for f in files], **kw)
    pd.testing.assert_frame_equal(by_path, decoded)


def test_item32_sixteen_bit_png_paths_are_not_white(tmp_path):
    """Issue 22 item 32: a 16-bit PNG given as a path scores as its 8-bit picture."""
    (sixteen,) = [f for f in phone_like_files(tmp_path) if f.name == "sixteen.png"]
    with Image.open(sixteen) as im:
        eight = Image.fromarray((np.asarray(im).astype(np.float64) / 257).round().astype(np.uint8))
    kw = dict(references=[noise(64, 64, 7)], metric_profile="dreambooth", tiny=True,
              prompts=["a dog"])  # fmt: skip
    a = t2ibench.evaluate([sixteen], **kw).set_index("measure")["value"]
    b = t2ibench.evaluate([eight.convert("RGB")], **kw).set_index("measure")["value"]
    pd.testing.assert_series_equal(a, b)


def test_item03_api_profiles_remove_the_identifier_by_default():
    """Issue 22 item 3: as the CLI, dreambooth removes "sks" and customconcept101 "<new1>"
    without identifier=...; identifier="" keeps the prompt as written."""
    ims, refs = [noise(60, 60, i) for i in range(2)], [noise(60, 60, 5)]
    for profile, token in (("dreambooth", "sks"), ("customconcept101", "<new1>")):
        prompts = [f"a {token} dog in the snow", f"a {token} dog on a beach"]
        kw = dict(references=refs, prompts=prompts, metric_profile=profile, tiny=True)
        default = t2ibench.evaluate(ims, **kw).set_index("measure")["value"]
        given = t2ibench.evaluate(ims, identifier=token, **kw).set_index("measure")["value"]
        kept = t2ibench.evaluate(ims, identifier="", **kw).set_index("measure")["value"]
        assert default["CLIP-T"] == given["CLIP-T"], profile
        assert default["CLIP-T"] != kept["CLIP-T"], profile


def test_item05_a_folder_or_one_path_or_one_clear_line(tmp_path):
    """Issue 22 item 5: a folder Path gave a bare TypeError and one path string was read character
    by character; both are accepted (hidden and OS files skipped, any extension case), anything
    else is one line."""
    ims = tmp_path / "ims"
    ims.mkdir()
    for i, name in enumerate(["b.PNG", "a.JPG", "c.png"]):
        noise(40, 40, i).convert("RGB").save(ims / name, format="PNG" if "png" in name.lower()
                                              else "JPEG")  # fmt: skip
    (ims / ".DS_Store").write_bytes(b"\0")
    (ims / "Thumbs.db").write_bytes(b"\0")
    dino_only = parse_metric_profile(
        {"name": "dino-only", "measure": [{"label": "DINO", "metric": "image_similarity",
         "encoder": "dino-vits16", "resize": "center-crop", "size": 224}]}, "x")  # fmt: skip
    one = dict(references=[noise(40, 40, 9)], metric_profile=dino_only, tiny=True)
    by_folder = t2ibench.evaluate(ims, **one)
    by_list = t2ibench.evaluate(sorted(ims.glob("[abc].*")), **one)
    pd.testing.assert_frame_equal(by_folder, by_list)
    assert by_folder["n_images"].item() == 3
    single = t2ibench.evaluate(str(ims / "a.JPG"), **one)
    assert single["n_images"].item() == 1
    with pytest.raises(T2IBenchError, match="images: expected a folder, an image path"):
        t2ibench.evaluate(42, **one)
    (ims / "notes.txt").write_text("x")
    with pytest.raises(T2IBenchError, match="notes.txt is not an image file"):
        t2ibench.evaluate(ims, **one)


def test_item17_profile_api_normalises_as_the_metrics(monkeypatch):
    """Issue 22 item 17: features of norm 1e-13 have the cosines of the same features at norm 1
    (F.normalize's epsilon made them 0.1 of it); an all-zero feature row is refused naming the
    measure instead of scoring cosine 0."""
    from t2ibench.encoders.base import Encoder

    ims, refs = [noise(50, 50, i) for i in range(2)], [noise(50, 50, 3), noise(50, 50, 4)]
    profile = parse_metric_profile({"name": "dino-only", "measure": [{"label": "DINO",
        "metric": "image_similarity", "encoder": "dino-vits16", "resize": "center-crop",
        "size": 224}]}, "x")  # fmt: skip
    plain = t2ibench.evaluate(ims, refs, metric_profile=profile, tiny=True)["value"].item()
    encode = Encoder.encode_images
    monkeypatch.setattr(Encoder, "encode_images", lambda self, x: encode(self, x) * 1e-13)
    tiny_norm = t2ibench.evaluate(ims, refs, metric_profile=profile, tiny=True)["value"].item()
    assert tiny_norm == pytest.approx(plain, rel=1e-9)
    monkeypatch.setattr(Encoder, "encode_images", lambda self, x: encode(self, x) * 0.0)
    with pytest.raises(T2IBenchError, match="measure DINO .*row 0 is all zeros"):
        t2ibench.evaluate(ims, refs, metric_profile=profile, tiny=True)


def test_item33_cli_honours_a_base_paired_measure(folders, tmp_path):
    """Issue 22 item 33: a profile measure paired with the base image of the same prompt and seed
    was computed as all pairs with the references by `t2ibench evaluate`; now image by image,
    and the API gives the same value."""
    ds_root, ds, leaf, gen, base, recs, base_recs, root = folders
    toml = tmp_path / "bp.toml"
    toml.write_text('name = "bp"\n[[measure]]\nlabel = "B"\nmetric = "image_similarity"\n'
                    'encoder = "dino-vits16"\nresize = "center-crop"\nsize = 224\n'
                    'pairing = "base-paired"\n')  # fmt: skip
    out = tmp_path / "out"
    r = cli("evaluate", str(gen), "--dataset", str(ds_root), "--out", str(out), "--base-images",
            str(base), "--metric-profile", str(toml), "--encoders", "dino-vits16@tiny")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    df = pd.read_parquet(out / "results.parquet") if (out / "results.parquet").is_file() else (
        pd.read_csv(out / "results.csv"))  # fmt: skip
    enc = create_encoder("dino-vits16", tiny=True, resize="center-crop")
    g = enc.encode_images([Image.open(gen / x.file).convert("RGB") for x in recs])
    b = enc.encode_images([Image.open(base / x.file).convert("RGB") for x in base_recs])
    want = np.mean([image_similarity(g[i : i + 1], b[i : i + 1]) for i in range(len(recs))])
    assert df["value"].item() == pytest.approx(want, abs=1e-6)
    api = t2ibench.evaluate([gen / x.file for x in recs], metric_profile=str(toml), tiny=True,
                            base_images=[base / x.file for x in base_recs])  # fmt: skip
    assert api["value"].item() == pytest.approx(df["value"].item(), abs=1e-9)
    assert api["n_pairs"].item() == len(recs)


def test_item04_api_and_cli_give_the_same_rows_on_a_dreambooth_folder(tmp_path):
    """Issue 22 item 4: the same DreamBooth-layout folder — references and generated images as
    phones and editors write them — through `t2ibench evaluate --layout dreambooth` and through
    t2ibench.evaluate(): the same rows, value for value, Vendi included (the API's lycoris2024
    dropped it and every metric it did not name)."""
    data, images = tmp_path / "dreambooth", tmp_path / "images"
    data.mkdir()
    (data / "prompts_and_classes.txt").write_text(
        "subject_name,class\ndog,dog\n\nObject Prompts\n"
        "'a {0} {1} in the jungle'.format(unique_token, class_token),\n\n"
        "Live Subject Prompts\n"
        "'a {0} {1} in the jungle'.format(unique_token, class_token),\n"
        "'a {0} {1} in the snow'.format(unique_token, class_token),\n"
    )
    refs = phone_like_files(data / "dog", seed=1)
    (data / "dog" / "gray.jpg").rename(data / "dog" / "GRAY.JPG")  # cameras write upper case
    (data / "dog" / "Thumbs.db").write_bytes(bytes(64))  # Windows leaves these beside photos
    made = phone_like_files(tmp_path / "made", seed=2)
    (images / "dog").mkdir(parents=True)
    for (p, k), src in zip([(0, 0), (0, 1), (1, 0), (1, 1)], made, strict=True):
        with Image.open(src) as im:
            im.save(images / "dog" / f"{p}_{k}.png")  # PNG keeps RGBA, L and I;16 as they are
    out = tmp_path / "out"
    r = cli("evaluate", str(images), "--layout", "dreambooth", "--dataset", str(data), "--out",
            str(out), "--encoders", "dinov2-l@tiny,clip-l14@tiny,convnextv2-l@tiny")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    cli_rows = pd.read_parquet(out / "results.parquet") if (out / "results.parquet").is_file() else (
        pd.read_csv(out / "results.csv"))  # fmt: skip
    prompts = ["a sks dog in the jungle"] * 2 + ["a sks dog in the snow"] * 2
    gen = sorted((images / "dog").iterdir())
    api_rows = t2ibench.evaluate(gen, data / "dog", prompts, identifier="sks", tiny=True)
    key = ["metric", "encoder", "resize"]
    a = cli_rows.set_index(key)[["value", "n_images"]].sort_index()
    b = api_rows.set_index(key)[["value", "n_images"]].sort_index()
    assert {"vendi", "image_similarity", "text_alignment", "kid"} <= set(
        b.index.get_level_values(0)
    )
    assert list(a.index) == list(b.index)
    assert a["value"].tolist() == b["value"].tolist()  # value for value, not approximately
    assert a["n_images"].tolist() == b["n_images"].tolist()
    assert len(refs) == 4
    # ... and what `evaluate` wrote, `analyze` reports: a page that opens in chromium cleanly.
    from tests.analysis.test_report_browser import CHROMIUM, probe

    r = cli("analyze", str(out), "--out", str(tmp_path / "report"))
    assert r.returncode == 0, r.stderr[-3000:]
    if CHROMIUM is None:
        pytest.skip("chromium not installed (.ci/run installs it)")
    seen = probe(tmp_path / "report" / "report.html", tmp_path)
    assert seen["images"] >= 1 and seen["undecoded"] == [] and seen["errors"] == [], seen
