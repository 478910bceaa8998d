"""Build a model whose every weight is then loaded, without drawing random initial weights first.

open_clip and timm build the architecture with its random initialisation and only then load the
checkpoint over it: for OpenCLIP ViT-L/14 and ConvNeXt V2-L that is about 5 s of random draws on
one CPU thread at every run, all overwritten (transformers skips them itself; see its
``no_init_weights``). Inside :func:`skipped_random_init` the initialisers of ``torch.nn.init`` and
``timm.layers`` (and every module-level name bound to them) fill zeros instead, for this thread
only: another thread building a model meanwhile (a LoRA's ``kaiming_uniform_``) still draws. Only
for loads that are strict (every parameter replaced by the checkpoint); a parameter a loader
leaves out is zero, never uninitialised memory.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch

_INITS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "xavier_uniform_",
    "xavier_normal_",
    "orthogonal_",
    "sparse_",
)
_TIMM_INITS = ("trunc_normal_", "trunc_normal_tf_", "variance_scaling_", "lecun_normal_")
# Libraries whose modules bind the initialisers under their own names (``from ... import x``).
_LIBRARIES = ("torch.nn", "timm", "open_clip", "torchvision")

_local = threading.local()
_lock = threading.Lock()
_users = 0
_patched: list[tuple[Any, str, Callable]] = []


def skipping() -> bool:
    """Whether this thread is inside :func:`skipped_random_init`."""
    return getattr(_local, "depth", 0) > 0


def _zeros_in_this_thread(original: Callable) -> Callable:
    def init(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if not skipping():
            return original(tensor, *args, **kwargs)
        with torch.no_grad():
            return tensor.zero_()

    init.__wrapped__ = original  # type: ignore[attr-defined]
    return init


def _originals() -> dict[int, Callable]:
    found = {id(f): f for f in (getattr(torch.nn.init, n) for n in _INITS)}
    weight_init = sys.modules.get("timm.layers.weight_init")
    for name in _TIMM_INITS if weight_init is not None else ():
        if callable(getattr(weight_init, name, None)):
            f = getattr(weight_init, name)
            found[id(f)] = f
    return found


def _install() -> None:
    originals = _originals()
    wrapped = {k: _zeros_in_this_thread(f) for k, f in originals.items()}
    for modname, module in list(sys.modules.items()):
        if module is None or not modname.startswith(_LIBRARIES):
            continue
        for attr, value in list(vars(module).items()):
            if callable(value) and id(value) in wrapped and value is originals[id(value)]:
                setattr(module, attr, wrapped[id(value)])
                _patched.append((module, attr, value))


def _uninstall() -> None:
    while _patched:
        module, attr, original = _patched.pop()
        setattr(module, attr, original)


@contextlib.contextmanager
def skipped_random_init() -> Iterator[None]:
    """Zeros instead of random initial weights for models built in this thread meanwhile."""
    global _users
    with _lock:
        if _users == 0:
            _install()
        _users += 1
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1
        with _lock:
            _users -= 1
            if _users == 0:
                _uninstall()
