"""Reading user config input: TOML files, ``key=value`` items, and pydantic validation errors as
the one-line :class:`~t2ibench.errors.ConfigError` messages the CLI prints
(``<source>: field '<key>' must be <what it expects> (got <value>)``)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from t2ibench.errors import ConfigError


def read_toml(path: Path, what: str = "config") -> dict[str, Any]:
    """A TOML file as a dict; a missing or malformed file is one ConfigError naming it."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what} file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def parse_assignment(item: str) -> tuple[str, Any]:
    """``"key=value"`` → (key, value); the value is read as TOML (``5e-4``, ``true``, ``[1, 2]``),
    else kept as a bare string."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key=value")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


_EXPECTED = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "tuple": "a list",
    "list": "a list",
}


def describe_error(err: Mapping[str, Any]) -> str:
    """One pydantic error as ``must be …``: the expected type, range or choice."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", err["msg"]))
    if kind == "literal_error":
        return f"must be one of {ctx['expected'].replace(chr(39), '')}"
    for op, sym in (("greater_than", ">"), ("less_than", "<")):
        if kind == op:
            return f"must be {sym} {ctx[op.split('_')[0][0] + 't']}"
        if kind == op + "_equal":
            return f"must be {sym}= {ctx[op.split('_')[0][0] + 'e']}"
    if kind in ("too_short", "too_long"):
        return "must hold " + str(ctx.get("min_length", ctx.get("max_length"))) + " items"
    head = kind.split("_")[0]
    if head in _EXPECTED:
        return f"must be {_EXPECTED[head]}"
    return str(err["msg"])


def validation_message(
    exc: ValidationError, where_of: Mapping[str, str], default_where: str, prefix: str = ""
) -> str:
    """The first error of ``exc`` as one line: ``<source>: field '<key>' must be …, got …``."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    # a tuple's item index is not a key the user wrote
    key = ".".join(p for p in loc if not p.isdigit())
    where = where_of.get(key, where_of.get(loc[0], default_where)) if loc else default_where
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown key {prefix + key!r}"
    if not loc:  # a check across fields: its message names the field itself
        return f"{where}: {describe_error(err)}"
    return f"{where}: field {prefix + key!r} {describe_error(err)} (got {err['input']!r})"
