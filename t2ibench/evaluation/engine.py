"""The evaluation engine: image records → metric values → results rows, for every entry point.

``t2ibench run`` (its evaluate stage), ``t2ibench evaluate``, ``evaluate-checkpoints``, metric
profiles and ``t2ibench.evaluate()`` all call :func:`evaluate_records` (the last through
:func:`evaluate_in_memory`, which lays the caller's images out as records first). What it computes
is a list of :class:`MetricPlan`: a registered metric, the provider that feeds each of its inputs,
its options and scale. Nothing here names a metric: a metric's inputs come from the input-provider
table (:mod:`t2ibench.metrics.inputs`; the built-in providers are in
:mod:`t2ibench.evaluation.providers`), and a pairing — all pairs, image by image, by prompt,
against the base model's image — is the choice of the provider that feeds the reference input
(:data:`PAIRINGS`).

For every (checkpoint, leaf, prompt type) group of the records, every encoder and every plan that
encoder can feed, the plan's metric is computed once. A metric's error stops the evaluation with an
error naming the metric, the encoder and the group (:class:`MetricError`); only a value the metric
itself declares undefined (:class:`~t2ibench.metrics._common.UndefinedValue`, e.g. a covariance of
one image) is recorded as missing, with a warning.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from t2ibench.errors import ConfigError, T2IBenchError
from t2ibench.evaluation import providers as _builtin_providers  # noqa: F401  (registers them)
from t2ibench.evaluation.recording import is_recording
from t2ibench.metrics import MetricSpec, get_metric, list_metrics
from t2ibench.metrics._common import UndefinedValue
from t2ibench.metrics.inputs import (
    INPUT_PROVIDERS,
    EvalContext,
    InputProvider,
    MissingInput,
    fed_by,
    providers_for,
)

log = logging.getLogger(__name__)

#: pairing → (the metric input it feeds, the provider that feeds it, computed pair by pair and
#: averaged). A metric that takes the provider's input itself (drift takes ``base``) uses it as is.
PAIRINGS: dict[str, tuple[str, str, bool]] = {
    "all-pairs": ("ref", "ref", False),
    "paired": ("ref", "paired_ref", True),
    "base-paired": ("ref", "base", True),
    "prompt": ("text_feats", "text_feats", False),
}
#: text cleaning → the provider of the prompts' features
TEXT_SOURCES = {"remove-identifier": "text_feats", "keep": "text_feats_as_written"}


class MetricError(T2IBenchError):
    """A metric failed on its inputs: the message names the metric, the encoder and the group."""


@dataclass(frozen=True)
class MetricPlan:
    """One metric as the engine computes it.

    ``sources``: metric input → the provider that feeds it (inputs not named: the provider of the
    same name). ``per_pair``: computed on each image with its own pair and averaged (a per-image
    reference or base image). ``encoder``: only this encoder feeds it (None: every encoder that
    can). ``scale``/``divide``: the value written is ``value · scale / divide`` (a profile's scale,
    less what the metric's options already applied). ``required``: a missing input (no base
    images, no prompts) is an error rather than a skipped metric. ``columns``: written on each row
    (a metric profile's ``measure``).
    """

    spec: MetricSpec
    options: Mapping[str, Any] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    per_pair: bool = False
    encoder: Any | None = None
    scale: float = 1.0
    divide: float = 1.0
    required: bool = False
    columns: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def what(self) -> str:
        """How errors name it: the measure, if it is one, and the metric."""
        measure = self.columns.get("measure")
        return f"measure {measure} (metric {self.spec.name})" if measure else self.spec.name

    def providers(self) -> dict[str, InputProvider]:
        """The provider of each input; raises naming the metric when one is not registered."""
        own = providers_for(self.spec)
        out = {}
        for name in self.spec.inputs:
            source = self.sources.get(name, name)
            out[name] = own[name] if source == name else INPUT_PROVIDERS.get(source)
        return out

    def feeds(self, encoder: Any | None) -> bool:
        if self.encoder is not None and encoder is not self.encoder:
            return False
        return fed_by(self.spec, self.providers(), encoder)


def plan_metrics(
    metrics: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[MetricPlan]:
    """Plans for ``metrics`` (None: every registered metric) with their own inputs, each on every
    encoder that can feed it; ``options`` override a metric's options by name. Checks first that
    each is registered, that a provider supplies each input and that the prompt types it names are
    registered: call it before any work (``t2ibench run`` does, before training)."""
    specs = [get_metric(m) for m in (metrics or list_metrics())]
    for spec in specs:
        providers_for(spec)
        spec.check_prompt_types()
    overrides = dict(options or {})
    unknown = sorted(set(overrides) - {s.name for s in specs})
    if unknown:
        raise ConfigError(f"metric options given for metric(s) {unknown} that are not evaluated")
    for spec in specs:
        if spec.name in overrides:  # a bad option is refused now, not as a value per group
            try:
                spec.create_stream(**overrides[spec.name])
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"metric {spec.name}: options {dict(overrides[spec.name])}: {exc}"
                ) from None
    return [MetricPlan(s, {**s.options, **overrides.get(s.name, {})}) for s in specs]


def _inputs_already_paired(spec: MetricSpec, pairing: str) -> bool:
    from t2ibench.metrics.inputs import INPUT_PROVIDERS

    return any(
        name in INPUT_PROVIDERS and INPUT_PROVIDERS.get(name).pairs == pairing
        for name in spec.inputs
    )


def pairing_sources(spec: MetricSpec, pairing: str, text: str = "remove-identifier"):
    """``(sources, per_pair)`` that make ``spec`` paired as ``pairing`` says, with prompts cleaned
    as ``text`` says; raises :class:`ConfigError` when its inputs cannot be paired so."""
    if pairing not in PAIRINGS:
        raise ConfigError(f"pairing {pairing!r} is not one of {', '.join(PAIRINGS)}")
    replaced, provider, per_pair = PAIRINGS[pairing]
    sources: dict[str, str] = {}
    if provider in spec.inputs or _inputs_already_paired(spec, pairing):
        if pairing == "prompt" and text != "remove-identifier" and provider not in spec.inputs:
            raise ConfigError(
                f"metric {spec.name} reads each prompt with the identifier removed; "
                f"text = {text!r} cannot be honoured"
            )
        per_pair = False  # the metric pairs its own input (drift with its base image, a judge)
    elif replaced in spec.inputs:
        sources[replaced] = provider
    else:
        raise ConfigError(
            f"metric {spec.name} takes {', '.join(spec.inputs)}: it cannot be paired {pairing!r}"
        )
    if "text_feats" in spec.inputs and TEXT_SOURCES[text] != "text_feats":
        sources["text_feats"] = TEXT_SOURCES[text]
    return sources, per_pair


def evaluate_records(
    root: Path | None,
    records: Sequence[Any],
    dataset: Any,
    encoders: Sequence[Any],
    plans: Sequence[MetricPlan],
    *,
    base_images: Mapping[tuple, Path] | None = None,
    cache: Any | None = None,
    checkpoint_info: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Results rows (the schema of :mod:`t2ibench.results`) for ``records`` (manifest records,
    files relative to ``root``) against ``dataset``'s leaves.

    ``base_images`` maps a record's pairing key (:func:`t2ibench.metrics.inputs.paired_key`) to
    the base model's image. ``checkpoint_info`` maps a checkpoint name to its columns (``config``,
    ``seed``, ``epoch``, hyperparameters); checkpoints without an entry get ``config`` = their
    name. ``cache``: the feature cache (None: nothing stored).
    """
    records = list(records)
    if not records:
        raise T2IBenchError("no images to evaluate")
    groups: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    for r in records:
        if r.leaf not in dataset.leaves:
            raise T2IBenchError(
                f"leaf {r.leaf!r} (file {r.file}) is not in the dataset {dataset.root}"
            )
        groups[(r.checkpoint, r.leaf, r.prompt_type)].append(r)
    providers = [plan.providers() for plan in plans]
    rows: list[dict[str, Any]] = []
    info = checkpoint_info or {}
    shared: dict[Any, Any] = {}
    from tqdm.auto import tqdm

    bar = tqdm(sorted(groups.items()), desc="evaluate", unit="group", disable=not progress)
    for (checkpoint, leaf_key, prompt_type), group in bar:
        group.sort(key=lambda r: (r.index if r.index is not None else -1, r.seed, r.file))
        leaf = dataset.leaves[leaf_key]
        applicable = [i for i, p in enumerate(plans) if p.spec.applies_to(prompt_type)]
        for encoder in (None, *encoders):
            wanted = [i for i in applicable if plans[i].feeds(encoder)]
            if not wanted:
                continue
            ctx = EvalContext(
                checkpoint=checkpoint,
                leaf=leaf,
                prompt_type=prompt_type,
                records=group,
                image_paths=[r.path(root) for r in group],
                dataset=dataset,
                encoder=encoder,
                # VGG-19 Gram matrices are 2.4 MB per image (9 GB per checkpoint at the paper's
                # scale): a checkpoint's own are recomputed rather than stored; the base model's,
                # which every checkpoint pairs with, are cached (base_cache).
                cache=None if encoder is not None and encoder.kind == "gram" else cache,
                base_cache=cache,
                base_images=base_images or {},
                shared=shared,
            )
            for i in wanted:
                plan = plans[i]
                ctx.metric = plan.spec
                inputs = _inputs(plan, providers[i], ctx)
                if inputs is None or is_recording():
                    continue  # recording: the inputs asked for are all that is wanted
                value = _compute(plan, providers[i], ctx, inputs)
                rows.append(_row(ctx, plan, value, info))
    return pd.DataFrame(rows)


def _where(plan: MetricPlan, ctx: EvalContext) -> str:
    enc = f" on {ctx.encoder.name}" if ctx.encoder is not None else ""
    return f"{plan.what}{enc} for {ctx.leaf.key} <{ctx.prompt_type}> ({ctx.checkpoint})"


def _inputs(
    plan: MetricPlan, providers: Mapping[str, InputProvider], ctx: EvalContext
) -> dict[str, Any] | None:
    try:
        return {name: p.provide(ctx) for name, p in providers.items()}
    except MissingInput as exc:
        if plan.required:
            raise MetricError(f"{_where(plan, ctx)}: {exc}") from None
        if not is_recording():
            log.warning("%s skipped for %s <%s>: %s", plan.name, ctx.leaf.key, ctx.prompt_type, exc)
        return None


def _take(x: Any, idx: list[int]) -> Any:
    """Rows ``idx`` of a per-image input (a tensor, or one tensor per layer)."""
    if isinstance(x, (list, tuple)):
        return [t[idx] for t in x]
    return x[idx]


def _compute(
    plan: MetricPlan, providers: Mapping[str, InputProvider], ctx: EvalContext, inputs: dict
) -> float:
    """The plan's value on ``inputs``: at once, per prompt (a metric grouped by prompt) or per
    pair, averaged; scaled. Errors name the metric; a declared undefined value is NaN."""
    spec = plan.spec
    parts: list[list[int]] | None = None
    if plan.per_pair:
        parts = [[i] for i in range(len(ctx.records))]
    elif spec.group_by.get(ctx.prompt_type) == "prompt":
        by_prompt: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(ctx.records):
            by_prompt[r.prompt].append(i)
        parts = list(by_prompt.values())
    try:
        if parts is None:
            value = float(spec.function(**inputs, **plan.options))
        else:
            values = [
                spec.function(
                    **{
                        n: _take(v, idx) if providers[n].per_image else v for n, v in inputs.items()
                    },
                    **plan.options,
                )
                for idx in parts
            ]
            value = float(sum(values) / len(values))
    except UndefinedValue as exc:
        log.warning("%s: %s; recorded as missing", _where(plan, ctx), exc)
        return math.nan
    except (ValueError, TypeError, RuntimeError, IndexError) as exc:
        raise MetricError(f"{_where(plan, ctx)}: {exc}") from None
    if plan.scale != 1.0 or plan.divide != 1.0:
        value = value * plan.scale / plan.divide
    return value


def _row(ctx: EvalContext, plan: MetricPlan, value: float, info) -> dict[str, Any]:
    extra = dict(info.get(ctx.checkpoint, {}))
    encoder, leaf = ctx.encoder, ctx.leaf
    row = {
        "checkpoint": ctx.checkpoint,
        "config": extra.pop("config", ctx.checkpoint),
        "seed": extra.pop("seed", ""),
        "epoch": extra.pop("epoch", None),
        "category": leaf.category,
        "class": leaf.concept.name,
        "leaf": leaf.key,
        "prompt_type": ctx.prompt_type,
        "metric": plan.name,
        "encoder": encoder.name if encoder is not None else "",
        "resize": encoder.preprocess.resize
        if encoder is not None and encoder.kind != "score"
        else "",
        "value": value,
        "n_images": len(ctx.records),
        "encoder_weights": encoder.weights_id if encoder is not None else "",
    }
    row.update(extra)
    # the convention a value is in (text_alignment: cosine, clipscore-hessel, …)
    row["convention"] = str(plan.options.get("convention", ""))
    row.update(plan.columns)
    return row
