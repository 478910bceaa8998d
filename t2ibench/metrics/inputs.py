"""Input providers: where each named metric input comes from during evaluation.

A metric declares its inputs by name (``MetricSpec.inputs``, the keyword arguments of its function).
The evaluate stage looks every name up here and calls the provider registered under it; a name with
no provider stops the evaluation with an error naming the metric and the input. The built-in
providers (generated and dataset features, prompt texts, seed-paired base images, raw scores) are
registered by :mod:`t2ibench.evaluation.providers`; a plug-in registers its own next to its metric::

    register_input_provider(InputProvider("pixels", provide=load_pixels))

Light on purpose (no torch): importing it costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2ibench.errors import T2IBenchError
from t2ibench.registry import Registry


class MissingInput(T2IBenchError):
    """Raised by a provider whose data this evaluation does not have (no base-model images given):
    the metric is skipped for that group with a warning."""


class MetricInputError(T2IBenchError):
    """A metric needs an input that no registered provider supplies."""


@dataclass
class EvalContext:
    """What the evaluate stage knows about one (checkpoint, leaf, prompt type) group and encoder.

    ``records`` are the group's manifest records in a stable order and ``image_paths`` their files
    (an in-memory evaluation writes its images to files first); ``encoder`` is None for a metric
    whose inputs need no encoder; ``cache`` is the feature cache to use with it (None: do not
    store). ``base_images`` maps a record's pairing key to the base model's
    image (see :func:`paired_key`). ``shared`` lives for the whole evaluation (e.g. dataset features
    per encoder and leaf), ``memo`` for this group and encoder (e.g. generated features).
    """

    checkpoint: str
    leaf: Any
    prompt_type: str
    records: Sequence[Any]
    image_paths: Sequence[Path]
    dataset: Any
    encoder: Any | None
    cache: Any | None
    base_images: Mapping[tuple, Path]
    shared: dict[Any, Any]
    metric: Any = None
    memo: dict[Any, Any] = field(default_factory=dict)
    # The cache for the base model's images: every checkpoint pairs with them, so they are stored
    # even where ``cache`` is None (VGG-19 Grams of a checkpoint's own images).
    base_cache: Any | None = None

    def once(self, key: Any, compute: Callable[[], Any], *, shared: bool = False) -> Any:
        """``compute()`` the first time ``key`` is asked for in this group (or evaluation)."""
        store = self.shared if shared else self.memo
        if key not in store:
            store[key] = compute()
        return store[key]


def paired_key(record: Any) -> tuple:
    """Images pair across checkpoints by (leaf, prompt type, index, seed)."""
    return (record.leaf, record.prompt_type, record.index, record.seed)


@dataclass(frozen=True)
class InputProvider:
    """Supplies the metric input ``name``: ``provide(ctx)`` returns its value.

    ``encoder_kinds``: the encoder kinds whose features it gives (the metric is computed once per
    such encoder); None = it needs no encoder (the metric is computed once, encoder column empty).
    ``own_encoder_only``: only the encoder the metric names (IQA scores). ``per_image``: one row per
    generated image, in ``ctx.records`` order, so a metric that groups by prompt can split it.
    ``needs``: what the caller must give for it to supply anything ("references", "prompts",
    "base images"; empty: nothing beyond the images), so an in-memory evaluation can say which
    argument is missing before any encoder loads. ``pairs``: the pairing the input already is
    (``"prompt"``: each image scored with its own cleaned prompt, as a judge reads it), so a
    metric profile's measure with that pairing takes the input as it is.
    """

    name: str
    provide: Callable[[EvalContext], Any]
    encoder_kinds: tuple[str, ...] | None = None
    own_encoder_only: bool = False
    per_image: bool = True
    description: str = ""
    needs: str = ""
    pairs: str | None = None

    def accepts(self, spec: Any, encoder: Any | None) -> bool:
        """Whether this provider can supply ``spec``'s input with ``encoder`` (None = no encoder)."""
        if self.encoder_kinds is None:
            return True
        if encoder is None:
            return False
        return encoder.kind in self.encoder_kinds and (
            not self.own_encoder_only or encoder.name == spec.encoder
        )


INPUT_PROVIDERS: Registry[InputProvider] = Registry("metric input")


def register_input_provider(provider: InputProvider, *, overwrite: bool = False) -> InputProvider:
    """Register ``provider`` under its input name (call it at the bottom of its file)."""
    INPUT_PROVIDERS.register(provider.name, provider, overwrite=overwrite)
    return provider


def providers_for(spec: Any) -> dict[str, InputProvider]:
    """The provider of each of ``spec``'s inputs; raises naming the metric and the missing ones."""
    missing = [name for name in spec.inputs if name not in INPUT_PROVIDERS]
    if missing:
        raise MetricInputError(
            f"metric {spec.name!r} needs input(s) {missing} that no input provider supplies "
            f"(known inputs: {', '.join(INPUT_PROVIDERS.names()) or 'none'}); register one with "
            "t2ibench.metrics.inputs.register_input_provider"
        )
    return {name: INPUT_PROVIDERS.get(name) for name in spec.inputs}


def fed_by(spec: Any, providers: Mapping[str, InputProvider], encoder: Any | None) -> bool:
    """Whether ``encoder`` (None = no encoder) feeds every input of ``spec``: with an encoder, at
    least one input must come from it; without one, none may need one."""
    if encoder is not None and all(p.encoder_kinds is None for p in providers.values()):
        return False
    return all(p.accepts(spec, encoder) for p in providers.values())
