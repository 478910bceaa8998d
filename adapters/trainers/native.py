"""Native fine-tuning of the selected layers (LyCORIS ``full``): module, config, registration."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn as nn

from ..algorithms import AdapterModule, copy_tensors
from ..config import TrainerConfig
from ..registry import TrainerSpec, register_trainer


class NativeConfig(TrainerConfig):
    """The shared trainer keys plus how checkpoints are saved."""

    native_save: Literal["diff", "diffusers"] = "diff"  # diff tensors, or a full diffusers folder


class NativeModule(AdapterModule):
    """Native fine-tuning as a difference: W' = W + diff, b' = b + diff_b (LyCORIS ``full``).

    Training the difference instead of W keeps the base intact; the trainer decays ``W + diff``
    (not ``diff``) so AdamW's weight decay acts exactly as in plain fine-tuning.
    """

    algo = "native"
    keys = {"diff": "diff", "diff_b": "diff_b"}
    signatures = (("diff",),)

    def __init__(self, lora_name: str, org: nn.Module, *, init: bool = True) -> None:
        super().__init__(lora_name, org)
        dev = {"device": org.weight.device, "dtype": torch.float32}
        self.diff = nn.Parameter(torch.zeros(self.weight_shape, **dev))
        self.diff_b = (
            nn.Parameter(torch.zeros(org.bias.shape, **dev)) if org.bias is not None else None
        )

    def delta_weight(self) -> torch.Tensor:
        return self.diff

    def delta_bias(self) -> torch.Tensor | None:
        return self.diff_b

    def state_items(self) -> dict[str, torch.Tensor]:
        out = {"diff": self.diff}
        if self.diff_b is not None:
            out["diff_b"] = self.diff_b
        return out  # no alpha: LyCORIS's full module has none

    def base_tensors(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(diff, base)`` pairs, for weight decay on the effective weight."""
        pairs = [(self.diff, self.org.weight)]
        if self.diff_b is not None:
            pairs.append((self.diff_b, self.org.bias))
        return pairs

    @classmethod
    def create(cls, lora_name: str, org: nn.Module, cfg: Any) -> NativeModule:
        return cls(lora_name, org)

    @classmethod
    def from_state(cls, lora_name, org, tensors):
        m = cls(lora_name, org, init=False)
        if "diff_b" in tensors and m.diff_b is None:
            m.diff_b = nn.Parameter(torch.zeros(tensors["diff_b"].shape))
        copy_tensors(m, tensors)
        return m


# PROTOCOL "Training": lr 1e-6.
register_trainer(
    TrainerSpec(
        "native",
        "native fine-tuning of the selected layers (weights and biases)",
        config_class=NativeConfig,
        module_class=NativeModule,
        defaults={"lr": 1e-6},
        lycoris_algo="full",
        full_weights=True,
    )
)
