"""An example third-party trainer in one file: "scaled LoRA", a LoRA whose output is multiplied by
its own config key ``scale``. It registers through the ``t2ibench.trainers`` entry point."""

from __future__ import annotations

import torch
from pydantic import Field

from t2ibench.adapters import AlgoParams, TrainerConfig, TrainerSpec, register_trainer
from t2ibench.adapters.trainers.lora import LoRAModule


class ScaledLoRAConfig(TrainerConfig, AlgoParams):
    scale: float = Field(1.0, gt=0)  # the trainer's own key: --set scale=2.5


class ScaledLoRAModule(LoRAModule):
    """LoRA with ΔW multiplied by ``lora_scale``, saved with the file so it comes back on load."""

    algo = "scaled-lora"
    keys = {**LoRAModule.keys, "lora_scale": "lora_scale"}
    signatures = (("lora_up.weight", "lora_scale"),)  # LoRA's keys and one more: not plain LoRA

    def __init__(self, lora_name, org, dim, alpha, *, scale: float = 1.0, **kw) -> None:
        super().__init__(lora_name, org, dim, alpha, **kw)
        self.register_buffer("lora_scale", torch.tensor(float(scale)), persistent=False)

    # LoRA's forward and ΔW both use ``self.scale`` (alpha/dim): scaling it scales the output.
    @property
    def scale(self) -> float:
        return self._lora_scale_base * float(self.lora_scale)

    @scale.setter
    def scale(self, value: float) -> None:
        self._lora_scale_base = value

    @classmethod
    def options(cls, cfg: ScaledLoRAConfig) -> dict:
        return {**super().options(cfg), "scale": cfg.scale}


register_trainer(
    TrainerSpec(
        "scaled-lora",
        "LoRA with its output multiplied by `scale`",
        config_class=ScaledLoRAConfig,
        module_class=ScaledLoRAModule,
        defaults={"dim": 8, "alpha": 4.0, "lr": 1e-3},
        result_columns=("dim", "alpha", "scale"),
    )
)
