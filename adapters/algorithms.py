"""The adapter-module base class and the LyCORIS settings the low-rank trainers share.

The built-in modules (LoRA, LoHa, LoKr, native "full") live one per file in
``t2ibench.adapters.trainers``, each with its trainer. Each module wraps one ``nn.Linear`` /
``nn.Conv2d`` of the base model and holds the trainable tensors under their kohya / LyCORIS names (``lora_down.weight``, ``hada_w1_a``, ``lokr_w1``, ...).
The shapes, the initialisation (including the order in which it draws random numbers), the scale
``alpha / dim`` and LoKr's scale 1 when neither Kronecker block is low-rank are those of
lycoris-lora 4.1.3's ``LoConModule`` / ``LohaModule`` / ``LokrModule``; ΔW is computed by
``lycoris.functional`` with the plain torch backend pinned (``backend="torch"``): on CUDA
lycoris-lora would otherwise pick experimental Triton / TileLang kernels per call, which makes runs
irreproducible. The tests check every algorithm against lycoris-lora's own modules.

The modules never modify the base weights: when applied, the wrapped layer computes
``op(x, W + m·ΔW, b)`` (LoRA: ``op(x, W, b) + m·s·up(down(x))``), so ``remove()`` restores it
exactly and training leaves every base tensor bit-identical.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

BACKEND = "torch"  # never lycoris-lora's auto-selected fused kernels (see module docstring)


class AlgoParams(BaseModel):
    """LyCORIS's per-module settings shared by the low-rank trainers (LoRA, LoHa, LoKr): their
    config classes inherit these keys, so each is declared once."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    dim: int = Field(4, gt=0)
    alpha: float = 1.0
    conv_dim: int | None = Field(None, ge=0)  # None: same as dim; 0: leave k>1 convolutions alone
    conv_alpha: float | None = None  # None: same as alpha
    use_tucker: bool = False  # Tucker decomposition of k×k convolutions

    def for_module(self, module: nn.Module) -> tuple[int, float] | None:
        """``(dim, alpha)`` for this layer, or None to skip it (LyCORIS's conv_dim rules)."""
        if isinstance(module, nn.Conv2d) and any(k != 1 for k in module.kernel_size):
            dim = self.dim if self.conv_dim is None else self.conv_dim
            alpha = self.alpha if self.conv_alpha is None else self.conv_alpha
            return (dim, alpha) if dim > 0 else None
        return self.dim, self.alpha


def alpha_value(alpha: float | None, dim: int) -> float:
    """LyCORIS: alpha 0 or unset means alpha = dim (scale 1)."""
    return float(dim) if alpha is None or alpha == 0 else float(alpha)


class AdapterModule(nn.Module):
    """One layer's adapter. Subclasses define the tensors and ΔW."""

    algo: ClassVar[str] = ""
    #: saved-key suffix → attribute name; every trainable tensor is an ``nn.Parameter``.
    keys: ClassVar[dict[str, str]] = {}
    #: how a saved layer is recognised as this module's: each signature is a set of key suffixes
    #: that must all be present; across trainers the longest matching signature wins, so a LoRA
    #: variant that saves one tensor more than LoRA is told apart from LoRA
    signatures: ClassVar[tuple[tuple[str, ...], ...]] = ()

    def __init__(self, lora_name: str, org: nn.Module) -> None:
        super().__init__()
        if not isinstance(org, nn.Linear | nn.Conv2d):
            raise TypeError(f"{lora_name}: only Linear and Conv2d layers can be adapted")
        self.lora_name = lora_name
        self._org = [org]  # a list, so the base layer is not a submodule (not saved, not trained)
        self.is_conv = isinstance(org, nn.Conv2d)
        self.weight_shape = tuple(org.weight.shape)
        self.multiplier = 1.0
        self.scale = 1.0
        self.register_buffer("alpha", torch.tensor(1.0), persistent=False)

    @property
    def org(self) -> nn.Module:
        return self._org[0]

    # -- math ------------------------------------------------------------------------------
    def delta_weight(self) -> torch.Tensor:
        """ΔW with the scale applied once (not the multiplier), in the base weight's shape."""
        raise NotImplementedError

    def delta_bias(self) -> torch.Tensor | None:
        return None

    def _op(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.is_conv:
            return self.org._conv_forward(x, weight, bias)
        return F.linear(x, weight, bias)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The adapted layer: ``op(x, W + m·ΔW, b + m·Δb)``; one matmul / conv per call."""
        org = self.org
        dw = self.delta_weight()
        weight = org.weight + self.multiplier * dw.to(org.weight.dtype)
        bias = org.bias
        db = self.delta_bias()
        if db is not None:
            bias = self.multiplier * db if bias is None else bias + self.multiplier * db
        return self._op(x, weight, bias)

    # -- attach / detach ---------------------------------------------------------------------
    def attach(self) -> None:
        """Route the base layer's forward through this adapter (stacking is refused)."""
        current = self.org.__dict__.get("forward")
        if isinstance(getattr(current, "__self__", None), AdapterModule):
            raise RuntimeError(f"{self.lora_name}: the layer already carries an adapter")
        self._prev_forward = [current]  # a list: keeps a bound method out of nn.Module's state
        self.org.forward = self.forward

    def detach_(self) -> None:
        """Give the base layer the forward it had before :meth:`attach`."""
        if self.org.__dict__.get("forward") != self.forward:
            return
        prev = getattr(self, "_prev_forward", [None])[0]
        if prev is None:
            del self.org.__dict__["forward"]
        else:
            self.org.forward = prev

    # -- files -------------------------------------------------------------------------------
    def state_items(self) -> dict[str, torch.Tensor]:
        """``suffix → tensor`` as saved (kohya keys: ``<lora_name>.<suffix>``)."""
        out = {suffix: getattr(self, attr) for suffix, attr in self.keys.items()}
        out = {k: v for k, v in out.items() if v is not None}
        out["alpha"] = self.alpha
        return out

    def load_state_items(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Copy saved tensors (``suffix → tensor``, as :meth:`state_items`) into this module."""
        with torch.no_grad():
            for suffix, attr in self.keys.items():
                p = getattr(self, attr)
                if p is not None and suffix in tensors:
                    p.copy_(tensors[suffix].to(p.dtype))

    @classmethod
    def create(cls, lora_name: str, org: nn.Module, cfg: Any) -> AdapterModule | None:
        """A freshly initialised adapter for one layer from the trainer's config, or None to
        leave the layer alone."""
        raise NotImplementedError

    @classmethod
    def from_state(
        cls, lora_name: str, org: nn.Module, tensors: Mapping[str, torch.Tensor]
    ) -> AdapterModule:
        """The module a saved layer's tensors (``suffix → tensor``) describe."""
        raise NotImplementedError

    def base_tensors(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(trained, base)`` pairs when the module trains the base weights themselves (native
        fine-tuning decays ``W + diff``); none for adapters."""
        return []

    def num_saved(self) -> int:
        return sum(t.numel() for t in self.state_items().values())


class LowRankModule(AdapterModule):
    """A module with a rank: LyCORIS's ``conv_dim`` rules (:meth:`AlgoParams.for_module`) pick
    ``(dim, alpha)`` per layer; :meth:`options` adds the module's other constructor settings."""

    @classmethod
    def create(cls, lora_name: str, org: nn.Module, cfg: Any) -> AdapterModule | None:
        da = cfg.for_module(org)
        return None if da is None else cls(lora_name, org, *da, **cls.options(cfg))

    @classmethod
    def options(cls, cfg: Any) -> dict[str, Any]:
        return {"use_tucker": cfg.use_tucker}


def copy_tensors(module: AdapterModule, tensors: Mapping[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for suffix, attr in module.keys.items():
            if suffix in tensors:
                p = getattr(module, attr)
                if p is None or tuple(p.shape) != tuple(tensors[suffix].shape):
                    raise ValueError(
                        f"{module.lora_name}.{suffix}: shape {tuple(tensors[suffix].shape)} does "
                        f"not fit the layer {module.weight_shape}"
                    )
                p.copy_(tensors[suffix].to(p.dtype))
