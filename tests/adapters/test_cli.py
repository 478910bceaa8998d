"""``t2ibench size`` and ``t2ibench train`` as a user runs them (subprocesses, offline)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from t2ibench.testing import run_cli


def t2ibench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli(*args, env=env)  # the entry point in this process (t2ibench/testing.py)


def test_size_json_and_text() -> None:
    out = t2ibench("size", "--trainer", "lokr", "--preset", "attn-mlp", "--factor", "4", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["params"] == 21_998_984 and round(data["mib"], 2) == 42.06
    assert abs(data["bytes"] / 2**20 - data["mib"]) < 1e-4
    out = t2ibench("size", "-t", "lora", "-p", "full", "--dim", "32", "--alpha", "16")
    assert out.returncode == 0, out.stderr
    assert "354 modules, 39,171,682 parameters" in out.stdout


def test_size_and_train_errors_are_one_line(tmp_path: Path) -> None:
    out = t2ibench("size", "-t", "lora", "--set", "rank=4")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "unknown key 'rank'" in out.stderr
    out = t2ibench("size", "-t", "lorra")
    assert out.returncode == 2 and "Did you mean 'lora'" in out.stderr
    cfg = tmp_path / "bad.toml"
    cfg.write_text("dim = 4\nnetwork_alpha = 2\n")
    out = t2ibench(
        "train", "-t", "lora", "-d", str(tmp_path), "-o", str(tmp_path / "o"), "-c", str(cfg)
    )
    assert out.returncode == 2 and "bad.toml: unknown key 'network_alpha'" in out.stderr


def test_train_cli(tmp_path: Path) -> None:
    from t2ibench.data import make_demo_dataset

    ds = make_demo_dataset(tmp_path / "ds")
    cfg = tmp_path / "lokr.toml"
    cfg.write_text('trainer = "lokr"\nfactor = 4\nresolution = 64\nwarmup_steps = 0\n')
    out = t2ibench(
        "train",
        "--trainer",
        "lokr",
        "--dataset",
        str(ds),
        "--out",
        str(tmp_path / "run"),
        "--config",
        str(cfg),
        "--set",
        "batch_size=8",
        "--epochs",
        "1",
        "--no-progress",
        env={"T2IBENCH_CACHE": str(tmp_path / "cache")},
    )
    assert out.returncode == 0, out.stderr
    ckpt = tmp_path / "run" / "lokr-e000001.safetensors"
    assert out.stdout.strip().splitlines() == [str(ckpt)]
    from t2ibench.adapters import read_adapter

    _, meta = read_adapter(ckpt)
    cfg_saved = json.loads(meta["t2ibench_trainer_config"])
    assert cfg_saved["factor"] == 4 and cfg_saved["batch_size"] == 8 and cfg_saved["epochs"] == 1
