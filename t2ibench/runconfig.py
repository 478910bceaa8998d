"""The run config, declared once: what ``t2ibench run`` trains, generates and evaluates.

:class:`RunConfig` is the one schema behind the ``t2ibench run`` options (derived from the fields
marked ``cli``), profile files, sweep grids (tables of overrides) and ``run.json`` (the resolved
config). Its defaults are the paper's protocol; a profile (``t2ibench.profiles``) supplies other
defaults and overrides come last. An override names a key by its dotted path::

    trainer.dim = 8            # the trainer's own keys: checked against its config class
    generate.steps = 30
    evaluate.encoders = ["dinov2-l@tiny"]
    dim = 8                    # shorthand: a key that is not a section is a trainer key
    trainer = "loha"           # shorthand for trainer.trainer (which trainer)

Values are TOML values (``--set lr=1e-3``, ``--set save_epochs=[1, 2]``); pydantic checks their
types and the error names the source, the key and what it expected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from t2ibench.errors import ConfigError
from t2ibench.validation import parse_assignment, validation_message

PAPER_ENCODERS = ["dinov2-l", "clip-l14", "convnextv2-l", "vgg19"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GenerateConfig(_Section):
    """Sampling: the paper's DDIM 30 steps, CFG 7, 100 images per leaf and prompt type."""

    images_per_leaf: int = Field(
        100, ge=1, description="Images per leaf and prompt type.", json_schema_extra={"cli": True}
    )
    prompt_types: list[str] | None = Field(
        None,
        description="Prompt types (default: every registered one).",
        json_schema_extra={"cli": True},
    )
    steps: int = Field(
        30, ge=1, description="Sampling steps (DDIM).", json_schema_extra={"cli": True}
    )
    guidance_scale: float = Field(
        7.0, description="Classifier-free guidance scale.", json_schema_extra={"cli": "--cfg"}
    )
    resolution: int | None = Field(None, ge=8, description="Image side (default: the trainer's).")
    batch_size: int = Field(
        8, ge=1, description="Generation batch size.", json_schema_extra={"cli": True}
    )
    negative_prompt: str | None = None
    scheduler: str | None = Field(
        None, description="Sampler (ddim, euler, flow-euler, ...; default: ddim or the base's)."
    )
    workers: int = Field(
        1,
        ge=1,
        description="Ray workers that share generation (1: in this process; results are the same).",
        json_schema_extra={"cli": "--generate-workers"},
    )
    # How the sampler runs (docs/performance.md#generation-speed); each changes pixels only by
    # float rounding, and a value other than its default is another run (part of the run key).
    dtype: str = Field(
        "fp32",
        pattern="^(fp32|fp16|bf16)$",
        description="Generation precision: fp32 (default; CPU results unchanged), fp16 or bf16 "
        "(the base is loaded in it).",
        json_schema_extra={"cli": "--dtype"},
    )
    channels_last: bool = Field(
        False,
        description="Channels-last memory layout for the denoiser and VAE while generating.",
        json_schema_extra={"cli": "--channels-last"},
    )
    compile: bool = Field(
        False,
        description="torch.compile the denoiser for generation (first batch pays the compile).",
        json_schema_extra={"cli": "--compile"},
    )
    fuse_adapter: bool = Field(
        False,
        description="Merge each adapter's ΔW into the base weights while generating (restored "
        "exactly after) instead of running the adapter modules in every forward.",
        json_schema_extra={"cli": "--fuse-adapter"},
    )
    attention: str = Field(
        "plain",
        pattern="^(plain|sdpa)$",
        description="UNet bases' attention: plain (default, pinned for reproducibility) or sdpa "
        "(torch's scaled_dot_product_attention, diffusers' AttnProcessor2_0).",
        json_schema_extra={"cli": "--attention"},
    )


class EvaluateConfig(_Section):
    """Encoders (``name``, ``name@tiny`` or ``name@WEIGHTS``), resize modes and metrics."""

    encoders: list[str] = Field(
        default_factory=lambda: list(PAPER_ENCODERS),
        description="Encoders: name, name@tiny or name@WEIGHTS.",
        json_schema_extra={"cli": True},
    )
    resize: list[str] | None = Field(
        None, description="Resize modes for image encoders.", json_schema_extra={"cli": True}
    )
    metrics: list[str] | None = Field(
        None,
        description="Metrics (default: every registered one).",
        json_schema_extra={"cli": True},
    )
    workers: int = Field(
        1,
        ge=1,
        description="Ray workers that share the encoding (1: in this process; same values).",
        json_schema_extra={"cli": "--evaluate-workers"},
    )


class BudgetConfig(_Section):
    """How many images: all of them (``full``), or in rounds until the intervals say enough
    (``adaptive``: :mod:`t2ibench.pipeline.adaptive`, docs/budget.md)."""

    mode: str = Field(
        "full",
        pattern="^(full|adaptive)$",
        description="full: every image; adaptive: rounds of images in a fixed seeded order, a "
        "checkpoint x prompt type stopping once its interval is narrow enough (sweeps and "
        "checkpoint folders: also once a config's place is settled).",
        json_schema_extra={"cli": "--budget"},
    )
    width: float = Field(
        0.01,
        gt=0,
        description="--budget adaptive: target half-width of the criteria's per-image headline "
        "measurements (their own units).",
        json_schema_extra={"cli": "--budget-width"},
    )
    round_images: int = Field(
        4,
        ge=1,
        description="--budget adaptive: images per leaf and prompt type added each round.",
        json_schema_extra={"cli": "--round-images"},
    )
    alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="--budget adaptive: the error the sequential rule spends over all rounds.",
    )


class RunConfig(_Section):
    """One run: base model, dataset, trainer config, generation and evaluation settings."""

    base: str | None = Field(
        None,
        description="Base model: hub id, diffusers folder, .safetensors, 'tiny', a named base, "
        "or a base architecture (sd15, sdxl, sd3, flux, flux2-klein) with --base-path.",
        json_schema_extra={"cli": True},
    )
    base_path: str | None = Field(
        None,
        description="The base's files (a local diffusers folder or a single-file checkpoint); "
        "with --base ARCH, checked to be that architecture.",
        json_schema_extra={"cli": True},
    )
    dataset: str | None = Field(
        None,
        description="Dataset folder (t2ibench spec) or a named dataset.",
        json_schema_extra={"cli": True},
    )
    #: the trainer's keys, checked against its config class when the run is resolved
    trainer: dict[str, Any] = Field(default_factory=lambda: {"trainer": "lora"})
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)

    @property
    def trainer_name(self) -> str:
        return str(self.trainer.get("trainer", "lora"))


class Invocation(_Section):
    """How one ``t2ibench run`` executes its config: where, from which profile, with which checks.
    Not part of the run hash (the :class:`RunConfig` is). Every field is a ``t2ibench run``
    option (``cli``: its flag); ``evaluate-checkpoints`` and ``sweep`` take the ones they share
    from here."""

    trainer: str | None = Field(
        None,
        description="lora | loha | lokr | native | a plug-in (= --set trainer=NAME).",
        json_schema_extra={"cli": True},
    )
    profile: str | None = Field(
        None,
        description="A profile name (t2ibench profiles list) or a profile TOML file "
        "(default: the offline one unless --base/--dataset name real ones, else paper).",
        json_schema_extra={"cli": True},
    )
    config: Path | None = Field(
        None,
        description="Trainer config TOML (its keys at top level or under a trainer table).",
        json_schema_extra={"cli": True},
    )
    overrides: list[str] | None = Field(
        None,
        description="Run-config override KEY=VALUE (repeatable): trainer.dim=8, "
        'generate.steps=30, evaluate.metrics=["vendi"]; a bare trainer key (dim=8) means '
        "trainer.dim.",
        json_schema_extra={"cli": "--set"},
    )
    device: str = Field("cpu", description="cpu | cuda | cuda:N", json_schema_extra={"cli": True})
    out: Path = Field(
        Path("results"),
        description="Folder that holds run folders.",
        json_schema_extra={"cli": True},
    )
    name: str | None = Field(
        None,
        description="Run name (default: <trainer>-<config hash>).",
        json_schema_extra={"cli": True},
    )
    protocol: str | None = Field(
        None,
        description="Metric definitions: a protocol, how a paper computes its numbers (t2ibench "
        "evaluate --help; default lycoris2024), or a protocol TOML file: the evaluate stage "
        "computes its measures on its encoders (--encoders NAME@tiny|NAME@WEIGHTS override "
        "their weights).",
        json_schema_extra={"cli": True},
    )
    #: the old name of ``protocol`` ("profile" now means a run profile only): still read, hidden
    metric_profile: str | None = Field(
        None,
        description="Deprecated: the old name of --protocol.",
        json_schema_extra={"cli": True, "hidden": True},
    )
    allow_pickle: bool = Field(
        False,
        description="Allow a pickle .ckpt base (loaded with weights_only=True).",
        json_schema_extra={"cli": True},
    )
    dry_run: bool = Field(
        False,
        description="Print the plan and a time estimate; do nothing.",
        json_schema_extra={"cli": True},
    )
    progress: bool = Field(True, description="Progress bars.", json_schema_extra={"cli": True})


#: trainer keys with their own ``t2ibench run`` option (the rest go through ``--set``): the
#: option's type and help. Written here, not read from ``TrainerConfig``, so ``t2ibench --help``
#: does not import torch; a test checks the types against ``TrainerConfig``.
TRAINER_OPTIONS: dict[str, tuple[type, str]] = {
    "epochs": (int, "Training epochs."),
    "save_epochs": (list[int], "Epochs to checkpoint (repeatable)."),
    "seed": (int, "Training seed."),
    "resolution": (int, "Image side in pixels (training; generation follows unless set)."),
}

SECTIONS = tuple(RunConfig.model_fields)


def canonical_key(key: str, value: Any = None) -> str:
    """The dotted path an override key names (see the module docstring's shorthands)."""
    key = key.strip()
    if key == "trainer" and not isinstance(value, dict):
        return "trainer.trainer"
    if key.split(".")[0] in SECTIONS:
        return key
    return f"trainer.{key}"


def flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested table as ``{dotted key: value}`` (the trainer name shorthand resolved)."""
    out: dict[str, Any] = {}
    for k, v in table.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[canonical_key(prefix + k, v)] = v
    return out


def parse_set(item: str) -> tuple[str, Any]:
    """``--set key=value`` → (dotted key, value); the value is read as TOML, else a bare string."""
    key, value = parse_assignment(item)
    return canonical_key(key, value), value


class Layers:
    """Values from several sources (profile, grid, command line), later ones winning; remembers
    which source set each key so an error can name it."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.where: dict[str, str] = {}

    def add(self, where: str, flat: Mapping[str, Any]) -> Layers:
        for k, v in flat.items():
            self.values[k] = v
            self.where[k] = where
        return self

    def add_table(self, where: str, table: Mapping[str, Any]) -> Layers:
        return self.add(where, flatten(table))

    def add_sets(self, items: Iterable[str]) -> Layers:
        for item in items:
            self.add(f"--set {item}", dict([parse_set(item)]))
        return self

    def nested(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.values.items():
            *parents, leaf = key.split(".")
            node = out
            for p in parents:
                node = node.setdefault(p, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"{self.where[key]}: {key!r} is inside a value, not a table")
            node[leaf] = value
        return out

    def run_config(self) -> RunConfig:
        """The validated run config (the trainer keys are checked later, by the trainer)."""
        try:
            return RunConfig.model_validate(self.nested())
        except ValidationError as exc:
            raise ConfigError(validation_message(exc, self.where, "run config")) from None

    def trainer_sources(self) -> list[tuple[str, dict[str, Any]]]:
        """The trainer keys grouped by source, in order, for the trainer's own check."""
        out: list[tuple[str, dict[str, Any]]] = []
        for key, value in self.values.items():
            if key.startswith("trainer."):
                where = self.where[key]
                if not out or out[-1][0] != where:
                    out.append((where, {}))
                out[-1][1][key.removeprefix("trainer.")] = value
        return out
