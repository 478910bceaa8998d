"""The train stage of ``t2ibench run``: the trainer (:func:`t2ibench.adapters.train_run`) writes the
run's checkpoints under ``checkpoints/``, resuming from its last one after an interruption."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from t2ibench.pipeline.stage import Run


class TrainStage:
    """The default checkpoint source: train with the resolved trainer and config."""

    name = "train"
    kept = "every checkpoint is on disk, nothing to train"

    def done(self, run: Run) -> bool:
        listed = run.state.info("train").get("checkpoints")
        return listed is not None and all(p.exists() for p in self._paths(run, listed))

    def run(self, run: Run) -> None:
        from t2ibench.adapters import train_run
        from t2ibench.pipeline.peak_memory import PeakMemory

        r = run.resolved
        # Cost: each invocation that trains is one segment (time, peak memory); a resumed run
        # adds a segment, an interrupted one is recorded with what it measured.
        result = None
        peak = PeakMemory(r.options.device).start()
        try:
            result = train_run(
                r.trainer.name,
                r.dataset,
                r.base,
                run.run_dir / "checkpoints",
                r.trainer_config,
                device=r.options.device,
                progress=r.options.progress,
                pipe=self._pickle_base(r),
            )
        finally:
            peak.stop()
            if result is None or result.epochs_trained:
                segment = {**peak.record(), "finished": result is not None}
                if result is not None:
                    segment.update(epochs_trained=result.epochs_trained, steps=result.steps)
                run.record.add_train_segment(segment)
        run.state.mark("train", checkpoints=[Path(p).name for p in result.checkpoints])

    def checkpoints(self, run: Run) -> list[Path]:
        return self._paths(run, run.state.info("train")["checkpoints"])

    def columns(self, run: Run) -> dict[str, dict[str, Any]]:
        """Result columns per checkpoint: config, seed, epoch, then what the trainer contributes
        (``TrainerSpec.columns``: algorithm, preset, lr and its own keys), then the run's labels."""
        from t2ibench.adapters.sizes import checkpoint_columns

        r = run.resolved
        cfg = r.trainer_config
        labels = r.options.labels
        info = {}
        for ck, name in run.names.items():
            m = re.search(r"-e(\d+)$", name)
            info[name] = {
                "config": labels.get("config", r.run_dir.name),
                "seed": str(labels.get("seed", cfg.seed)),
                "epoch": int(m.group(1)) if m else None,
                **r.trainer.columns(cfg),
                **checkpoint_columns(ck),  # trainable-parameter count and file size
                **{k: v for k, v in labels.items() if k not in ("config", "seed")},
            }
        return info

    def identity(self, resolved: Any) -> Any:
        return resolved.trainer_config.to_dict()

    def record(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def _paths(run: Run, names: list[str]) -> list[Path]:
        return [run.run_dir / "checkpoints" / n for n in names]

    @staticmethod
    def _pickle_base(r: Any) -> Any:
        """The trainer loads the base without ``--allow-pickle``: a pickle ``.ckpt`` base is
        loaded here, with the dtype the trainer would use, and handed over."""
        if not r.options.allow_pickle:
            return None
        import torch

        from t2ibench.models import load_base

        dtype = torch.float32
        if str(r.options.device).startswith("cuda"):  # the trainer's mixed precision on CUDA
            amp = {"bf16": torch.bfloat16, "fp16": torch.float16}
            dtype = amp.get(r.trainer_config.mixed_precision, torch.float32)
        return load_base(r.base, device=r.options.device, dtype=dtype, allow_pickle=True)
