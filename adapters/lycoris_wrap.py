"""An adapter module that *is* a lycoris-lora module: the algorithm's math, initialisation, saved
keys and file reading are lycoris-lora's own (``lycoris.modules.*``), not restated here.

t2ibench's own LoRA / LoHa / LoKr modules restate LyCORIS bit for bit (and pin the torch backend);
this wrapper is how every other LyCORIS algorithm (DoRA weight decomposition, Diag-OFT, BOFT,
GLoRA, IA3, DyLoRA, T-LoRA) is trained and applied. The lycoris module is a submodule, so its
parameters are the adapter's (trained, saved, moved by ``.to``); the base layer stays out of it.

Saved tensors are the lycoris module's ``state_dict()`` (its ``custom_state_dict`` where it has
one) under the kohya stem, exactly what lycoris-lora's ``save_weights`` writes for a kohya network
(``lora_unet_<path>.<suffix>``); files are read back with lycoris-lora's own
``get_module`` / ``make_module_from_state_dict``, whichever algorithm wrote them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn as nn

from t2ibench.errors import ConfigError

from .algorithms import AdapterModule

#: every tensor suffix a lycoris-lora 4.1.3 module saves (the union of ``weight_list`` over
#: ``lycoris.modules.MODULE_LIST``; checked by ``foreign.check_known_keys``). Stated, not computed at
#: import, so registering the trainers does not import lycoris (and bitsandbytes); a test compares
#: it with the installed lycoris-lora.
LYCORIS_SUFFIXES: tuple[str, ...] = (
    "a1.weight", "a2.weight", "alpha", "b1.weight", "b2.weight", "b_norm", "bm.weight", "diff",
    "diff_b", "dora_scale", "hada_t1", "hada_t2", "hada_w1_a", "hada_w1_b", "hada_w2_a",
    "hada_w2_b", "lambda_layer", "lokr_t1", "lokr_t2", "lokr_w1", "lokr_w1_a", "lokr_w1_b",
    "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lora_down.weight", "lora_mid.weight", "lora_up.weight",
    "oft_blocks", "on_input", "p_layer.weight", "q_layer.weight", "rescale", "w_norm", "weight",
)  # fmt: skip

#: saved layers only lycoris-lora's modules read (t2ibench's LoRA / LoHa / LoKr / native read
#: the plain ones): weight decomposition (``dora_scale`` beside any rank algorithm's tensors),
#: Diag-OFT / BOFT blocks, GLoRA, IA3, T-LoRA
LYCORIS_SIGNATURES: tuple[tuple[str, ...], ...] = (
    ("lora_up.weight", "dora_scale"),
    ("hada_w1_a", "dora_scale"),
    ("lokr_w1", "dora_scale"),
    ("lokr_w1_a", "dora_scale"),
    ("oft_blocks",),
    ("a1.weight", "b1.weight"),
    ("on_input",),
    ("lambda_layer",),
)


class LycorisModule(AdapterModule):
    """One layer's lycoris-lora module (``self.lyco``), driven by t2ibench's network.

    ``forward`` is the lycoris module's forward (its own ``org_forward`` is the base layer's class
    forward, captured before t2ibench routes the layer through this adapter); ``delta_weight`` is
    lycoris' merged weight minus the base weight, so merging gives lycoris' ``merge_to``.
    """

    algo: ClassVar[str] = "lycoris"
    keys: ClassVar[dict[str, str]] = {k: k for k in LYCORIS_SUFFIXES}
    signatures: ClassVar[tuple[tuple[str, ...], ...]] = LYCORIS_SIGNATURES
    #: the name of the lycoris-lora module class a trainer builds, in ``lycoris.modules`` (None:
    #: reading only); a name, so registering the trainers does not import lycoris (bitsandbytes)
    lyco_class: ClassVar[str | None] = None

    def __init__(self, lora_name: str, org: nn.Module, lyco: nn.Module) -> None:
        self._mult = 1.0
        super().__init__(lora_name, org)
        self.lyco = lyco
        self.lyco.multiplier = self._mult
        self.algo = getattr(lyco, "name", type(lyco).__name__)

    # the network sets ``multiplier``; lycoris' forward reads its own
    @property
    def multiplier(self) -> float:
        return self._mult

    @multiplier.setter
    def multiplier(self, value: float) -> None:
        self._mult = float(value)
        lyco = self.__dict__.get("_modules", {}).get("lyco")
        if lyco is not None:
            lyco.multiplier = float(value)

    # -- math ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.lyco(x)

    def delta_weight(self) -> torch.Tensor:
        w = self.org.weight
        lyco = self.lyco
        if type(lyco).__name__ in ("LohaModule", "LokrModule"):
            # lycoris-lora 4.1.3's LoHa / LoKr get_diff_weight (and so get_merged_weight) scale
            # ΔW twice; their forward uses get_weight, scaled once (tests/adapters/test_parity.py)
            diff = lyco.get_weight(w.shape).reshape(w.shape).to(w.dtype) * lyco.scalar
            if not getattr(lyco, "wd", False):
                return diff.float().reshape(self.weight_shape)
            merged = lyco.apply_weight_decompose(w + diff, 1.0)
        else:
            merged = lyco.get_merged_weight(multiplier=1.0, shape=w.shape, device=w.device)[0]
        return (merged.float() - w.float()).reshape(self.weight_shape)

    def delta_bias(self) -> torch.Tensor | None:
        if type(self.lyco).__name__ in ("LohaModule", "LokrModule"):
            return None
        b = self.org.bias
        w = self.org.weight
        merged = self.lyco.get_merged_weight(multiplier=1.0, shape=w.shape, device=w.device)[1]
        if merged is None:
            return None
        return merged.float() - (0 if b is None else b.float())

    # -- files -------------------------------------------------------------------------------
    def state_items(self) -> dict[str, torch.Tensor]:
        return dict(self.lyco.state_dict(keep_vars=True))

    def load_state_items(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Copy saved tensors into this module (resume): lycoris' own ``load_state_dict``."""
        self.lyco.load_state_dict(
            {k: v.to(self.lyco.dtype_tensor.dtype) for k, v in tensors.items()}, strict=True
        )

    @classmethod
    def from_state(
        cls, lora_name: str, org: nn.Module, tensors: Mapping[str, torch.Tensor]
    ) -> LycorisModule:
        """The module lycoris-lora itself builds from these tensors (``get_module`` picks the
        algorithm from the keys and shapes; ``make_module_from_state_dict`` builds it)."""
        from lycoris.modules import get_module, make_module

        state = {f"{lora_name}.{k}": v.float() for k, v in tensors.items()}
        lyco_type, params = get_module(state, lora_name)
        if lyco_type is None:
            raise ValueError(f"{lora_name}: lycoris-lora reads no module from {sorted(tensors)}")
        if lyco_type.__name__ == "IA3Module":
            # lycoris-lora 4.1.3's IA3 loader takes one tensor of the two it extracts (TypeError)
            # and drops ``on_input``: build its module from both here
            weight, on_input = params
            lyco = lyco_type(lora_name, org, 1.0, train_on_input=bool(on_input))
            with torch.no_grad():
                lyco.weight.copy_(weight)
        else:
            lyco = make_module(lyco_type, params, lora_name, org)
        if lyco is None:
            raise ValueError(f"{lora_name}: lycoris-lora cannot rebuild a {lyco_type.__name__}")
        return cls(lora_name, org, lyco)

    @classmethod
    def create(cls, lora_name: str, org: nn.Module, cfg: Any) -> LycorisModule | None:
        """A fresh lycoris module from the trainer config (its :meth:`lycoris_kwargs`)."""
        if cls.lyco_class is None:
            raise TypeError(f"{cls.__name__} reads files only; it builds no module")
        da = cfg.for_module(org) if hasattr(cfg, "for_module") else (4, 1.0)
        if da is None:
            return None
        dim, alpha = da
        # on the meta device (sizes) lycoris' modules copy the weight to the CPU (DoRA's norm):
        # build on an uninitialised CPU stand-in of the layer, then move to meta
        built_on = copy.deepcopy(org).to_empty(device="cpu") if org.weight.is_meta else org
        try:
            import lycoris.modules

            lyco_class = getattr(lycoris.modules, cls.lyco_class)
            lyco = lyco_class(lora_name, built_on, 1.0, dim, alpha, **cfg.lycoris_kwargs())
        except (ValueError, AssertionError) as exc:  # e.g. BOFT: no butterfly factorisation
            raise ConfigError(f"{lora_name}: lycoris-lora cannot build this layer: {exc}") from None
        lyco.to(device=org.weight.device, dtype=torch.float32)
        if built_on is not org:
            lyco.org_module = [org]
            lyco.org_forward = org.forward
        return cls(lora_name, org, lyco)
