"""A sweep's report gathers the anchors of its runs: checkpoints named ``<run>/<checkpoint>`` as in
the joint results, the shared base model and training images and the shared ceiling kept once, and
the image grids one column per config."""

import json

import pandas as pd
from PIL import Image

from t2ibench.analysis.anchors import read_anchors
from t2ibench.analysis.images import seed_paired_grids


def _run(root, run, images):
    d = root / "runs" / run
    a = d / "results" / "anchors"
    a.mkdir(parents=True)
    (d / "run.json").write_text("{}")
    ceiling = pd.DataFrame({"leaf": ["x/a"], "category": ["x"], "metric": ["image_similarity"],
                            "encoder": ["dinov2-l"], "resize": ["letterbox"], "value": [0.7],
                            "n_images": [3]})  # fmt: skip
    ceiling.to_parquet(a / "ceiling.parquet")
    rows, copies = [], []
    rows.append(dict(checkpoint="training", leaf="x/a", prompt_type="", index=0, seed=-1,
                     prompt="", path=str(images["training"])))  # fmt: skip
    for ck in ("base", "lora-e000001", "lora-e000002"):
        path = images["base"] if ck == "base" else images[f"{run}/{ck}"]
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
