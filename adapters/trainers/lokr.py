"""LoKr (Kronecker product): the module, its config and its registration, in one file."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from ..algorithms import BACKEND, AlgoParams, LowRankModule, alpha_value, copy_tensors
from ..config import TrainerConfig
from ..registry import TrainerSpec, register_trainer


class LoKrConfig(TrainerConfig, AlgoParams):
    """The shared trainer keys, LyCORIS's rank settings and LoKr's own."""

    factor: int = -1  # Kronecker factor; -1: as balanced as the shape allows
    decompose_both: bool = False  # also decompose the first block
    full_matrix: bool = False  # never decompose


class LoKrModule(LowRankModule):
    """LoKr: ΔW = kron(w1, w2) · alpha/dim, (m, n) from LyCORIS's ``factorization``.

    A block is low-rank (``_a``/``_b``) only when ``dim`` is below half its larger side; when
    neither is, the scale is 1 (LyCORIS sets alpha = dim). ``dim=10000`` thus means "full second
    block", the paper's default.
    """

    algo = "lokr"
    keys = {
        "lokr_w1": "lokr_w1",
        "lokr_w1_a": "lokr_w1_a",
        "lokr_w1_b": "lokr_w1_b",
        "lokr_w2": "lokr_w2",
        "lokr_w2_a": "lokr_w2_a",
        "lokr_w2_b": "lokr_w2_b",
        "lokr_t2": "lokr_t2",
    }
    signatures = (("lokr_w1",), ("lokr_w1_a",))

    def __init__(
        self,
        lora_name: str,
        org: nn.Module,
        dim: int,
        alpha: float | None,
        *,
        factor: int = -1,
        decompose_both: bool = False,
        use_tucker: bool = False,
        full_matrix: bool = False,
        init: bool = True,
        shapes: Mapping[str, tuple[int, ...]] | None = None,
    ) -> None:
        super().__init__(lora_name, org)
        self.dim = dim
        dev = {"device": org.weight.device, "dtype": torch.float32}
        if shapes is None:
            shapes = self.layout(
                self.weight_shape,
                dim,
                factor=factor,
                decompose_both=decompose_both,
                use_tucker=use_tucker,
                full_matrix=full_matrix,
            )
        for name in self.keys.values():
            shape = shapes.get(name)
            setattr(self, name, None if shape is None else nn.Parameter(torch.empty(shape, **dev)))
        self.use_w1 = self.lokr_w1 is not None
        self.use_w2 = self.lokr_w2 is not None
        self.tucker = self.lokr_t2 is not None
        alpha = alpha_value(alpha, dim)
        if self.use_w1 and self.use_w2:
            alpha = float(dim)  # LyCORIS: no low-rank block → scale 1
        self.scale = alpha / dim
        self.alpha = torch.tensor(alpha)
        if init:  # LokrModule's order: w2 side, then w1 side
            if self.use_w2:
                nn.init.constant_(self.lokr_w2, 0)
            else:
                if self.tucker:
                    nn.init.kaiming_uniform_(self.lokr_t2, a=math.sqrt(5))
                nn.init.kaiming_uniform_(self.lokr_w2_a, a=math.sqrt(5))
                nn.init.constant_(self.lokr_w2_b, 0)
            if self.use_w1:
                nn.init.kaiming_uniform_(self.lokr_w1, a=math.sqrt(5))
            else:
                nn.init.kaiming_uniform_(self.lokr_w1_a, a=math.sqrt(5))
                nn.init.kaiming_uniform_(self.lokr_w1_b, a=math.sqrt(5))

    @staticmethod
    def layout(
        weight_shape: tuple[int, ...],
        dim: int,
        *,
        factor: int = -1,
        decompose_both: bool = False,
        use_tucker: bool = False,
        full_matrix: bool = False,
    ) -> dict[str, tuple[int, ...]]:
        """Tensor shapes exactly as ``LokrModule.__init__`` lays them out."""
        from lycoris.functional import factorization  # lazy: lycoris imports bitsandbytes

        out_dim, in_dim, *k = weight_shape
        factor = int(factor)
        in_m, in_n = factorization(in_dim, factor)
        out_l, out_k = factorization(out_dim, factor)
        (a, b), (c, d) = (out_l, out_k), (in_m, in_n)
        shapes: dict[str, tuple[int, ...]] = {}
        if decompose_both and dim < max(a, c) / 2 and not full_matrix:
            shapes["lokr_w1_a"], shapes["lokr_w1_b"] = (a, dim), (dim, c)
        else:
            shapes["lokr_w1"] = (a, c)
        if k:
            tucker = use_tucker and any(i != 1 for i in k)
            if dim >= max(b, d) / 2 or full_matrix:
                shapes["lokr_w2"] = (b, d, *k)
            elif tucker:
                shapes["lokr_t2"] = (dim, dim, *k)
                shapes["lokr_w2_a"], shapes["lokr_w2_b"] = (dim, b), (dim, d)
            else:
                shapes["lokr_w2_a"], shapes["lokr_w2_b"] = (b, dim), (dim, d * math.prod(k))
        elif dim < max(b, d) / 2 and not full_matrix:
            shapes["lokr_w2_a"], shapes["lokr_w2_b"] = (b, dim), (dim, d)
        else:
            shapes["lokr_w2"] = (b, d)
        return shapes

    def delta_weight(self) -> torch.Tensor:
        from lycoris.functional import lokr as lf_lokr  # lazy: lycoris imports bitsandbytes

        dw = lf_lokr.kron_weight(
            self.lokr_w1,
            self.lokr_w1_a,
            self.lokr_w1_b,
            self.lokr_w2,
            self.lokr_w2_a,
            self.lokr_w2_b,
            self.lokr_t2,
            scale=self.scale,
            backend=BACKEND,
        )
        return dw.reshape(self.weight_shape)

    @classmethod
    def options(cls, cfg: LoKrConfig) -> dict[str, Any]:
        return {
            "factor": cfg.factor,
            "decompose_both": cfg.decompose_both,
            "use_tucker": cfg.use_tucker,
            "full_matrix": cfg.full_matrix,
        }

    @classmethod
    def from_state(cls, lora_name, org, tensors):
        shapes = {k: tuple(v.shape) for k, v in tensors.items() if k in cls.keys}
        if "lokr_t2" in tensors:
            # Tucker stores w2_a as (dim, b); lycoris-lora 4.1.3's own loader reads b as the rank.
            dim = tensors["lokr_t2"].shape[0]
        elif "lokr_w1_a" in tensors:
            dim = tensors["lokr_w1_a"].shape[1]
        elif "lokr_w2_a" in tensors:
            dim = tensors["lokr_w2_a"].shape[1]
        else:
            dim = 1  # both blocks full: LyCORIS's loader uses lora_dim 1, scale 1
        alpha = tensors.get("alpha")
        m = cls(
            lora_name, org, dim, None if alpha is None else float(alpha), init=False, shapes=shapes
        )
        copy_tensors(m, tensors)
        return m


# PROTOCOL "Training": factor 8 with a full second block (dim 10000 → scale 1), lr 5e-4.
register_trainer(
    TrainerSpec(
        "lokr",
        "LoKr (Kronecker product), factor 8 with a full second block",
        config_class=LoKrConfig,
        module_class=LoKrModule,
        defaults={"dim": 10000, "alpha": 1.0, "factor": 8, "lr": 5e-4},
        result_columns=("dim", "alpha", "factor"),
    )
)
