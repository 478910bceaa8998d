"""Command options generated from the typed run config (:mod:`t2ibench.runconfig`).

A flag, its type and its help are written once, on a config field: ``t2ibench run`` takes every
field marked ``cli`` (its config sections and :class:`~t2ibench.runconfig.Invocation`), and the
commands that share an option (``evaluate-checkpoints``, ``sweep``) take it from the same place by
key, with their own help where the meaning narrows.
"""

from __future__ import annotations

import inspect
import logging
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import typer


@dataclass(frozen=True)
class Declared:
    """One option: the command function's parameter name, the flag, its type, default and help."""

    key: str
    flag: str
    type: Any
    default: Any
    help: str
    #: the smallest value accepted (a number option)
    min: int | None = None
    #: left out of ``--help`` (a deprecated name still read)
    hidden: bool = False

    @property
    def param(self) -> str:
        return self.key.replace(".", "__")


def _cli_type(annotation: Any) -> Any:
    """The typer type of a config field: lists stay lists, ``X | None`` becomes ``X``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = args[0]
        args = list(typing.get_args(annotation))
    if typing.get_origin(annotation) in (list, tuple):
        return list[int] if args and args[0] is int else list[str]
    return annotation


def _fields(model: Any, prefix: str = "", defaults: bool = False) -> list[Declared]:
    """Every field marked ``cli`` in ``model`` and its sections; ``defaults``: keep the field's
    default (else None: a config option unset on the command line leaves the profile's value)."""
    out = []
    for key, f in model.model_fields.items():
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        if "cli" in extra:
            flag = extra["cli"] if isinstance(extra["cli"], str) else "--" + key.replace("_", "-")
            default = f.get_default(call_default_factory=True) if defaults else None
            tp, desc = _cli_type(f.annotation), f.description or ""
            hidden = bool(extra.get("hidden"))
            out.append(Declared(prefix + key, flag, tp, default, desc, hidden=hidden))
        elif isinstance(f.annotation, type) and hasattr(f.annotation, "model_fields"):
            out += _fields(f.annotation, f"{prefix}{key}.", defaults)
    return out


def config_options() -> list[Declared]:
    """The run-config options (dotted keys): the fields marked ``cli`` and the trainer keys with
    their own option; each says which ``--set`` key it is."""
    from t2ibench.runconfig import TRAINER_OPTIONS, RunConfig

    out = _fields(RunConfig)
    for key, (tp, help_text) in TRAINER_OPTIONS.items():
        out.append(Declared(f"trainer.{key}", "--" + key.replace("_", "-"), tp, None, help_text))
    return [replace(d, help=f"{d.help} (= --set {d.key}=...)") for d in out]


def invocation_options() -> dict[str, Declared]:
    """How a run executes (``--out``, ``--device``, ``--set``, ...), by field name."""
    from t2ibench.runconfig import Invocation

    return {d.key: d for d in _fields(Invocation, defaults=True)}


def shared(*keys: str, help: Mapping[str, str] | None = None) -> list[Declared]:
    """Options another command shares with ``t2ibench run``, by key (a config key such as
    ``base`` or an invocation field such as ``out``), with that command's own help if given."""
    from t2ibench.runconfig import RunConfig

    known = {d.key: d for d in _fields(RunConfig)} | invocation_options()
    help = help or {}
    return [replace(known[k], help=help.get(k, known[k].help)) for k in keys]


def parameters(declared: Iterable[Declared]) -> list[inspect.Parameter]:
    out = []
    for d in declared:
        decls = [d.flag]
        if d.type is bool and d.default is True:
            decls = [f"{d.flag}/--no-{d.flag.removeprefix('--')}"]
        limits = {} if d.min is None else {"min": d.min}
        option = typer.Option(d.default, *decls, help=d.help, hidden=d.hidden, **limits)
        out.append(
            inspect.Parameter(
                d.param, inspect.Parameter.KEYWORD_ONLY, annotation=d.type, default=option
            )
        )
    return out


def with_options(fn: Callable[..., Any], *groups: Iterable[Any]) -> Callable[..., Any]:
    """``fn(**kw)`` with the declared options (and any ready ``inspect.Parameter``) as its
    signature, in order, so typer builds the command's options from them."""
    params: list[inspect.Parameter] = []
    for group in groups:
        for item in group:
            params += [item] if isinstance(item, inspect.Parameter) else parameters([item])
    fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    fn.__annotations__ = {p.name: p.annotation for p in params}
    return fn


def protocol_of(kw: Mapping[str, Any]) -> str | None:
    """``--protocol``, or its deprecated old name ``--metric-profile`` (with a warning)."""
    from t2ibench.errors import ConfigError

    old, new = kw.get("metric_profile"), kw.get("protocol")
    if old is None:
        return new
    if new not in (None, old):
        raise ConfigError(
            f"--metric-profile {old!r} and --protocol {new!r}: --metric-profile is the old name "
            "of --protocol; give --protocol only"
        )
    logging.getLogger("t2ibench.cli").warning("--metric-profile is deprecated; use --protocol")
    return old


def split_lists(values: Any) -> Any:
    """Lists accept repeated flags and comma lists: ``--encoders a,b --encoders c``."""
    if isinstance(values, list) and values and isinstance(values[0], str):
        return [v.strip() for item in values for v in item.split(",") if v.strip()]
    return values


#: the ``--budget`` options (``run`` has them from the config; ``sweep`` and
#: ``evaluate-checkpoints`` share them by key)
BUDGET_KEYS = ("budget.mode", "budget.width", "budget.round_images")


def budget_overrides(kw: Mapping[str, Any]) -> dict[str, Any]:
    """The ``budget`` table the ``--budget*`` options given make (empty: none given)."""
    out = {}
    for key in BUDGET_KEYS:
        value = kw.get(key.replace(".", "__"))
        if value is not None:
            out[key.split(".", 1)[1]] = value
    return out


#: the generation speed options (``run`` has them from the config; ``sweep`` and
#: ``evaluate-checkpoints`` share them by key)
GENERATION_KEYS = (
    "generate.dtype",
    "generate.channels_last",
    "generate.compile",
    "generate.fuse_adapter",
    "generate.attention",
)


def generation_overrides(kw: Mapping[str, Any]) -> dict[str, Any]:
    """The ``generate`` table the generation speed options given make (empty: none given)."""
    out = {}
    for key in GENERATION_KEYS:
        value = kw.get(key.replace(".", "__"))
        if value is not None:
            out[key.split(".", 1)[1]] = value
    return out
