"""Train cost in run.json: an interrupted training invocation is recorded as a segment with what it
measured (its time counts), a finished one with its epochs."""

import json

import pytest

import t2ibench.adapters
from t2ibench.pipeline.run import RunOptions, execute, resolve


def test_interrupted_training_is_a_recorded_segment(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        bytearray(64 * 2**20)  # some memory, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(t2ibench.adapters, "train_run", interrupted)
    quick = {"trainer": "lora", "evaluate.encoders": ["dinov2-l@tiny"], "trainer.epochs": 1}
    options = RunOptions(
        layers=[("test", quick)], profile="tiny", out=str(tmp_path), progress=False
    )
    resolved = resolve(options)
    with pytest.raises(KeyboardInterrupt):
        execute(resolved)
    record = json.loads((resolved.run_dir / "run.json").read_text())
    (seg,) = record["cost"]["train_segments"]
    assert seg["finished"] is False and "epochs_trained" not in seg
    assert seg["seconds"] >= 0 and seg["peak_rss_bytes"] >= 64 * 2**20
