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
    return subprocess.run([sys.executable, "-m", "t2ibench", *args], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip


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
