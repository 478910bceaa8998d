"""Trainers (LoRA, LoHa, LoKr, native fine-tuning), installed as ``t2ibench.adapters``.

Public API::

    cfg = load_trainer_config("loha", path=None, overrides=["dim=8"])
    ckpts = train("loha", dataset, base_spec, out_dir, cfg, epochs=2, save_epochs=(1, 2))
    handle = apply_adapter(pipe, ckpts[-1], multiplier=1.0); ...; handle.remove()
    merge_adapter(pipe, ckpts[-1])
    adapter_size("lokr", preset="attn-mlp", factor=8)
"""

from .algorithms import AdapterModule
from .config import TrainerConfig, load_trainer_config
from .files import AdapterFileError, AdapterHandle, apply_adapter, merge_adapter, read_adapter
from .registry import TrainerSpec, get_trainer, list_trainers, register_trainer
from .sizes import adapter_size
from .training import TrainingDivergedError, TrainResult, fixed_loss, train, train_run

__all__ = [
    "AdapterFileError",
    "AdapterHandle",
    "AdapterModule",
    "TrainResult",
    "TrainingDivergedError",
    "apply_adapter",
    "fixed_loss",
    "merge_adapter",
    "read_adapter",
    "train",
    "train_run",
    "TrainerConfig",
    "TrainerSpec",
    "adapter_size",
    "get_trainer",
    "list_trainers",
    "load_trainer_config",
    "register_trainer",
]
