"""Load a Stable Diffusion base model from a hub id, a local folder, a single file, or ``"tiny"``.

Every path ends in a ``StableDiffusionPipeline`` without safety checker, with the plain attention
processor pinned (no SDPA / xformers kernel choice, so CPU runs are bit-reproducible) and progress
bars off (the stages draw their own).
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

from t2ibench.errors import ConfigError, T2IBenchError
from t2ibench.fsutil import cache_root, file_sha256, hub_offline

TINY = "tiny"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


class BaseModelError(T2IBenchError, ValueError):
    """A base model cannot be found or loaded; the message says what to pass instead."""


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


def _pin_attention(pipe: Any, attention: str) -> None:
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    if attention == "plain":
        processor = AttnProcessor()
    elif attention == "sdpa":
        processor = AttnProcessor2_0()
    else:
        raise ConfigError(f"attention: {attention!r} is not 'plain' or 'sdpa'")
    for part in (pipe.unet, pipe.vae):
        part.set_attn_processor(processor)


def load_base(
    spec: str | Path,
    *,
    device: str = "cpu",
    dtype: Any = None,
    allow_pickle: bool = False,
    config: str | Path | None = None,
    attention: str = "plain",
) -> Any:
    """Load a ``StableDiffusionPipeline`` from ``spec``.

    ``spec``: ``"tiny"`` (the random tiny base, built once in the cache root), a local diffusers
    folder, a single-file ``.safetensors`` checkpoint in the original SD layout (its parts'
    configs come from ``config`` — a local diffusers folder — or the bundled SD1.5 configs), a pickle
    ``.ckpt`` only with ``allow_pickle=True`` (read with ``weights_only=True``), or a hub id (offline:
    only from the local cache). ``dtype`` defaults to float32.
    """
    import torch

    dtype = torch.float32 if dtype is None else dtype
    kind, where = resolve_spec(spec)
    with _quiet_loading():
        pipe = _load(kind, where, dtype=dtype, allow_pickle=allow_pickle, config=config)
    _pin_attention(pipe, attention)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        part.eval()
    return pipe


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


def _load(kind: str, where: Any, *, dtype: Any, allow_pickle: bool, config: Any) -> Any:
    from diffusers import StableDiffusionPipeline

    common = {_dtype_kwarg(): dtype, "safety_checker": None, "requires_safety_checker": False}
    if kind == "tiny":
        kind, where = "folder", tiny_base_folder()
    if kind == "folder":
        pipe = _wrap_load(
            lambda: StableDiffusionPipeline.from_pretrained(where, local_files_only=True, **common),
            where,
        )
    elif kind == "file":
        pipe = _load_single_file(where, config=config, allow_pickle=allow_pickle, common=common)
    else:
        pipe = _load_hub(where, common)
    return pipe


def _dtype_kwarg() -> str:
    """diffusers ≥ 0.40 renamed ``torch_dtype`` to ``dtype`` (the old name warns)."""
    from diffusers.utils import deprecation_utils

    return (
        "dtype" if hasattr(deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE") else "torch_dtype"
    )


def _wrap_load(fn: Any, where: Any) -> Any:
    try:
        return fn()
    except T2IBenchError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise BaseModelError(f"{where}: cannot load the base model: {exc}") from exc


def _load_single_file(path: Path, *, config: Any, allow_pickle: bool, common: dict) -> Any:
    from diffusers import StableDiffusionPipeline

    from t2ibench.models.sd15 import sd15_config_folder

    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES and not allow_pickle:
        raise BaseModelError(
            f"{path}: pickle checkpoints ({suffix}) can run code when loaded; convert it to "
            ".safetensors, or pass allow_pickle=True (--allow-pickle) to read it with weights_only=True"
        )
    if suffix != ".safetensors" and suffix not in PICKLE_SUFFIXES:
        raise BaseModelError(f"{path}: unknown checkpoint type {suffix!r}; expected .safetensors")
    if config is None:
        config_folder = sd15_config_folder()
    else:
        config_folder = Path(config).expanduser()
        if not (config_folder / "model_index.json").is_file():
            raise BaseModelError(
                f"{config_folder}: config must be a local diffusers folder with model_index.json"
            )
    # diffusers reads pickles with torch.load(weights_only=True) (model_loading_utils.load_state_dict).
    return _wrap_load(
        lambda: StableDiffusionPipeline.from_single_file(
            str(path), config=str(config_folder), local_files_only=True, **common
        ),
        path,
    )


def _load_hub(repo_id: str, common: dict) -> Any:
    from diffusers import StableDiffusionPipeline

    offline = hub_offline()
    try:
        return StableDiffusionPipeline.from_pretrained(repo_id, local_files_only=offline, **common)
    except (OSError, ValueError) as exc:
        where = "the local Hugging Face cache (HF_HUB_OFFLINE is set)" if offline else "the hub"
        raise BaseModelError(
            f"base model {repo_id!r}: not found in {where} ({type(exc).__name__}). Pass a local "
            "diffusers folder (--base /path/to/sd15), a single .safetensors checkpoint, or 'tiny'"
        ) from exc


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
