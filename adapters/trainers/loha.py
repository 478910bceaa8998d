"""LoHa (Hadamard product of two low-rank pairs): module, config and registration in one file."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..algorithms import BACKEND, AlgoParams, LowRankModule, alpha_value, copy_tensors
from ..config import TrainerConfig
from ..registry import TrainerSpec, register_trainer


class LoHaConfig(TrainerConfig, AlgoParams):
    """The shared trainer keys plus LyCORIS's rank settings."""


class LoHaModule(LowRankModule):
    """LoHa: ΔW = (w1a·w1b) ⊙ (w2a·w2b) · alpha/dim; conv layers unrolled to (out, in·k·k)."""

    algo = "loha"
    keys = {
        "hada_w1_a": "hada_w1_a",
        "hada_w1_b": "hada_w1_b",
        "hada_w2_a": "hada_w2_a",
        "hada_w2_b": "hada_w2_b",
        "hada_t1": "hada_t1",
        "hada_t2": "hada_t2",
    }
    signatures = (("hada_w1_a",),)

    def __init__(
        self,
        lora_name: str,
        org: nn.Module,
        dim: int,
        alpha: float | None,
        *,
        use_tucker: bool = False,
        init: bool = True,
    ) -> None:
        super().__init__(lora_name, org)
        self.dim = dim
        out_dim = self.weight_shape[0]
        k = self.weight_shape[2:]
        self.tucker = bool(use_tucker and self.is_conv and any(i != 1 for i in k))
        dev = {"device": org.weight.device, "dtype": torch.float32}
        if self.tucker:
            in_dim = self.weight_shape[1]
            self.hada_t1 = nn.Parameter(torch.empty(dim, dim, *k, **dev))
            self.hada_w1_a = nn.Parameter(torch.empty(dim, out_dim, **dev))
            self.hada_w1_b = nn.Parameter(torch.empty(dim, in_dim, **dev))
            self.hada_t2 = nn.Parameter(torch.empty(dim, dim, *k, **dev))
            self.hada_w2_a = nn.Parameter(torch.empty(dim, out_dim, **dev))
            self.hada_w2_b = nn.Parameter(torch.empty(dim, in_dim, **dev))
        else:
            in_dim = math.prod(self.weight_shape[1:])
            self.hada_w1_a = nn.Parameter(torch.empty(out_dim, dim, **dev))
            self.hada_w1_b = nn.Parameter(torch.empty(dim, in_dim, **dev))
            self.hada_w2_a = nn.Parameter(torch.empty(out_dim, dim, **dev))
            self.hada_w2_b = nn.Parameter(torch.empty(dim, in_dim, **dev))
            self.hada_t1 = self.hada_t2 = None
        alpha = alpha_value(alpha, dim)
        self.scale = alpha / dim
        self.alpha = torch.tensor(alpha)
        if init:  # LohaModule's order: t1, t2, w1_b, w1_a, w2_b, w2_a
            if self.tucker:
                nn.init.normal_(self.hada_t1, std=0.1)
                nn.init.normal_(self.hada_t2, std=0.1)
            nn.init.normal_(self.hada_w1_b, std=1)
            nn.init.normal_(self.hada_w1_a, std=0.1)
            nn.init.normal_(self.hada_w2_b, std=1)
            nn.init.constant_(self.hada_w2_a, 0)

    def delta_weight(self) -> torch.Tensor:
        from lycoris.functional import loha as lf_loha  # lazy: lycoris loads bitsandbytes

        gamma = torch.tensor(self.scale, dtype=self.hada_w1_b.dtype, device=self.hada_w1_b.device)
        dw = lf_loha.diff_weight(
            self.hada_w1_b,
            self.hada_w1_a,
            self.hada_w2_b,
            self.hada_w2_a,
            self.hada_t1,
            self.hada_t2,
            gamma=gamma,
            backend=BACKEND,
        )
        return dw.reshape(self.weight_shape)

    @classmethod
    def from_state(cls, lora_name, org, tensors):
        alpha = tensors.get("alpha")
        m = cls(
            lora_name,
            org,
            tensors["hada_w1_b"].shape[0],
            None if alpha is None else float(alpha),
            use_tucker="hada_t1" in tensors,
            init=False,
        )
        copy_tensors(m, tensors)
        return m


# PROTOCOL "Training": dim 4, alpha 2, lr 5e-4.
register_trainer(
    TrainerSpec(
        "loha",
        "LoHa (Hadamard product of two low-rank pairs), dim 4 alpha 2",
        config_class=LoHaConfig,
        module_class=LoHaModule,
        defaults={"dim": 4, "alpha": 2.0, "lr": 5e-4},
        result_columns=("dim", "alpha"),
    )
)
