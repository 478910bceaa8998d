"""LoRA, LoHa, LoKr and native ("full") adapter modules, LyCORIS-exact.

Each module wraps one ``nn.Linear`` / ``nn.Conv2d`` of the base model and holds the trainable
tensors under their kohya / LyCORIS names (``lora_down.weight``, ``hada_w1_a``, ``lokr_w1``, ...).
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

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from lycoris.functional import factorization
from lycoris.functional import locon as lf_locon
from lycoris.functional import loha as lf_loha
from lycoris.functional import lokr as lf_lokr

BACKEND = "torch"  # never lycoris-lora's auto-selected fused kernels (see module docstring)


@dataclass(frozen=True)
class AlgoParams:
    """The per-module settings of an algorithm (what lycoris-lora's network passes to a module)."""

    dim: int = 4
    alpha: float = 1.0
    conv_dim: int | None = None  # None: same as dim; 0: leave k>1 convolutions alone (LyCORIS)
    conv_alpha: float | None = None
    factor: int = -1
    decompose_both: bool = False
    use_tucker: bool = False
    full_matrix: bool = False

    def for_module(self, module: nn.Module) -> tuple[int, float] | None:
        """``(dim, alpha)`` for this layer, or None to skip it (LyCORIS's conv_dim rules)."""
        if isinstance(module, nn.Conv2d) and any(k != 1 for k in module.kernel_size):
            dim = self.dim if self.conv_dim is None else self.conv_dim
            alpha = self.alpha if self.conv_alpha is None else self.conv_alpha
            return (dim, alpha) if dim > 0 else None
        return self.dim, self.alpha


def _alpha_value(alpha: float | None, dim: int) -> float:
    """LyCORIS: alpha 0 or unset means alpha = dim (scale 1)."""
    return float(dim) if alpha is None or alpha == 0 else float(alpha)


class AdapterModule(nn.Module):
    """One layer's adapter. Subclasses define the tensors and ΔW."""

    algo: ClassVar[str] = ""
    #: saved-key suffix → attribute name; every trainable tensor is an ``nn.Parameter``.
    keys: ClassVar[dict[str, str]] = {}
    #: a suffix whose presence identifies the algorithm in a file
    detect: ClassVar[tuple[str, ...]] = ()

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

    @classmethod
    def from_state(
        cls, lora_name: str, org: nn.Module, tensors: Mapping[str, torch.Tensor]
    ) -> AdapterModule:
        raise NotImplementedError

    def num_saved(self) -> int:
        return sum(t.numel() for t in self.state_items().values())


# ---------------------------------------------------------------------------------------------
class LoRAModule(AdapterModule):
    """LoRA / LoCon: ΔW = up · down · alpha/dim; conv layers keep the kernel in ``down``."""

    algo = "lora"
    keys = {
        "lora_down.weight": "lora_down",
        "lora_up.weight": "lora_up",
        "lora_mid.weight": "lora_mid",
    }
    detect = ("lora_up.weight",)

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
        alpha = _alpha_value(alpha, dim)
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
        dw = lf_locon.diff_weight(
            self.lora_down, self.lora_up, self.lora_mid, gamma=self.scale, backend=BACKEND
        )
        return dw.reshape(self.weight_shape)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
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
        _copy(m, tensors)
        return m


class LoHaModule(AdapterModule):
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
    detect = ("hada_w1_a",)

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
        alpha = _alpha_value(alpha, dim)
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
        _copy(m, tensors)
        return m


class LoKrModule(AdapterModule):
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
    detect = ("lokr_w1", "lokr_w1_a")

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
        alpha = _alpha_value(alpha, dim)
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
        _copy(m, tensors)
        return m


class NativeModule(AdapterModule):
    """Native fine-tuning as a difference: W' = W + diff, b' = b + diff_b (LyCORIS ``full``).

    Training the difference instead of W keeps the base intact; the trainer decays ``W + diff``
    (not ``diff``) so AdamW's weight decay acts exactly as in plain fine-tuning.
    """

    algo = "native"
    keys = {"diff": "diff", "diff_b": "diff_b"}
    detect = ("diff",)

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
    def from_state(cls, lora_name, org, tensors):
        m = cls(lora_name, org, init=False)
        if "diff_b" in tensors and m.diff_b is None:
            m.diff_b = nn.Parameter(torch.zeros(tensors["diff_b"].shape))
        _copy(m, tensors)
        return m


def _copy(module: AdapterModule, tensors: Mapping[str, torch.Tensor]) -> None:
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


MODULE_CLASSES: dict[str, type[AdapterModule]] = {
    "lora": LoRAModule,
    "loha": LoHaModule,
    "lokr": LoKrModule,
    "native": NativeModule,
}


def detect_algo(suffixes: set[str]) -> type[AdapterModule] | None:
    """The module class whose keys a saved layer carries (LyCORIS ``algo_check`` order)."""
    for cls in (LoRAModule, LoHaModule, LoKrModule, NativeModule):
        if any(s in suffixes for s in cls.detect):
            return cls
    return None


def create_module(
    algo: str, lora_name: str, org: nn.Module, params: AlgoParams
) -> AdapterModule | None:
    """A freshly initialised adapter for one layer, or None where LyCORIS would skip it."""
    if algo == "native":
        return NativeModule(lora_name, org)
    da = params.for_module(org)
    if da is None:
        return None
    dim, alpha = da
    if algo == "lora":
        return LoRAModule(lora_name, org, dim, alpha, use_tucker=params.use_tucker)
    if algo == "loha":
        return LoHaModule(lora_name, org, dim, alpha, use_tucker=params.use_tucker)
    if algo == "lokr":
        return LoKrModule(
            lora_name,
            org,
            dim,
            alpha,
            factor=params.factor,
            decompose_both=params.decompose_both,
            use_tucker=params.use_tucker,
            full_matrix=params.full_matrix,
        )
    raise ValueError(f"unknown algorithm {algo!r}")
