"""LoRA (LoCon on convolutions): the module, its config and its registration, in one file."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..algorithms import BACKEND, AlgoParams, LowRankModule, alpha_value, copy_tensors
from ..config import TrainerConfig
from ..registry import TrainerSpec, register_trainer


class LoRAConfig(TrainerConfig, AlgoParams):
    """The shared trainer keys plus LyCORIS's rank settings (``dim``, ``alpha``, ``conv_dim``,
    ``conv_alpha``, ``use_tucker``)."""


class LoRAModule(LowRankModule):
    """LoRA / LoCon: ΔW = up · down · alpha/dim; conv layers keep the kernel in ``down``."""

    algo = "lora"
    keys = {
        "lora_down.weight": "lora_down",
        "lora_up.weight": "lora_up",
        "lora_mid.weight": "lora_mid",
    }
    signatures = (("lora_up.weight",),)

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
        self.tucker = False
        factory = {"device": org.weight.device, "dtype": torch.float32}
        if self.is_conv:
            out_dim, in_dim = org.out_channels, org.in_channels // org.groups
            k = tuple(org.kernel_size)
            self.tucker = use_tucker and any(i != 1 for i in k)
            # Same module creation order as LoConModule, so the same seed gives the same values.
            if self.tucker:
                down = nn.Conv2d(in_dim, dim, 1, bias=False, **factory)
                mid = nn.Conv2d(dim, dim, k, bias=False, **factory)
            else:
                down = nn.Conv2d(in_dim, dim, k, bias=False, **factory)
                mid = None
            up = nn.Conv2d(dim, out_dim, 1, bias=False, **factory)
        else:
            down = nn.Linear(org.in_features, dim, bias=False, **factory)
            up = nn.Linear(dim, org.out_features, bias=False, **factory)
            mid = None
        self.lora_down = nn.Parameter(down.weight.detach())
        self.lora_up = nn.Parameter(up.weight.detach())
        self.lora_mid = nn.Parameter(mid.weight.detach()) if mid is not None else None
        alpha = alpha_value(alpha, dim)
        self.scale = alpha / dim
        self.alpha = torch.tensor(alpha)
        if init:
            nn.init.kaiming_uniform_(self.lora_down, a=math.sqrt(5))
            nn.init.constant_(self.lora_up, 0)
            if self.lora_mid is not None:
                nn.init.kaiming_uniform_(self.lora_mid, a=math.sqrt(5))
        # Stride / padding / dilation sit on the conv that carries the kernel.
        self._extra = (
            {"stride": org.stride, "padding": org.padding, "dilation": org.dilation}
            if self.is_conv
            else {}
        )

    def delta_weight(self) -> torch.Tensor:
        from lycoris.functional import locon as lf_locon  # lazy: lycoris loads bitsandbytes

        dw = lf_locon.diff_weight(
            self.lora_down, self.lora_up, self.lora_mid, gamma=self.scale, backend=BACKEND
        )
        return dw.reshape(self.weight_shape)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        from lycoris.functional import locon as lf_locon  # lazy: lycoris loads bitsandbytes

        # Bypass form (x → down → up), as peft does: never builds the out×in ΔW.
        org = self.org
        base = self._op(x, org.weight, org.bias)
        if self.is_conv and org.groups != 1:
            return base + self._op(x, self.multiplier * self.delta_weight().to(x.dtype), None)
        d, u = self.lora_down.to(x.dtype), self.lora_up.to(x.dtype)
        if not self.is_conv:
            return base + F.linear(F.linear(x, d), u) * (self.scale * self.multiplier)
        m = self.lora_mid.to(x.dtype) if self.lora_mid is not None else None
        delta = lf_locon.bypass_forward_diff(
            x,
            None,
            d,
            u,
            m,
            gamma=self.scale * self.multiplier,
            extra_args=self._extra,
            backend=BACKEND,
        )
        return base + delta

    @classmethod
    def from_state(cls, lora_name, org, tensors):
        down = tensors["lora_down.weight"]
        mid = tensors.get("lora_mid.weight")
        alpha = tensors.get("alpha")
        m = cls(
            lora_name,
            org,
            down.shape[0],
            None if alpha is None else float(alpha),
            use_tucker=mid is not None,
            init=False,
        )
        copy_tensors(m, tensors)
        return m


# PROTOCOL "Training": dim 8, alpha 4, lr 5e-4.
register_trainer(
    TrainerSpec(
        "lora",
        "LoRA (LoCon on convolutions), dim 8 alpha 4",
        config_class=LoRAConfig,
        module_class=LoRAModule,
        defaults={"dim": 8, "alpha": 4.0, "lr": 5e-4},
        result_columns=("dim", "alpha"),
    )
)
