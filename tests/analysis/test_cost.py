"""The cost section: train time, peak memory, parameters and file size read from the run folders;
in a sweep the fidelity-vs-preservation-vs-size Pareto front."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from t2ibench.analysis import analyze
from t2ibench.analysis.cost import checkpoint_size, cost_table, find_runs, pareto_configs
from t2ibench.analysis.synthetic import synthetic_results
from t2ibench.pipeline.peak_memory import PeakMemory
from t2ibench.results import write_results

CONFIGS = {"exp-1-lora": 4, "exp-5-lora32a16": 32, "exp-11-loha": 8, "exp-21-lokr": 2}


def _adapter(path, dim, modules=3, width=64):
    tensors = {}
    for i in range(modules):
        tensors[f"lora_unet_m{i}.lora_down.weight"] = torch.zeros(dim, width, dtype=torch.float16)
        tensors[f"lora_unet_m{i}.lora_up.weight"] = torch.zeros(width, dim, dtype=torch.float16)
        tensors[f"lora_unet_m{i}.alpha"] = torch.tensor(1.0, dtype=torch.float16)
    save_file(tensors, str(path))
    return modules * 2 * dim * width


def make_sweep(root, segments_of=lambda run: [{"seconds": 10.0, "epochs_trained": 2}]):
    """A sweep's layout: <root>/results (checkpoints "<run>/<ckpt>") and <root>/runs/<run>/ with
    run.json and real safetensors checkpoints of different sizes."""
    df = synthetic_results(seeds=("a", "b"), epochs=(10, 30))
    df = df[df["config"].isin(CONFIGS)].copy()
    base = df[(df["config"] == "exp-1-lora") & (df["seed"] == "a") & (df["epoch"] == 10)]
    base = base.assign(checkpoint="base", config="base", seed="", epoch=0,
                       value=base["value"] * 0.9)  # fmt: skip
    for c in ("algorithm", "preset", "lr", "dim", "alpha", "factor", "caption"):
        base[c] = None
    df["run"] = df["config"] + "-" + df["seed"]
    df["checkpoint"] = df["run"] + "/" + df["config"] + "-e" + df["epoch"].map("{:06d}".format)
    expected = {}
    for run, g in df.groupby("run"):
        d = root / "runs" / run
        (d / "checkpoints").mkdir(parents=True)
        dim = CONFIGS[g["config"].iloc[0]]
        for ep in (10, 30):
            expected[run] = _adapter(d / "checkpoints" / f"x-e{ep:06d}.safetensors", dim)
        # The resume state (optimizer moments too) is no checkpoint.
        _adapter(d / "checkpoints" / "x-state-e000030.safetensors", 3 * dim)
        record = {"device": "cpu", "timings": {"train": 99.0, "generate": 5.0, "evaluate": 3.0},
                  "cost": {"train_segments": [
                      {**s, "peak_rss_bytes": 2**30 + dim, "rss_scope": "block",
                       "peak_cuda_bytes": None} for s in segments_of(run)]}}  # fmt: skip
        (d / "run.json").write_text(json.dumps(record))
    write_results(pd.concat([df.drop(columns="run"), base], ignore_index=True), root / "results")
    return expected


# In a fresh process: a worker that has just held the full-size models sits at several GB of RSS,
# where whether a 200 MB block's peak shows depends on what the allocator kept.
_PEAK_SCRIPT = """
import json
import numpy as np
from t2ibench.pipeline.peak_memory import PeakMemory

big = 200 * 2**20
with PeakMemory("cpu") as m:
    a = np.ones(big // 8)
    a[::4096] = 2.0  # touch every page
    del a
with PeakMemory("cpu") as small:
    pass
print(json.dumps({"big": m.record(), "small": small.record(), "scope": m.rss_scope}))
"""


def test_peak_memory_measures_the_block():
    proc = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT], capture_output=True, text=True,
                          check=True, timeout=120)  # fmt: skip
    out = json.loads(proc.stdout)
    big = 200 * 2**20
    m, small = out["big"], out["small"]
    assert m["peak_rss_bytes"] >= big and m["seconds"] > 0
    if out["scope"] == "block":  # Linux: the peak was reset, the second block did not inherit it
        assert small["peak_rss_bytes"] < m["peak_rss_bytes"] - big // 2
    assert small["peak_cuda_bytes"] is None


def test_checkpoint_size_counts_trainable_elements(tmp_path):
    p = tmp_path / "a-e000001.safetensors"
    n = _adapter(p, dim=4, modules=5, width=32)
    params, size = checkpoint_size(p)
    assert params == n == 5 * 2 * 4 * 32  # the alpha scalars are not parameters
    assert size == p.stat().st_size


def test_sweep_cost_and_pareto(tmp_path):
    expected = make_sweep(tmp_path, lambda run: (
        [{"seconds": 4.0, "epochs_trained": 1}, {"seconds": 6.0, "epochs_trained": 1}]
        if run == "exp-1-lora-a" else [{"seconds": 10.0, "epochs_trained": 2}]))  # fmt: skip
    assert sorted(find_runs(tmp_path / "results")) == sorted(expected)
    from t2ibench.results import read_results

    table = cost_table(tmp_path / "results", read_results(tmp_path / "results"))
    assert len(table) == 8
    row = table.set_index("run").loc["exp-1-lora-a"]
    assert row["train_s"] == 10.0 and row["train_segments"] == 2 and row["s_per_epoch"] == 5.0
    assert row["config"] == "exp-1-lora" and row["seed"] == "a" and row["generate_s"] == 5.0
    assert table.set_index("run")["params"].to_dict() == expected
    res = analyze(tmp_path / "results", tmp_path / "report", shap=False)
    html = (tmp_path / "report" / "report.html").read_text()
    assert "<h2>Cost</h2>" in html and "pareto_cost.png" in html
    assert (tmp_path / "report" / "cost.csv").is_file() and res.files
    # The front recomputed by brute force from the table the report shows.
    from t2ibench.analysis.cost import pareto_points
    from t2ibench.analysis.raw import normalise_base, raw_table
    from t2ibench.analysis.scores import metric_directions

    df = normalise_base(read_results(tmp_path / "results"))
    dirs = metric_directions(df)
    pts = pareto_points(raw_table(df, None, dirs), dirs, table)
    assert len(pts) == 4
    for name, r in pts.iterrows():
        others = pts.drop(index=name)
        beaten = ((others["fidelity"] >= r["fidelity"]) & (others["preservation"]
                  >= r["preservation"]) & (others["file_mib"] <= r["file_mib"]) & (
                  (others["fidelity"] > r["fidelity"]) | (others["preservation"]
                  > r["preservation"]) | (others["file_mib"] < r["file_mib"]))).any()  # fmt: skip
        assert r["pareto"] == (not beaten)


def test_pareto_configs_small_example():
    pts = pd.DataFrame({"f": [1.0, 0.5, 0.4, 0.9], "p": [0.2, 0.8, 0.7, 0.2], "s": [1, 1, 2, 0.5]},
                       index=list("abcd"))  # fmt: skip
    got = pareto_configs(pts, ["f", "p"], ["s"])
    # c is beaten by b (better on all three); a, b, d each win somewhere.
    assert got.to_dict() == {"a": True, "b": True, "c": False, "d": True}


def test_no_run_folders_says_so(tmp_path):
    df = synthetic_results(seeds=("a",), epochs=(10,))
    write_results(df[df["config"] == "exp-1-lora"], tmp_path / "results")
    analyze(tmp_path / "results", tmp_path / "report", shap=False, plots=False)
    html = (tmp_path / "report" / "report.html").read_text()
    assert "<h2>Cost</h2>" in html and "No run folders next to the results" in html


def test_runs_outside_the_folder_are_not_followed(tmp_path):
    make_sweep(tmp_path)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "run.json").write_text("{}")
    (tmp_path / "runs" / "link").symlink_to(outside)
    assert "link" not in find_runs(tmp_path / "results")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_peak_memory_on_cuda():
    with PeakMemory("cuda") as m:
        x = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")
        del x
    assert m.peak_cuda_bytes >= 256 * 2**20
    with PeakMemory("cuda") as small:
        pass
    assert small.peak_cuda_bytes < 256 * 2**20  # the peak was reset
