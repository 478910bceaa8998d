"""A third-party trainer end to end: ``tests/plugins/t2ibench_example_trainer`` ("scaled LoRA", one
file, registered through the ``t2ibench.trainers`` entry point of its ``.dist-info``, found on
PYTHONPATH without an install) trains under ``t2ibench run --profile tiny`` with its own ``--set
scale=...`` key, its checkpoints are recognised by its own signature and put back on the base for
generation, and its result columns reach the results table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

PLUGIN = Path(__file__).parent / "t2ibench_example_trainer"


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("plugin") / "results"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PLUGIN), os.environ.get("PYTHONPATH", "")]),
    }
    args = [
        "--profile", "tiny", "--trainer", "scaled-lora", "--set", "scale=2.5",
        "--set", "dim=4", "--epochs", "1", "--save-epochs", "1", "--images-per-leaf", "1",
        "--steps", "2", "--prompt-types", "trigger", "--encoders", "dinov2-l@tiny",
        "--metrics", "image_similarity", "--out", str(out), "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "t2ibench", "run", *args],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    return run_dir


def test_own_key_is_accepted_and_recorded(plugin_run):
    record = json.loads((plugin_run / "run.json").read_text())
    assert record["trainer"] == "scaled-lora"
    assert record["config"]["trainer"]["scale"] == 2.5
    assert record["config"]["trainer"]["dim"] == 4
    assert plugin_run.name.startswith("scaled-lora-")


def test_result_columns_come_from_the_trainer(plugin_run):
    from t2ibench.results import read_results

    df = read_results(plugin_run / "results")
    assert df["value"].notna().all()
    df = df[df["checkpoint"] != "base"]  # the base model's rows have no trainer columns
    assert set(df["algorithm"]) == {"scaled-lora"}
    assert set(df["scale"]) == {2.5} and set(df["dim"]) == {4} and set(df["alpha"]) == {4.0}
    assert df["value"].notna().all()


def test_checkpoint_is_detected_and_reapplied(plugin_run, monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN))
    import t2ibench_example_trainer as plugin  # registers (idempotently) in this process too

    from t2ibench.adapters import apply_adapter, read_adapter
    from t2ibench.adapters.registry import module_class_for
    from t2ibench.adapters.trainers.lora import LoRAModule
    from t2ibench.models import load_base

    (ckpt,) = (plugin_run / "checkpoints").glob(
        "scaled-lora-e*.safetensors"
    )  # not the resume state
    tensors, meta = read_adapter(ckpt)
    stem = next(k for k in tensors if k.endswith(".lora_scale")).rsplit(".", 1)[0]
    suffixes = {k.split(".", 1)[1] for k in tensors if k.startswith(stem + ".")}
    assert module_class_for(suffixes) is plugin.ScaledLoRAModule  # its signature beats LoRA's
    assert module_class_for(suffixes - {"lora_scale"}) is LoRAModule
    assert json.loads(meta["ss_network_args"])["scale"] == "2.5"

    pipe = load_base("tiny")
    handle = apply_adapter(pipe, ckpt)
    try:
        modules = list(handle.network)
        assert modules and all(isinstance(m, plugin.ScaledLoRAModule) for m in modules)
        m = handle.network.adapters[stem]
        plain = LoRAModule.from_state(
            stem, m.org, {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(stem)}
        )
        assert float(m.lora_scale) == 2.5
        assert torch.allclose(m.delta_weight(), 2.5 * plain.delta_weight(), atol=1e-6)
        assert m.delta_weight().abs().max() > 0  # trained: the scale acts on something
    finally:
        handle.remove()

    # The run generated the checkpoint's images with the adapter on: they differ from the base's.
    record = json.loads((plugin_run / "run.json").read_text())
    tuned = sorted((plugin_run / "images" / ckpt.stem).rglob("*.png"))
    base = Path(record["base_images"])
    assert tuned
    diffs = [
        np.abs(
            np.asarray(Image.open(p), dtype=float)
            - np.asarray(
                Image.open(base / p.relative_to(plugin_run / "images" / ckpt.stem)), dtype=float
            )
        ).max()
        for p in tuned
    ]
    assert max(diffs) > 0
