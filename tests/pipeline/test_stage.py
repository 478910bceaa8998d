"""The stage loop and the run record, on stand-in stages (no model): a stage that is done is
kept and logged, the others run in order and are timed into run.json; a folder holding another
config's run is refused; the train stage is done only while every checkpoint it made is on disk."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest

from t2ibench.errors import T2IBenchError
from t2ibench.pipeline.record import RunRecord, RunState, kept
from t2ibench.pipeline.stage import Run, run_stages
from t2ibench.pipeline.train_stage import TrainStage


class StandIn:
    def __init__(self, name: str, done: bool, calls: list[str]) -> None:
        self.name, self._done, self.calls = name, done, calls
        self.kept = f"{name} had nothing to do"

    def done(self, run: Run) -> bool:
        return self._done

    def run(self, run: Run) -> None:
        self.calls.append(self.name)
        run.state.mark(self.name)


def _run(tmp_path, run_hash: str = "h" * 64) -> Run:
    resolved = SimpleNamespace(run_dir=tmp_path)
    return Run(
        resolved, RunState(tmp_path / "state.json"), RunRecord(tmp_path / "run.json", run_hash)
    )


def test_done_stages_are_kept_the_others_run_in_order_and_are_timed(tmp_path, caplog):
    calls: list[str] = []
    stages = [StandIn("a", True, calls), StandIn("b", False, calls), StandIn("c", False, calls)]
    run = _run(tmp_path)
    with caplog.at_level(logging.INFO, logger="t2ibench"):
        run_stages(run, stages)
    assert calls == ["b", "c"]
    assert set(json.loads((tmp_path / "run.json").read_text())["timings"]) == {"b", "c"}
    assert set(json.loads((tmp_path / "state.json").read_text())["done"]) == {"b", "c"}
    assert "a: done before, kept (a had nothing to do)" in caplog.text


def test_a_folder_of_another_config_is_refused(tmp_path):
    run = _run(tmp_path)
    run.record.update({"run_hash": "h" * 64})
    with pytest.raises(T2IBenchError, match="different config"):
        RunRecord(tmp_path / "run.json", "x" * 64)
    assert RunRecord(tmp_path / "run.json", "h" * 64).data["run_hash"] == "h" * 64


def test_train_stage_is_done_while_its_checkpoints_are_on_disk(tmp_path):
    run = _run(tmp_path)
    stage = TrainStage()
    assert not stage.done(run)  # never trained
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    for name in ("lora-e000001.safetensors", "lora-e000002.safetensors"):
        (ckpts / name).write_bytes(b"x")
    run.state.mark("train", checkpoints=["lora-e000001.safetensors", "lora-e000002.safetensors"])
    assert stage.done(run)
    assert stage.checkpoints(run) == sorted(ckpts.iterdir())
    (ckpts / "lora-e000002.safetensors").unlink()  # the trainer makes it again
    assert not stage.done(run)
    assert "kept 1 checkpoint(s)" in kept(tmp_path)
