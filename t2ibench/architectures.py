"""The base-architecture registry: what a base model family (SD1.5, SDXL, SD3, FLUX ...) declares.

A base is one file that registers a :class:`BaseArchitecture` subclass instance: the built-ins in
``t2ibench/bases/`` (the package imports every module of its folder; ``import t2ibench`` imports
the package), third parties through the ``t2ibench.architectures`` entry-point group. The core
asks this registry, never a base by name:

* which architecture a local diffusers folder (its ``model_index.json`` class), a single-file
  checkpoint (its keys), a loaded pipeline (its class) or an adapter file (its keys) is;
* how to load it, generate with it (defaults), which layers each preset trains (per model part),
  how its text encoders are named in adapter files, and the training objective.

Named base *paths* (``--base toy``) stay in :mod:`t2ibench.profiles` (``t2ibench.bases`` group);
a path is then loaded by the architecture its folder declares. This module sits below ``models``
and the plug-ins (it imports neither), with the loading helpers the plug-ins share.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2ibench.errors import ConfigError, T2IBenchError
from t2ibench.registry import Registry

#: preset name → model part → regular expressions (full match) on the part's module names
PresetTable = Mapping[str, Mapping[str, tuple[str, ...]]]


class BaseMismatchError(T2IBenchError, ValueError):
    """An adapter (or a named architecture) does not fit the base model's architecture."""


class BaseModelError(T2IBenchError, ValueError):
    """A base model cannot be found or loaded; the message says what to pass instead."""


def dtype_kwarg() -> str:
    """diffusers ≥ 0.40 renamed ``torch_dtype`` to ``dtype`` (the old name warns)."""
    from diffusers.utils import deprecation_utils

    return (
        "dtype" if hasattr(deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE") else "torch_dtype"
    )


def wrap_load(fn: Any, where: Any) -> Any:
    """``fn()``, its loading errors as one :class:`BaseModelError` line."""
    try:
        return fn()
    except T2IBenchError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise BaseModelError(f"{where}: cannot load the base model: {exc}") from exc


def hub_pipeline(cls: Any, repo_id: str, common: dict) -> Any:
    """``cls.from_pretrained(repo_id)``: offline, only from the local Hugging Face cache."""
    from t2ibench.fsutil import hub_offline

    offline = hub_offline()
    try:
        return cls.from_pretrained(repo_id, local_files_only=offline, **common)
    except (OSError, ValueError) as exc:
        where = "the local Hugging Face cache (HF_HUB_OFFLINE is set)" if offline else "the hub"
        raise BaseModelError(
            f"base model {repo_id!r}: not found in {where} ({type(exc).__name__}). Pass a local "
            "diffusers folder (--base /path/to/sd15), a single .safetensors checkpoint, or 'tiny'"
        ) from exc


@dataclass(frozen=True)
class GenerationDefaults:
    """The base's usual sampling settings (applied under the user's own settings)."""

    resolution: int
    steps: int
    guidance_scale: float
    scheduler: str  # a name of t2ibench.pipeline.generate.SCHEDULERS


@dataclass(frozen=True)
class Objective:
    """The training objective.

    ``kind``: ``epsilon`` / ``v_prediction`` (DDPM noise schedule; the target follows the
    scheduler's ``prediction_type``) or ``flow_matching`` (rectified flow: ``x_t = (1-σ)x + σε``,
    target ``ε - x``, σ drawn by ``timestep_sampling`` and moved by ``shift`` as
    ``σ' = shift·σ / (1 + (shift-1)·σ)``, the shift of the base's FlowMatchEulerDiscreteScheduler).
    """

    kind: str
    timestep_sampling: str = "uniform"  # flow matching: uniform | logit_normal
    shift: float = 1.0
    description: str = ""


@dataclass(frozen=True)
class CostFigures:
    """Assumed per-GPU throughput of a base at its default generation settings, for
    ``t2ibench sweep --dry-run`` (assumptions with their source, not measurements).

    ``image_s``: seconds per image; ``train_sample_s``: seconds per training sample (one image of
    a batch, forward and backward; None: the paper's Table 5 rates, SD1.5 only); ``gpu``: the card
    the figure is for."""

    image_s: float
    train_sample_s: float | None
    gpu: str
    source: str


def train_sample_s_from_generation(image_s: float, steps: int, forwards_per_step: int) -> float:
    """A training sample ≈ 3 denoiser forwards (forward + backward ≈ 3× a forward), one forward
    costing ``image_s / (steps · forwards_per_step)`` (2 with classifier-free guidance). On the
    paper's SD1.5 figures (1.3 s an image, DDIM 30, CFG) this gives 0.065 s a sample against
    Table 5's 0.063 s (LoRA attn-mlp: 4.9 h for 34,750 steps of 8)."""
    return 3 * image_s / (steps * forwards_per_step)


@dataclass(frozen=True)
class TextEncoderPart:
    """One text encoder: the adapter part name, its pipeline attribute, its kohya key prefix."""

    part: str  # te, te1, te2 (adapter parts; "unet" is the denoiser's)
    attribute: str  # text_encoder, text_encoder_2, ...
    kohya_prefix: str  # lora_te, lora_te1, lora_te2
    description: str = ""
    trainable: bool = True  # False: never adapted (a T5 / Qwen encoder kept frozen, as trainers do)


@dataclass
class BaseArchitecture:
    """A base model family. Subclasses implement :meth:`load`, :meth:`condition`,
    :meth:`predict` and :meth:`training_loss` (and :meth:`adapter_state` where other trainers name
    its modules otherwise); the rest is data."""

    name: str
    description: str
    #: diffusers pipeline classes (``model_index.json`` ``_class_name``) of this family
    pipeline_classes: tuple[str, ...]
    #: the pipeline attribute holding the denoiser (``unet`` / ``transformer``)
    denoiser: str
    text_encoders: tuple[TextEncoderPart, ...]
    presets: PresetTable
    generation: GenerationDefaults
    objective: Objective
    #: trainer / tool → how its adapter files name this base's layers (documentation and detection)
    key_conventions: Mapping[str, str] = field(default_factory=dict)
    #: single-file checkpoint keys only this family has (any one present identifies it)
    checkpoint_markers: tuple[str, ...] = ()
    #: regular expressions (search) on adapter keys (kohya form, as read) that point at this
    #: family; a key may point at several (``lora_te1_``), see :func:`adapter_architectures`
    adapter_markers: tuple[str, ...] = ()
    #: a short label for messages (``SDXL``)
    label: str = ""
    #: the architecture of a single file no other base claims (a pickle, whose keys are not read)
    fallback: bool = False
    #: assumed throughput for sweep cost projections (None: the projection's default rates)
    cost: CostFigures | None = None

    # -- loading ---------------------------------------------------------------------------------
    def load(self, kind: str, where: Any, *, dtype: Any, allow_pickle: bool, config: Any) -> Any:
        """The pipeline from a local folder (``kind == "folder"``), a single file, or a hub id."""
        raise NotImplementedError

    def load_folder(self, folder: Path, dtype: Any) -> Any:
        """``<pipeline class>.from_pretrained(folder)``, local files only."""
        import diffusers

        cls = getattr(diffusers, self._folder_class(folder))
        return wrap_load(
            lambda: cls.from_pretrained(folder, local_files_only=True, **{dtype_kwarg(): dtype}),
            folder,
        )

    def _folder_class(self, folder: Path) -> str:
        found = folder_pipeline_class(folder)
        return found if found in self.pipeline_classes else self.pipeline_classes[0]

    def finish(self, pipe: Any, attention: str) -> None:
        """After loading: deterministic attention where the base allows it (see SD1.5)."""

    # -- model parts -----------------------------------------------------------------------------
    def denoiser_of(self, pipe: Any) -> Any:
        return getattr(pipe, self.denoiser)

    def adapter_parts(self, pipe: Any, train_text_encoder: bool = True) -> dict[str, Any]:
        """part → module an adapter may wrap (``unet``: the denoiser, whatever its class)."""
        parts = {"unet": self.denoiser_of(pipe)}
        for te in self.text_encoders:
            module = getattr(pipe, te.attribute, None)
            parts[te.part] = module if (train_text_encoder and te.trainable) else None
        return parts

    def all_parts(self, pipe: Any) -> dict[str, Any]:
        """Every adapted-or-not part, to read a file that adapts any of them. The first text
        encoder also answers to ``te`` (diffusers names SDXL's and FLUX's CLIP-L
        ``text_encoder.``, read as ``lora_te_``)."""
        parts = {"unet": self.denoiser_of(pipe)}
        for te in self.text_encoders:
            parts[te.part] = getattr(pipe, te.attribute, None)
        if self.text_encoders and "te" not in parts:
            parts["te"] = parts[self.text_encoders[0].part]
        return parts

    def frozen_modules(self, pipe: Any) -> dict[str, Any]:
        """Every weight-holding component (checked for bad weights, frozen while training)."""
        out = {self.denoiser: self.denoiser_of(pipe)}
        for te in self.text_encoders:
            if getattr(pipe, te.attribute, None) is not None:
                out[te.attribute] = getattr(pipe, te.attribute)
        out["vae"] = pipe.vae
        return out

    def preset_patterns(self, preset: str, part: str) -> tuple[str, ...]:
        """The module-name patterns ``preset`` trains in ``part`` (``te1`` reads ``te``'s)."""
        if preset == "none":
            return ()
        try:
            table = self.presets[preset]
        except KeyError:
            raise ConfigError(
                f"preset: unknown preset {preset!r} for base {self.name} (known: "
                f"{', '.join(sorted(self.presets))}, none)"
            ) from None
        if part in table:
            return tuple(table[part])
        return tuple(table.get("te", ())) if part.startswith("te") else ()

    # -- training --------------------------------------------------------------------------------
    def latent_scale(self, vae: Any) -> tuple[float, float]:
        """``(shift, scale)``: the denoiser sees ``(latent - shift) * scale``."""
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return float(shift), float(vae.config.scaling_factor)

    def normalize_latents(self, vae: Any, latent: Any) -> Any:
        """A VAE sample as the denoiser sees it: ``(latent - shift) * scale`` (FLUX.2 patchifies
        and normalises by its VAE's batch-norm statistics instead)."""
        shift, sf = self.latent_scale(vae)
        return (latent - shift) * sf if shift else latent * sf

    def condition(self, pipe: Any, captions: Sequence[str], device: Any) -> dict[str, Any]:
        """The denoiser's text conditioning for ``captions`` (with gradients into the encoders)."""
        raise NotImplementedError

    def predict(self, pipe: Any, noisy: Any, t: Any, cond: Mapping[str, Any]) -> Any:
        """The denoiser's output for latents ``noisy`` at timesteps ``t``."""
        raise NotImplementedError

    def training_loss(
        self,
        pipe: Any,
        latents: Any,
        captions: Sequence[str],
        gen: Any,
        scheduler: Any,
        *,
        autocast: Any = None,
        before_predict: Any = None,
    ) -> Any:
        """Mean-squared error of the objective on one batch; randomness only from ``gen``
        (the plug-ins call :mod:`t2ibench.bases.objectives`). ``before_predict(timesteps,
        max_timestep)``: called with the batch's noise levels before the denoiser runs (see
        :mod:`t2ibench.bases.objectives`; training passes it only when the trainer has a
        per-step hook)."""
        raise NotImplementedError

    def flow_shift(self, scheduler: Any, latents: Any) -> float:
        """The σ shift flow-matching training draws with for ``latents`` (B, C, H, W): the
        objective's static ``shift`` (a base whose sampler shifts by resolution overrides it)."""
        return self.objective.shift

    def training_scheduler(self, pipe: Any) -> Any:
        """The noise scheduler training draws from (DDPM on the base's schedule, or the flow
        scheduler itself)."""
        if self.objective.kind == "flow_matching":
            return pipe.scheduler
        from diffusers import DDPMScheduler

        return DDPMScheduler.from_config(pipe.scheduler.config)

    def call_kwargs(self, pipe: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The generation call's keyword arguments this base's pipeline takes (FLUX has no
        ``eta``; a negative prompt only where it has one)."""
        import inspect

        accepted = inspect.signature(type(pipe).__call__).parameters
        return {k: v for k, v in kwargs.items() if k in accepted}

    # -- adapter files ---------------------------------------------------------------------------
    def adapter_state(self, tensors: Mapping[str, Any], pipe: Any) -> dict[str, Any]:
        """An adapter file's kohya tensors on this base's module names (a base whose trainers name
        modules otherwise, e.g. sd-scripts' SGM names on SDXL, maps them here)."""
        return dict(tensors)

    @property
    def title(self) -> str:
        return self.label or self.name


ARCHITECTURES: Registry[BaseArchitecture] = Registry("base architecture", "t2ibench.architectures")


def register_architecture(arch: BaseArchitecture, *, overwrite: bool = False) -> BaseArchitecture:
    return ARCHITECTURES.register(arch.name, arch, overwrite=overwrite)


def get_architecture(name: str) -> BaseArchitecture:
    try:
        return ARCHITECTURES.get(name)
    except KeyError as exc:
        raise ConfigError(f"--base: {exc}") from None


def list_architectures() -> list[str]:
    return ARCHITECTURES.names()


def is_architecture(name: object) -> bool:
    return isinstance(name, str) and name in ARCHITECTURES


def _all() -> list[BaseArchitecture]:
    return [ARCHITECTURES.get(n) for n in ARCHITECTURES.names()]


def folder_pipeline_class(folder: Path) -> str:
    try:
        data = json.loads((Path(folder) / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(data.get("_class_name", "")) if isinstance(data, dict) else ""


def architecture_of_folder(folder: Path) -> BaseArchitecture:
    """The architecture whose pipeline class the folder's ``model_index.json`` names."""
    cls = folder_pipeline_class(folder)
    for arch in _all():
        if cls in arch.pipeline_classes:
            return arch
    known = ", ".join(f"{a.name} ({'/'.join(a.pipeline_classes)})" for a in _all())
    raise ConfigError(
        f"{folder}: pipeline class {cls or '(none)'!r} is no known base; known: {known}"
    )


def architecture_of_keys(keys: Iterable[str]) -> BaseArchitecture:
    """The architecture of a single-file checkpoint from its keys (the ``fallback`` one when none
    claims it: an SD1.5-layout file carries no key unique to it)."""
    keyset = set(keys)
    for arch in _all():
        if any(k in keyset for k in arch.checkpoint_markers):
            return arch
    for arch in _all():
        if arch.fallback:
            return arch
    raise ConfigError("single-file checkpoint: its keys match no known base architecture")


def architecture_of_pipe(pipe: Any) -> BaseArchitecture:
    """The architecture of a loaded pipeline (by its class; the tiny and toy bases are SD1.5)."""
    cls = type(pipe).__name__
    for arch in _all():
        if cls in arch.pipeline_classes:
            return arch
    # A look-alike object (tests): of the architectures whose parts it has, the one with the most
    # (an SDXL look-alike has SD1.5's unet and text_encoder too).
    fits = [
        arch
        for arch in _all()
        if hasattr(pipe, arch.denoiser)
        and all(hasattr(pipe, te.attribute) for te in arch.text_encoders)
    ]
    if fits:
        return max(fits, key=lambda arch: len(arch.text_encoders))
    raise ConfigError(f"{cls}: no registered base architecture loads this pipeline class")


def pipeline_call_kwargs(pipe: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The generation call's arguments the pipeline's base takes (all of them for an object of
    no registered base: a stand-in pipeline)."""
    try:
        arch = architecture_of_pipe(pipe)
    except ConfigError:
        return kwargs
    return arch.call_kwargs(pipe, kwargs)


def adapter_architectures(keys: Iterable[str]) -> list[tuple[BaseArchitecture, str]]:
    """The ``(architecture, a key that shows it)`` pairs an adapter's keys point at.

    Each key names the architectures whose markers it matches (``lora_te1_`` fits SDXL, SD3 and
    FLUX; ``lora_unet_output_blocks_0_1_...`` only SDXL); the file's families are those every
    telling key agrees on, or all of them when the keys disagree. Empty: nothing tells."""
    archs = [(a, re.compile("|".join(f"(?:{m})" for m in a.adapter_markers))) for a in _all()]
    archs = [(a, rx) for a, rx in archs if a.adapter_markers]
    agreed: set[str] | None = None
    seen: set[str] = set()
    example: dict[str, tuple[int, str]] = {}  # arch → (claimants of the key, key): most telling
    for key in sorted(keys):
        claim = {a.name for a, rx in archs if rx.search(key)}
        if not claim:
            continue
        seen |= claim
        agreed = claim if agreed is None else agreed & claim
        for name in claim:
            if name not in example or len(claim) < example[name][0]:
                example[name] = (len(claim), key)
    families = agreed or seen
    return [(a, example[a.name][1]) for a, _ in archs if a.name in families]


def check_adapter_fits(keys: Iterable[str], arch: BaseArchitecture, where: object) -> None:
    """One line when an adapter file is for another base family than ``arch``."""
    found = adapter_architectures(keys)
    if found and all(other.name != arch.name for other, _ in found):
        other, key = min(found, key=lambda f: f[0].name)
        names = " or ".join(f"{a.title} ({a.name})" for a, _ in found)
        raise BaseMismatchError(
            f"{where}: an adapter for {names} (key {key!r}), but the base is {arch.title} "
            f"({arch.name}); pass a {other.title} base (--base-path)"
        )


__all__ = [
    "ARCHITECTURES",
    "BaseArchitecture",
    "BaseMismatchError",
    "BaseModelError",
    "GenerationDefaults",
    "Objective",
    "TextEncoderPart",
    "adapter_architectures",
    "architecture_of_folder",
    "architecture_of_keys",
    "architecture_of_pipe",
    "check_adapter_fits",
    "get_architecture",
    "is_architecture",
    "list_architectures",
    "register_architecture",
]
