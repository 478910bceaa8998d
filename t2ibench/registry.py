"""One registry class behind every plug-in point (metrics, encoders, prompt types, trainers).

Like timm's ``register_model``: a decorator is the single door in, ``get`` and ``names`` the doors
out. Third-party packages plug in through an entry-point group; those are loaded lazily, on the first
lookup, so importing a registry never imports a plug-in's heavy dependencies.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from t2ibench.errors import T2IBenchError

T = TypeVar("T")
log = logging.getLogger(__name__)


class UnknownNameError(T2IBenchError, KeyError):
    """An unknown registry name; the message lists the close matches and every known name.
    A :class:`T2IBenchError`, so the CLI reports it in one line."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """A name → object table with an entry-point group for third parties."""

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._entry_points_loaded = entry_point_group is None

    def register(
        self, name: str, obj: T | None = None, *, overwrite: bool = False
    ) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; without ``obj`` return a decorator."""

        def add(item: T) -> T:
            if not overwrite and name in self._items and self._items[name] is not item:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return add if obj is None else add(obj)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.entry_point_group):
            try:
                item = ep.load()
            except Exception as exc:  # a broken plug-in must not break the built-ins
                log.warning(
                    "could not load %s plug-in %r (%s): %s", self.kind, ep.name, ep.value, exc
                )
                continue
            # An entry point may register itself on import (a module) or be the object itself.
            if ep.name not in self._items and not _is_module(item):
                self._items[ep.name] = item

    def get(self, name: str) -> T:
        self._load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._items, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(sorted(self._items)) or 'none'}"
            ) from None

    def names(self, pattern: str | None = None) -> list[str]:
        self._load_entry_points()
        names = sorted(self._items)
        return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


def _is_module(obj: object) -> bool:
    import types

    return isinstance(obj, types.ModuleType)
