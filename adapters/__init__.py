"""Trainers (LoRA, LoHa, LoKr, native fine-tuning, plug-ins), installed as ``t2ibench.adapters``.

Public API::

    cfg = load_trainer_config("loha", path=None, overrides=["dim=8"])
    ckpts = train("loha", dataset, base_spec, out_dir, cfg, epochs=2, save_epochs=(1, 2))
    handle = apply_adapter(pipe, ckpts[-1], multiplier=1.0); ...; handle.remove()
    merge_adapter(pipe, ckpts[-1])
    adapter_size("lokr", preset="attn-mlp", factor=8)
"""

from . import trainers  # noqa: E402,F401,I001  (the built-ins register themselves; last: they need the above)
from .algorithms import AdapterModule, AlgoParams
from .config import TrainerConfig
from .files import (
    AdapterFileError,
    AdapterHandle,
    FusedAdapterHandle,
    apply_adapter,
    fuse_adapter,
    merge_adapter,
    read_adapter,
)
from .registry import (
    TrainerSpec,
    config_from_dict,
    get_trainer,
    list_trainers,
    load_trainer_config,
    register_trainer,
)
from .sizes import adapter_size
from .training import TrainingDivergedError, TrainResult, fixed_loss, train, train_run

__all__ = [
    "AdapterFileError",
    "AdapterHandle",
    "FusedAdapterHandle",
    "AdapterModule",
    "AlgoParams",
    "TrainResult",
    "TrainingDivergedError",
    "apply_adapter",
    "fixed_loss",
    "fuse_adapter",
    "merge_adapter",
    "read_adapter",
    "train",
    "train_run",
    "TrainerConfig",
    "TrainerSpec",
    "adapter_size",
    "config_from_dict",
    "get_trainer",
    "list_trainers",
    "load_trainer_config",
    "register_trainer",
]
