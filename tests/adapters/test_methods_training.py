"""The lycoris and PEFT trainer families train on the tiny base like the built-ins: the base stays
bit-identical, the checkpoint changes the outputs when applied, and a run resumed after epoch 1
equals a straight 2-epoch run bit for bit (optimizer and adapter state restored)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from adapters_testutil import unet_te_outputs

from t2ibench.adapters import apply_adapter, load_trainer_config, read_adapter, train_run
from t2ibench.adapters import training as training_mod

FAST = ["resolution=64", "batch_size=8", "warmup_steps=0", "lr=2e-3", "preset=attn-only"]


@pytest.mark.parametrize(
    ("trainer", "extra", "key"),
    [
        ("dora", [], "dora_scale"),
        ("lycoris-oft", ["dim=4", "rescaled=true"], "oft_blocks"),
        ("peft-dora", [], "lora_magnitude_vector"),
        ("peft-oft", ["block_size=4"], "oft_R.weight"),
    ],
)
def test_trains_resumes_and_applies(
    tiny_base,
    demo_dataset,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    trainer: str,
    extra: list[str],
    key: str,
) -> None:
    pipe = tiny_base()
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    cfg = load_trainer_config(trainer, overrides=[*FAST, *extra])

    # The straight run's folder as it stood once epoch 1 was committed (checkpoint, resume state)
    # is copied aside: the resume point, without training epoch 1 a second time.
    real_save_state = training_mod.save_resume_state

    def save_state_and_copy_after_epoch_1(out_dir, name, record, *args, **kwargs):
        saved = real_save_state(out_dir, name, record, *args, **kwargs)
        if record["epoch"] == 1:
            shutil.copytree(out_dir, tmp_path / "b")
        return saved

    monkeypatch.setattr(training_mod, "save_resume_state", save_state_and_copy_after_epoch_1)
    straight = train_run(
        trainer, demo_dataset, "tiny", tmp_path / "a", cfg, epochs=2, save_epochs=(1, 2),
        progress=False, pipe=pipe,
    )  # fmt: skip
    monkeypatch.undo()
    assert straight.epochs_trained == 2
    assert all(torch.equal(before[k], v) for k, v in pipe.unet.state_dict().items())
    state = json.loads((tmp_path / "b" / f"{cfg.output_name}-state.json").read_text())
    assert state["epoch"] == 1  # the copy is the run stopped after epoch 1
    resumed = train_run(
        trainer, demo_dataset, "tiny", tmp_path / "b", cfg, epochs=2, save_epochs=(1, 2),
        progress=False, pipe=pipe,
    )  # fmt: skip
    assert resumed.epochs_trained == 1
    a, meta = read_adapter(straight.checkpoints[-1])
    b, _ = read_adapter(resumed.checkpoints[-1])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.endswith("." + key) for k in a)
    assert meta["t2ibench_trainer"] == trainer
    with apply_adapter(pipe, straight.checkpoints[-1]):
        out, _ = unet_te_outputs(pipe)
    assert not torch.equal(out, unet_te_outputs(pipe)[0])
