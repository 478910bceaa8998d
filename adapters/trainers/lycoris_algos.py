"""Every lycoris-lora 4.1.3 algorithm as a trainer, through lycoris-lora's own modules: one table
row per algorithm (its config class with typed options, its lycoris module, its defaults).

Names: ``lycoris-<algo>`` (``lycoris-lora``, ``lycoris-loha``, ``lycoris-lokr``, ``lycoris-dora``,
``lycoris-oft``, ``lycoris-boft``, ``lycoris-glora``, ``lycoris-ia3``, ``lycoris-dylora``,
``lycoris-tlora``) plus ``dora`` (= ``lycoris-dora``, the name issue 19 uses). The bit-exact
t2ibench restatements ``lora`` / ``loha`` / ``lokr`` stay; the ``lycoris-`` ones train the same
algorithms with lycoris' modules (and their extra options: weight decomposition, dropouts, ...).
LyCORIS' ``full`` is t2ibench's ``native`` trainer (same ``diff`` / ``diff_b`` keys). Files are
read back by lycoris-lora itself (:class:`~t2ibench.adapters.lycoris_wrap.LycorisModule`).
"""

from __future__ import annotations

from typing import Any, Literal

import torch.nn as nn
from pydantic import Field, model_validator

from ..algorithms import AlgoParams
from ..config import TrainerConfig
from ..lycoris_wrap import LycorisModule
from ..registry import TrainerSpec, register_trainer


class LycorisConfig(TrainerConfig, AlgoParams):
    """The shared trainer keys, LyCORIS' rank keys and the dropouts every lycoris module takes."""

    dropout: float = Field(0.0, ge=0, lt=1)  # on the adapter's output (bypass) / ΔW
    rank_dropout: float = Field(0.0, ge=0, lt=1)
    module_dropout: float = Field(0.0, ge=0, lt=1)

    def lycoris_kwargs(self) -> dict[str, Any]:
        """The lycoris module's keyword arguments after ``(lora_name, org, multiplier, dim,
        alpha)``."""
        return {
            "dropout": self.dropout,
            "rank_dropout": self.rank_dropout,
            "module_dropout": self.module_dropout,
            "use_tucker": self.use_tucker,
            **{k: getattr(self, k) for k in self.extra_kwargs()},
        }

    @classmethod
    def extra_kwargs(cls) -> list[str]:
        base = set(LycorisConfig.model_fields)
        return [k for k in cls.model_fields if k not in base]


class LoConOptions(LycorisConfig):
    weight_decompose: bool = False  # DoRA: train a magnitude per output channel (dora_scale)
    wd_on_out: bool = True  # DoRA's norm over the output dimension (LyCORIS' default)
    use_scalar: bool = False  # a trained scalar on ΔW (starts at 0)
    rs_lora: bool = False  # scale alpha/sqrt(dim)


class DoRAOptions(LoConOptions):
    weight_decompose: bool = True


class LoHaOptions(LycorisConfig):
    weight_decompose: bool = False
    wd_on_out: bool = True
    use_scalar: bool = False
    rs_lora: bool = False


class LoKrOptions(LycorisConfig):
    factor: int = -1  # Kronecker factor; -1: as balanced as the shape allows
    decompose_both: bool = False
    full_matrix: bool = False
    unbalanced_factorization: bool = False
    weight_decompose: bool = False
    wd_on_out: bool = True
    use_scalar: bool = False
    rs_lora: bool = False


class OFTOptions(LycorisConfig):
    """Diag-OFT / BOFT: ``dim`` is the block size asked for (LyCORIS' ``factorization`` /
    ``butterfly_factor`` of the output dimension); ``alpha`` is unused (LyCORIS stores the
    constraint there)."""

    constraint: float = Field(0.0, ge=0)  # COFT: bound on ‖R - I‖ per output channel; 0: none
    rescaled: bool = False  # a trained per-channel rescale


class GLoRAOptions(LycorisConfig):
    use_scalar: bool = False
    rs_lora: bool = False


class IA3Options(LycorisConfig):
    """IA3 trains one vector per layer (``dim`` / ``alpha`` are unused)."""

    train_on_input: bool = False  # scale the input channels instead of the output channels


class LinearOnly:
    """lycoris-lora 4.1.3 fails on convolutions for this algorithm (T-LoRA: a shape mismatch in
    its k×k forward; DyLoRA: it saves 2-D conv ups its own loader refuses): Linear layers only."""

    def for_module(self, module: nn.Module) -> tuple[int, float] | None:
        return None if isinstance(module, nn.Conv2d) else (self.dim, self.alpha)


class DyLoRAOptions(LinearOnly, LycorisConfig):
    block_size: int = Field(4, ge=1)  # rank step: each step trains a random rank prefix

    @model_validator(mode="after")
    def _dim_multiple(self) -> DyLoRAOptions:
        for key in ("dim", "conv_dim"):
            v = getattr(self, key)
            if v and v % self.block_size:
                raise ValueError(f"field {key!r} must be a multiple of block_size")
        return self


class TLoRAOptions(LinearOnly, LycorisConfig):
    """T-LoRA. Each training step sets lycoris' timestep rank mask
    (``lycoris.modules.tlora.set_timestep_mask``) from that step's noise level with lycoris' own
    schedule ``compute_timestep_mask``: ``r(t) = ⌊((T − t)/T)^mask_exponent · (dim − min_rank)⌋
    + min_rank`` ranks active (T-LoRA, Soboleva et al. 2025, §3: fewer ranks at high noise). T is
    the schedule's length on epsilon / v bases (t ∈ [0, 1000)), 1 on flow-matching bases (t = σ).
    lycoris' module holds one mask per forward (its ΔW is ``P·diag(λ·mask)·Q``, mask (1, rank)), so
    a batch shares one: that of the batch's mean noise level (exact at batch size 1). After
    training the mask is cleared: generation applies every rank, lycoris' behaviour when no mask
    is set (see docs/methods.md)."""

    sig_type: Literal["principal", "last", "middle"] = "principal"  # which singular vectors
    use_data_init: bool = True  # SVD of the base weight (False: of a random matrix)
    min_rank: int = Field(1, ge=1)  # ranks active at the highest noise level
    mask_exponent: float = Field(1.0, gt=0)  # lycoris' ``alpha`` of compute_timestep_mask

    @model_validator(mode="after")
    def _min_rank_within_dim(self) -> TLoRAOptions:
        if self.min_rank > self.dim:
            raise ValueError(f"field 'min_rank' ({self.min_rank}) exceeds dim ({self.dim})")
        return self

    def lycoris_kwargs(self) -> dict[str, Any]:
        kwargs = super().lycoris_kwargs()
        for key in ("min_rank", "mask_exponent"):  # the mask schedule's, not the module's
            kwargs.pop(key)
        return kwargs

    @staticmethod
    def before_step(network: Any, cfg: TLoRAOptions, timesteps: Any, max_timestep: float) -> None:
        from lycoris.modules.tlora import compute_timestep_mask, set_timestep_mask

        t = float(timesteps.float().mean())
        set_timestep_mask(
            compute_timestep_mask(t, max_timestep, cfg.dim, cfg.min_rank, cfg.mask_exponent)
        )

    @staticmethod
    def after_training() -> None:
        from lycoris.modules.tlora import clear_timestep_mask

        clear_timestep_mask()


def _module_class(name: str, lyco_class: str) -> type[LycorisModule]:
    """A :class:`LycorisModule` subclass that builds ``lycoris.modules.<lyco_class>`` (reading is
    shared)."""
    return type(
        f"Lycoris{name.title().replace('-', '')}Module",
        (LycorisModule,),
        {
            "lyco_class": lyco_class,
            "__module__": __name__,
        },
    )


# name, lycoris module (class name in lycoris.modules), config class, ss_network_args algo, defaults, description
# Defaults: the paper's LoRA settings (dim 8, alpha 4, lr 5e-4) for the rank algorithms; OFT /
# BOFT / IA3 at LyCORIS' recommended settings (docs/Guidelines.md of lycoris-lora: OFT block
# size 8 to 32, lr like LoRA's; IA3 lr 5e-3).
LYCORIS_ALGORITHMS: tuple[tuple[str, str, type[LycorisConfig], str, dict, str], ...] = (
    (
        "lycoris-lora",
        "LoConModule",
        LoConOptions,
        "locon",
        {"dim": 8, "alpha": 4.0},
        "LoRA / LoCon through lycoris-lora's LoConModule",
    ),
    (
        "lycoris-dora",
        "LoConModule",
        DoRAOptions,
        "locon",
        {"dim": 8, "alpha": 4.0},
        "DoRA: LoCon with weight decomposition (lycoris-lora, dora_wd)",
    ),
    (
        "dora",
        "LoConModule",
        DoRAOptions,
        "locon",
        {"dim": 8, "alpha": 4.0},
        "DoRA (= lycoris-dora)",
    ),
    (
        "lycoris-loha",
        "LohaModule",
        LoHaOptions,
        "loha",
        {"dim": 4, "alpha": 2.0},
        "LoHa through lycoris-lora's LohaModule (weight_decompose for DoRA-LoHa)",
    ),
    (
        "lycoris-lokr",
        "LokrModule",
        LoKrOptions,
        "lokr",
        {"dim": 10000, "alpha": 1.0, "factor": 8},
        "LoKr through lycoris-lora's LokrModule (weight_decompose for DoRA-LoKr)",
    ),
    (
        "lycoris-oft",
        "DiagOFTModule",
        OFTOptions,
        "diag-oft",
        {"dim": 16, "alpha": 0.0},
        "Diag-OFT: block-diagonal orthogonal rotation of the output channels (lycoris-lora)",
    ),
    (
        "lycoris-boft",
        "ButterflyOFTModule",
        OFTOptions,
        "boft",
        {"dim": 16, "alpha": 0.0},
        "BOFT: butterfly-factorised orthogonal rotation (lycoris-lora)",
    ),
    (
        "lycoris-glora",
        "GLoRAModule",
        GLoRAOptions,
        "glora",
        {"dim": 8, "alpha": 4.0},
        "GLoRA: W + W·A + B with low-rank A, B (lycoris-lora)",
    ),
    (
        "lycoris-ia3",
        "IA3Module",
        IA3Options,
        "ia3",
        {"lr": 5e-3},
        "IA3: a trained scale per output (or input) channel (lycoris-lora)",
    ),
    (
        "lycoris-dylora",
        "DyLoraModule",
        DyLoRAOptions,
        "dylora",
        {"dim": 8, "alpha": 4.0},
        "DyLoRA: LoRA trained over random rank prefixes (lycoris-lora); saved as LoRA",
    ),
    (
        "lycoris-tlora",
        "TLoraModule",
        TLoRAOptions,
        "tlora",
        {"dim": 8, "alpha": 8.0},
        "T-LoRA: SVD-initialised LoRA with trained singular values and the timestep rank mask "
        "(lycoris-lora)",
    ),
)

for _name, _lyco, _config, _algo, _defaults, _description in LYCORIS_ALGORITHMS:
    register_trainer(
        TrainerSpec(
            _name,
            _description,
            config_class=_config,
            module_class=_module_class(_name, _lyco),
            defaults={"lr": 5e-4, **_defaults},
            result_columns=("dim", "alpha"),
            lycoris_algo=_algo,
            # a config class may declare the training loop's per-step hooks (T-LoRA's mask)
            before_step=getattr(_config, "before_step", None),
            after_training=getattr(_config, "after_training", None),
        )
    )
