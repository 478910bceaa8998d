"""PEFT's tuners as trainers, through PEFT's own layers (``t2ibench.adapters.peft_wrap``): one
table row per tuner (its config class with typed options mapped to PEFT's config, defaults).

Names: ``peft-lora``, ``peft-dora``, ``peft-loha``, ``peft-lokr``, ``peft-oft``, ``peft-boft``,
``peft-vera``, ``peft-hra``, ``peft-ia3``. Every tuner adapts the layers the preset selects
(Linear and Conv2d; a tuner PEFT does not support on a layer type leaves it alone, see
docs/methods.md). Checkpoints hold PEFT's tensors under kohya stems, the PEFT config in the
metadata (``t2ibench_peft_config``); ``t2ibench export --format peft`` is not needed to read them
back, and PEFT's own ``adapter_config.json`` folders are read as well.
"""

from __future__ import annotations

import json
from typing import Any

import torch.nn as nn
from pydantic import Field

from ..config import TrainerConfig
from ..peft_wrap import PeftModule
from ..registry import TrainerSpec, register_trainer


class PeftTrainerConfig(TrainerConfig):
    """The shared trainer keys; subclasses add the tuner's own keys and map them to PEFT."""

    peft_type: str = ""  # fixed per trainer (a default, not set by users)

    def peft_kwargs(self) -> dict[str, Any]:
        raise NotImplementedError

    def peft_config(self, layer: nn.Module) -> Any:
        """PEFT's config for one layer (None: leave the layer alone)."""
        from ..peft_wrap import peft_config_from_dict

        if isinstance(layer, nn.Conv2d) and not self.supports_conv():
            return None
        data = {"peft_type": self.peft_type, "target_modules": ["layer"], **self.peft_kwargs()}
        if self.peft_type == "VERA":
            data["save_projection"] = False  # PeftModule saves the layer's projection slices
        return peft_config_from_dict(data)

    def supports_conv(self) -> bool:
        return True

    def peft_config_json(self) -> str:
        """The PEFT config written with checkpoints (``target_modules`` left to the preset)."""
        return json.dumps({"peft_type": self.peft_type, **self.peft_kwargs()}, sort_keys=True)


class PeftLoRAConfig(PeftTrainerConfig):
    dim: int = Field(8, gt=0)  # PEFT's r
    alpha: float = Field(4.0, gt=0)  # PEFT's lora_alpha (scale alpha/r)
    dropout: float = Field(0.0, ge=0, lt=1)
    use_rslora: bool = False  # scale alpha/sqrt(r)
    use_dora: bool = False  # DoRA: magnitude per output channel (lora_magnitude_vector)

    def peft_kwargs(self) -> dict[str, Any]:
        return {
            "r": self.dim,
            "lora_alpha": self.alpha,
            "lora_dropout": self.dropout,
            "use_rslora": self.use_rslora,
            "use_dora": self.use_dora,
        }


class PeftDoRAConfig(PeftLoRAConfig):
    use_dora: bool = True


class PeftLoHaConfig(PeftTrainerConfig):
    dim: int = Field(4, gt=0)
    alpha: float = Field(2.0, gt=0)
    rank_dropout: float = Field(0.0, ge=0, lt=1)
    module_dropout: float = Field(0.0, ge=0, lt=1)
    use_effective_conv2d: bool = False  # Tucker-like decomposition of k×k convolutions

    def peft_kwargs(self) -> dict[str, Any]:
        return {
            "r": self.dim,
            "alpha": self.alpha,
            "rank_dropout": self.rank_dropout,
            "module_dropout": self.module_dropout,
            "use_effective_conv2d": self.use_effective_conv2d,
        }


class PeftLoKrConfig(PeftLoHaConfig):
    decompose_both: bool = False
    factor: int = -1  # PEFT's decompose_factor

    def peft_kwargs(self) -> dict[str, Any]:
        return {
            **super().peft_kwargs(),
            "decompose_both": self.decompose_both,
            "decompose_factor": self.factor,
        }


class PeftOFTConfig(PeftTrainerConfig):
    block_size: int = Field(32, ge=0)  # PEFT's oft_block_size (0: from dim)
    dim: int = Field(0, ge=0)  # PEFT's r: number of blocks (0: from block_size)
    coft: bool = False  # constrained OFT
    eps: float = Field(6e-5, gt=0)  # COFT's bound
    block_share: bool = False
    use_cayley_neumann: bool = True
    module_dropout: float = Field(0.0, ge=0, lt=1)

    def peft_kwargs(self) -> dict[str, Any]:
        return {
            "r": self.dim,
            "oft_block_size": self.block_size,
            "coft": self.coft,
            "eps": self.eps,
            "block_share": self.block_share,
            "use_cayley_neumann": self.use_cayley_neumann,
            "module_dropout": self.module_dropout,
        }


class PeftBOFTConfig(PeftTrainerConfig):
    block_size: int = Field(4, ge=0)  # boft_block_size (0: from block_num)
    block_num: int = Field(0, ge=0)  # boft_block_num
    n_butterfly_factor: int = Field(1, ge=1)  # boft_n_butterfly_factor
    dropout: float = Field(0.0, ge=0, lt=1)  # boft_dropout

    def peft_kwargs(self) -> dict[str, Any]:
        return {
            "boft_block_size": self.block_size,
            "boft_block_num": self.block_num,
            "boft_n_butterfly_factor": self.n_butterfly_factor,
            "boft_dropout": self.dropout,
        }


class PeftVeRAConfig(PeftTrainerConfig):
    dim: int = Field(256, gt=0)  # PEFT's r (the shared projections' rank)
    projection_prng_key: int = 0
    d_initial: float = Field(0.1, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)

    def supports_conv(self) -> bool:
        return False  # PEFT's VeRA adapts Linear layers only

    def peft_kwargs(self) -> dict[str, Any]:
        return {
            "r": self.dim,
            "projection_prng_key": self.projection_prng_key,
            "d_initial": self.d_initial,
            "vera_dropout": self.dropout,
            "save_projection": True,
        }


class PeftHRAConfig(PeftTrainerConfig):
    dim: int = Field(8, gt=0)  # PEFT's r: number of Householder reflections
    apply_GS: bool = False  # Gram-Schmidt orthogonalisation of the reflections

    def peft_kwargs(self) -> dict[str, Any]:
        return {"r": self.dim, "apply_GS": self.apply_GS}


class PeftIA3Config(PeftTrainerConfig):
    """IA3 scales each selected layer's output channels (PEFT's feed-forward variant, which
    scales the input, is read from PEFT folders but not offered here)."""

    def peft_kwargs(self) -> dict[str, Any]:
        return {"feedforward_modules": []}


# name, PEFT type, config class, defaults, description
PEFT_TUNERS: tuple[tuple[str, str, type[PeftTrainerConfig], dict, str], ...] = (
    ("peft-lora", "LORA", PeftLoRAConfig, {}, "LoRA through PEFT's lora layers"),
    ("peft-dora", "LORA", PeftDoRAConfig, {}, "DoRA through PEFT (LoraConfig use_dora)"),
    ("peft-loha", "LOHA", PeftLoHaConfig, {}, "LoHa through PEFT's loha layers"),
    ("peft-lokr", "LOKR", PeftLoKrConfig, {}, "LoKr through PEFT's lokr layers"),
    ("peft-oft", "OFT", PeftOFTConfig, {}, "OFT through PEFT (block-diagonal, Cayley)"),
    ("peft-boft", "BOFT", PeftBOFTConfig, {}, "BOFT through PEFT (butterfly OFT)"),
    ("peft-vera", "VERA", PeftVeRAConfig, {"lr": 5e-3}, "VeRA through PEFT (Linear layers)"),
    ("peft-hra", "HRA", PeftHRAConfig, {}, "HRA through PEFT (Householder reflections)"),
    ("peft-ia3", "IA3", PeftIA3Config, {"lr": 5e-3}, "IA3 through PEFT"),
)

for _name, _type, _config, _defaults, _description in PEFT_TUNERS:
    register_trainer(
        TrainerSpec(
            _name,
            _description,
            config_class=_config,
            module_class=PeftModule,
            defaults={"lr": 5e-4, **_defaults, "peft_type": _type},
            result_columns=tuple(
                k for k in ("dim", "alpha", "block_size") if k in _config.model_fields
            ),
            lycoris_algo=_name,
        )
    )
