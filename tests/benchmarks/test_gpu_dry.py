"""``benchmarks/gpu.sh --dry``: the GPU benchmark end to end on CPU at tiny size (issue 14)."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from t2ibench.pipeline.plan import measured_throughput

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_benchmark_dry_run(tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--dry", "--results", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (md,) = out.glob("gpu_*_dry.md")
    (js,) = out.glob("gpu_*_dry.json")
    text = md.read_text()
    assert "dry run" in text
    data = json.loads(js.read_text())
    assert data["dry"] is True
    methods = [r["method"] for r in data["generation"]]
    assert methods[:2] == ["plain diffusers loop (base)", "generate_images (base)"]
    assert {"generate_images, lora applied", "generate_images, loha applied"} <= set(methods)
    assert "generate_images, lora merged" in methods
    # each generation option against the plain loop (issue 20 item 5); compile only on a GPU
    options = {
        "option: attention=sdpa",
        "option: channels_last",
        "option: dtype=fp32 (reference)",
        "option: fuse_adapter, lora",
        "option: fuse_adapter, loha",
        "options together (sdpa, channels_last, fuse_adapter), lora",
    }
    assert options <= set(methods), methods
    assert {r["method"]: r.get("skipped") for r in data["generation"]}["option: compile"]
    for method in options:
        assert f"| {method} |" in text
    assert not any("error" in r for r in data["generation"]), data["generation"]
    assert all(r["images_per_s"] > 0 for r in data["generation"] if "skipped" not in r)
    assert [r["encoder"] for r in data["encoders"]] == [
        "dinov2-l",
        "clip-l14",
        "convnextv2-l",
        "vgg19",
    ]
    # Reading the cache is faster than encoding.
    assert all(r["warm_images_per_s"] > r["cold_images_per_s"] for r in data["encoders"])
    impl = {(r["algorithm"], r["implementation"]) for r in data["training"]}
    assert impl == {(a, k) for a in ("lora", "loha", "lokr") for k in ("t2ibench", "peft")}
    # A dry table never feeds the GPU-hour projection.
    assert measured_throughput(out) is None
    # SDXL and FLUX.1 rows (issue 19 item 5): generation against the plain pipeline call, and
    # t2ibench's LoRA / PEFT-DoRA training steps against plain PEFT, with finite numbers
    assert list(data["bases"]) == ["sdxl", "flux"]
    for base, title in (("sdxl", "SDXL 1.0"), ("flux", "FLUX.1 [dev]")):
        rows = data["bases"][base]
        assert f"## {title}: tiny" in text
        gen = {r["method"]: r for r in rows["generation"]}
        assert list(gen) == ["plain diffusers pipeline call", "generate_images"]
        train = {(r["algorithm"], r["implementation"]): r for r in rows["training"]}
        assert set(train) == {(a, k) for a in ("lora", "dora") for k in ("t2ibench", "peft")}
        assert {r["layers"] for r in rows["training"]} == {rows["training"][0]["layers"]} != {0}
        for r in rows["generation"] + rows["training"]:
            value = r.get("images_per_s", r.get("s_per_step"))
            assert math.isfinite(value) and value > 0, (base, r)
            assert math.isfinite(r["peak_gib"]) and r["peak_gib"] > 0, (base, r)
        assert f"| dora | peft-dora | {train[('dora', 't2ibench')]['s_per_step']:.3f} |" in text


def test_gpu_benchmark_refuses_an_unknown_base(capsys):
    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "benchmarks" / "gpu_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    with pytest.raises(SystemExit) as exc:
        bench.main(["--dry", "--bases", "sd15,sd2"])
    assert exc.value.code == 2
    assert "--bases: unknown sd2; known: sd15,sdxl,flux" in capsys.readouterr().err
