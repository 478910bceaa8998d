"""A sweep's report gathers the anchors of its runs: checkpoints named ``<run>/<checkpoint>`` as in
the joint results, the shared base model and training images and the shared ceiling kept once, and
the image grids one column per config."""

import json

import pandas as pd
from PIL import Image

from t2ibench.analysis.anchors import read_anchors
from t2ibench.analysis.images import seed_paired_grids


def _run(root, run, images, base=None):
    d = root / "runs" / run
    a = d / "results" / "anchors"
    a.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"config": {"base": base}} if base else {}))
    ceiling = pd.DataFrame({"leaf": ["x/a"], "category": ["x"], "metric": ["image_similarity"],
                            "encoder": ["dinov2-l"], "resize": ["letterbox"], "value": [0.7],
                            "n_images": [3]})  # fmt: skip
    ceiling.to_parquet(a / "ceiling.parquet")
    rows, copies = [], []
    rows.append(dict(checkpoint="training", leaf="x/a", prompt_type="", index=0, seed=-1,
                     prompt="", path=str(images["training"])))  # fmt: skip
    for ck in ("base", "lora-e000001", "lora-e000002"):
        path = images.get(f"{run}/base", images["base"]) if ck == "base" else images[f"{run}/{ck}"]
        rows.append(dict(checkpoint=ck, leaf="x/a", prompt_type="train", index=0, seed=1000,
                         prompt="a [V]", path=str(path)))  # fmt: skip
        copies.append(dict(checkpoint=ck, leaf="x/a", prompt_type="train", prompt="a [V]",
                           seed=1000, image=str(path), nearest_leaf="x/a",
                           nearest_image=str(images["training"]), similarity=0.5,
                           copy_ceiling=0.9, above_ceiling=False, encoder="dinov2-l"))  # fmt: skip
    pd.DataFrame(rows).to_parquet(a / "images.parquet")
    pd.DataFrame(copies).to_parquet(a / "copies.parquet")
    (a / "sources.json").write_text(json.dumps({"dataset": "ds"}))


def test_sweep_anchors_joined_from_runs(tmp_path):
    images = {}
    for i, name in enumerate(["training", "base", "r1/lora-e000001", "r1/lora-e000002",
                              "r2/lora-e000001", "r2/lora-e000002"]):  # fmt: skip
        p = tmp_path / "img" / f"{i}.png"
        p.parent.mkdir(exist_ok=True)
        Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(p)
        images[name] = p
    for run in ("r1", "r2"):
        _run(tmp_path, run, images)
    (tmp_path / "results").mkdir()
    got = read_anchors(tmp_path / "results")
    assert len(got["ceiling"]) == 1  # the same dataset's ceiling, once
    assert sorted(got["copies"]["checkpoint"]) == [
        "base", "r1/lora-e000001", "r1/lora-e000002", "r2/lora-e000001", "r2/lora-e000002"]  # fmt: skip
    idx = got["images"]
    assert (idx["checkpoint"] == "training").sum() == 1 and (idx["checkpoint"] == "base").sum() == 1
    assert set(got["sources"]) == {"r1", "r2"}
    configs = {"r1/lora-e000001": "c1", "r1/lora-e000002": "c1", "r2/lora-e000001": "c2",
               "r2/lora-e000002": "c2", "base": "base"}  # fmt: skip
    ((header, rows),) = seed_paired_grids(idx, configs).values()
    assert header == ["training image", "base", "c1 · e2", "c2 · e2"]
    assert len(rows) == 1 and all(rows[0][1])
    # Without the runs folder: no anchors, as before.
    (tmp_path / "elsewhere" / "results").mkdir(parents=True)
    assert read_anchors(tmp_path / "elsewhere" / "results")["images"].empty


def test_sweep_across_bases_shows_each_base_model(tmp_path):
    """Runs on two bases: each base's own model is its own image column (``base (<base>)``), the
    same prompt and seed, and its own row in the copy table; runs of one base share one."""
    images = {}
    names = ["training", "base", "r1/base", "r2/base", "r3/base", "r1/lora-e000001",
             "r1/lora-e000002", "r2/lora-e000001", "r2/lora-e000002", "r3/lora-e000001",
             "r3/lora-e000002"]  # fmt: skip
    for i, name in enumerate(names):
        p = tmp_path / "img" / f"{i}.png"
        p.parent.mkdir(exist_ok=True)
        Image.new("RGB", (16, 16), (20 * i, 0, 0)).save(p)
        images[name] = p
    images["r3/base"] = images["r1/base"]  # r1 and r3 share their base model's images
    for run, base in (("r1", "sdxl"), ("r2", "flux"), ("r3", "sdxl")):
        _run(tmp_path, run, images, base=base)
    (tmp_path / "results").mkdir()
    got = read_anchors(tmp_path / "results")
    idx = got["images"]
    bases = idx[idx["checkpoint"].str.startswith("base")]
    assert sorted(bases["checkpoint"]) == ["base (flux)", "base (sdxl)"]
    assert set(got["copies"]["checkpoint"]) >= {"base (flux)", "base (sdxl)"}
    configs = {f"r{i}/lora-e00000{e}": f"c{i}" for i in (1, 2, 3) for e in (1, 2)}
    ((header, rows),) = seed_paired_grids(idx, configs).values()
    assert header == ["training image", "base (flux)", "base (sdxl)", "c1 · e2", "c2 · e2",
                      "c3 · e2"]  # fmt: skip
    # every cell drawn: each base model's image is its own (different pixels, different URIs)
    ((_, cells),) = rows
    assert all(cells) and cells[1] != cells[2]
