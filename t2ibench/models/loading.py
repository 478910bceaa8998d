"""Load a base model from a hub id, a local folder, a single file, or ``"tiny"``.

Which architecture a path is (SD1.5, SDXL, FLUX ...) and how it loads belong to its base plug-in
(:mod:`t2ibench.bases`); here: what a spec points at, the dispatch, and fingerprints. SD1.5 ends in
a ``StableDiffusionPipeline`` without safety checker, with the plain attention processor pinned
(no SDPA / xformers kernel choice, so CPU runs are bit-reproducible); progress bars are off (the
stages draw their own).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from t2ibench.architectures import BaseModelError
from t2ibench.fsutil import cache_root, file_sha256

TINY = "tiny"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def tiny_base_folder() -> Path:
    """The folder the ``"tiny"`` spec builds (once) and loads."""
    from t2ibench.models.tiny import make_tiny_base

    return make_tiny_base(cache_root() / "tiny-base")


def resolve_spec(spec: str | Path) -> tuple[str, Any]:
    """Classify ``spec`` as ``("tiny", None)``, ``("folder", Path)``, ``("file", Path)`` or
    ``("hub", repo_id)``; a path that does not exist is an error, not a hub lookup."""
    if isinstance(spec, str) and spec.strip() == TINY:
        return "tiny", None
    if isinstance(spec, str) and not Path(spec).expanduser().exists():
        from t2ibench.profiles import resolve_named

        spec = resolve_named("base", spec)  # a named base (``toy``) is its folder, as for --base
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise BaseModelError(
                f"{path}: not a diffusers pipeline folder (no model_index.json); pass a folder saved "
                "with save_pretrained, a .safetensors checkpoint, a hub id, or 'tiny'"
            )
        return "folder", path.absolute()
    if path.is_file():
        return "file", path.absolute()
    looks_like_path = (
        isinstance(spec, Path)
        or text.startswith(("/", ".", "~"))
        or text.lower().endswith(WEIGHT_SUFFIXES)
        or "\\" in text
    )
    if looks_like_path or not _HUB_ID.match(text):
        raise BaseModelError(
            f"base model {text!r}: no such file or folder (and not a hub id like "
            "'stable-diffusion-v1-5/stable-diffusion-v1-5')"
        )
    return "hub", text


def load_base(
    spec: str | Path,
    *,
    device: str = "cpu",
    dtype: Any = None,
    allow_pickle: bool = False,
    config: str | Path | None = None,
    attention: str = "plain",
    architecture: str | None = None,
) -> Any:
    """Load a diffusers pipeline from ``spec`` through its base plug-in (:mod:`t2ibench.bases`).

    ``spec``: ``"tiny"`` (the random tiny base, built once in the cache root), a local diffusers
    folder (its ``model_index.json`` names the architecture), a single-file ``.safetensors``
    checkpoint (its keys name the architecture; its parts' configs come from ``config`` — a local
    diffusers folder — or the plug-in's bundled ones), a pickle ``.ckpt`` only with
    ``allow_pickle=True`` (read with ``weights_only=True``), or a hub id (offline: only from the
    local cache). ``architecture`` (``--base sdxl``) must then match what was found.
    ``dtype`` defaults to float32.
    """
    import torch

    dtype = torch.float32 if dtype is None else dtype
    kind, where = resolve_spec(spec)
    if kind == "tiny":
        kind, where = "folder", tiny_base_folder()
    arch = base_architecture(kind, where, architecture)
    with _quiet_loading():
        pipe = arch.load(kind, where, dtype=dtype, allow_pickle=allow_pickle, config=config)
    arch.finish(pipe, attention)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    for part in arch.frozen_modules(pipe).values():
        part.eval()
    return pipe


def base_architecture(kind: str, where: Any, expected: str | None = None) -> Any:
    """The base plug-in that loads ``(kind, where)`` of :func:`resolve_spec`; ``expected``: the
    architecture the user named, refused in one line when the files are another one."""
    from t2ibench.architectures import (
        BaseMismatchError,
        architecture_of_folder,
        architecture_of_keys,
        get_architecture,
    )

    if kind == "tiny":
        kind, where = "folder", tiny_base_folder()
    if kind == "folder":
        arch = architecture_of_folder(where)
    elif kind == "file" and Path(where).suffix.lower() == ".safetensors":
        arch = architecture_of_keys(safetensors_keys(where))
    elif expected is not None:
        return get_architecture(expected)  # a pickle or hub id: its keys are not read here
    else:
        arch = architecture_of_keys(())
    if expected is not None and arch.name != expected:
        want = get_architecture(expected)
        raise BaseMismatchError(
            f"{where}: --base {expected} expects {want.title} but this is {arch.title} "
            f"({arch.name}, {'/'.join(arch.pipeline_classes)})"
        )
    return arch


def safetensors_keys(path: Path) -> list[str]:
    """The file's tensor names (header only); none when unreadable (the loader then says why)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except (SafetensorError, OSError, ValueError):
        return []


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Hide diffusers' / transformers' per-component loading bars (the stages draw their own)."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    d_on, t_on = dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        if d_on:
            dlog.enable_progress_bar()
        if t_on:
            tlog.enable_progress_bar()


# --- fingerprints --------------------------------------------------------------------------------


def _weights_sha256(path: Path) -> str:
    return file_sha256(path, memo=True)  # large bases are read once a process


def _component_weight_files(folder: Path) -> list[Path]:
    """Weight files of the components ``model_index.json`` lists (top-level extras ignored)."""
    index = json.loads((folder / "model_index.json").read_text())
    files: list[Path] = []
    for name, value in sorted(index.items()):
        if name.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        sub = folder / name
        if sub.is_dir():
            files += sorted(
                p for p in sub.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file()
            )
    return files


def _combined(folder: Path, files: list[Path], digest: Any) -> str:
    h = hashlib.sha256()
    for path in files:
        h.update(
            path.relative_to(folder).as_posix().encode() + b"\0" + digest(path).encode() + b"\n"
        )
    return h.hexdigest()


def base_fingerprint(spec: str | Path) -> dict[str, str]:
    """``{"id": ..., "sha256": ...}`` identifying a base model's weights.

    Local folders hash their components' weight files, single files hash themselves, hub ids hash
    the cached snapshot's weight blobs (whose names already are their sha256) and add
    ``"revision"``, the snapshot commit.
    """
    kind, where = resolve_spec(spec)
    if kind == "tiny":
        folder = tiny_base_folder()
        return {
            "id": TINY,
            "sha256": _combined(folder, _component_weight_files(folder), _weights_sha256),
        }
    if kind == "folder":
        return {
            "id": str(where),
            "sha256": _combined(where, _component_weight_files(where), _weights_sha256),
        }
    if kind == "file":
        return {"id": str(where), "sha256": _weights_sha256(where)}
    from huggingface_hub import snapshot_download

    try:
        snap = Path(snapshot_download(where, local_files_only=True))
    except Exception as exc:  # any miss: the hub client raises several types
        raise BaseModelError(f"base model {where!r}: not in the local Hugging Face cache") from exc

    def blob_digest(path: Path) -> str:
        target = Path(os.path.realpath(path)).name
        return target if re.fullmatch(r"[0-9a-f]{64}", target) else _weights_sha256(path)

    return {
        "id": where,
        "sha256": _combined(snap, _component_weight_files(snap), blob_digest),
        "revision": snap.name,
    }
