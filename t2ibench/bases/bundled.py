"""The published diffusers configs of single-file bases, bundled so ``load_base(file)`` needs no
``config`` folder: JSON only, under ``configs/<variant>/`` (``model_index.json``, the scheduler's,
the denoiser's, the VAE's and the text encoders' configs, the tokenizers' configs), with the values
of the diffusers-format hub repositories (``stabilityai/stable-diffusion-xl-base-1.0``,
``stabilityai/stable-diffusion-3.5-medium`` / ``-large``, ``black-forest-labs/FLUX.1-dev`` /
``-schnell``). A base plug-in picks its variant from the file's keys.

They are written on demand into the t2ibench cache as a config folder for diffusers'
``from_single_file(config=...)``. CLIP tokenizers get their vocabulary from open_clip's BPE file, as
SD1.5's do (:mod:`t2ibench.models.tokenizer`). T5's vocabulary (``spiece.model`` 792 KB, or
``tokenizer.json`` 2.4 MB) is not bundled: no offline copy exists to build it from. It comes from
the folder named by ``T2IBENCH_T5_TOKENIZER`` (for example a FLUX.1 folder's ``tokenizer_2``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

CONFIGS = Path(__file__).parent / "configs"
T5_TOKENIZER_ENV = "T2IBENCH_T5_TOKENIZER"
#: the files of a T5 tokenizer folder that carry its vocabulary (either is enough)
T5_VOCAB_FILES = ("spiece.model", "tokenizer.json")
# Bump when a bundled file changes so the cached folders are rewritten.
VERSION = 1


def variants() -> list[str]:
    return sorted(p.name for p in CONFIGS.iterdir() if (p / "model_index.json").is_file())


def _t5_vocab(variant: str, where: object) -> list[Path]:
    """The user's T5 vocabulary files (one clear line when none is given)."""
    from t2ibench.architectures import BaseModelError

    source = os.environ.get(T5_TOKENIZER_ENV, "")
    files = [Path(source).expanduser() / n for n in T5_VOCAB_FILES] if source else []
    files = [f for f in files if f.is_file()]
    if not files:
        raise BaseModelError(
            f"{where}: {variant}'s T5 tokenizer vocabulary is not bundled (tokenizer.json is "
            f"2.4 MB); set {T5_TOKENIZER_ENV}=DIR, a folder with spiece.model or tokenizer.json "
            "(e.g. a FLUX.1 or SD3.5 diffusers folder's T5 tokenizer), or pass config=DIR"
            + (f" ({source} has neither)" if source else "")
        )
    return files


def _tokenizer_class(folder: Path) -> str:
    return str(json.loads((folder / "tokenizer_config.json").read_text()).get("tokenizer_class"))


def bundled_config_folder(variant: str, where: object = "single file") -> Path:
    """A diffusers config folder (no weights) for ``variant``, for ``from_single_file(config=)``."""
    from t2ibench.fsutil import atomic_folder, cache_root
    from t2ibench.models.tokenizer import write_clip_tokenizer

    src = CONFIGS / variant
    if not (src / "model_index.json").is_file():
        raise KeyError(f"no bundled config {variant!r} (known: {', '.join(variants())})")
    tokenizers = sorted(p.parent for p in src.glob("*/tokenizer_config.json"))
    t5 = [t for t in tokenizers if _tokenizer_class(t) == "T5Tokenizer"]
    vocab = _t5_vocab(variant, where) if t5 else []
    digest = hashlib.sha256()
    for f in vocab:
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    tag = f"-t5-{digest.hexdigest()[:12]}" if vocab else ""
    folder = cache_root() / f"{variant}-config-v{VERSION}{tag}"
    if (folder / "model_index.json").is_file():
        return folder
    with atomic_folder(folder, lambda f: (f / "model_index.json").is_file()) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("model_*"))
        for tok in tokenizers:
            out = tmp / tok.name
            config = json.loads((tok / "tokenizer_config.json").read_text())
            if config.get("tokenizer_class") == "CLIPTokenizer":
                write_clip_tokenizer(out)  # vocab.json + merges.txt from open_clip's BPE file
            else:
                for f in vocab:
                    shutil.copyfile(f, out / f.name)
            specials = {
                k: config[k]
                for k in ("bos_token", "eos_token", "pad_token", "unk_token")
                if k in config
            }
            (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
            (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")
        # model_index.json last: its presence marks a complete folder
        shutil.copyfile(src / "model_index.json", tmp / "model_index.json")
    return folder


def single_file_parts(keys: list[str], required: dict[str, tuple[str, ...]]) -> list[str]:
    """The parts (``required``: part → key prefixes, any one enough) a file's keys lack."""
    return [
        part for part, prefixes in required.items() if not any(k.startswith(prefixes) for k in keys)
    ]


def single_file_config(
    path: Path, title: str, variant_of: object, required: dict[str, tuple[str, ...]]
) -> Path:
    """The bundled config folder for the single file ``path`` of a base called ``title``:
    ``variant_of(keys)`` names the variant (or raises); a file lacking a part ``required`` lists
    (part → key prefixes) is refused in one line, since a config folder holds no weights."""
    from t2ibench.architectures import BaseModelError
    from t2ibench.models.loading import safetensors_keys

    keys = safetensors_keys(path)
    missing = single_file_parts(keys, required)
    if missing:
        raise BaseModelError(
            f"{path}: this {title} single file holds no {', '.join(missing)} weights (the "
            "bundled configs have none); pass its diffusers folder as config=DIR"
        )
    return bundled_config_folder(variant_of(keys), path)  # type: ignore[operator]


def load_single_file(
    cls: Any,
    where: Any,
    config: Any,
    title: str,
    variant: Callable[[list[str]], str],
    parts: dict[str, tuple[str, ...]],
    dtype_kwargs: dict[str, Any],
) -> Any:
    """``cls.from_single_file`` on a local ``.safetensors``: with the user's diffusers folder as
    ``config``, else the bundled config :func:`single_file_config` picks from the file's keys."""
    from t2ibench.architectures import BaseModelError, wrap_load

    path = Path(where)
    if path.suffix.lower() != ".safetensors":
        raise BaseModelError(f"{path}: a {title} single file must be .safetensors")
    if config is None:
        config = single_file_config(path, title, variant, parts)
    elif not (Path(config) / "model_index.json").is_file():
        raise BaseModelError(
            f"{config}: config must be a local diffusers folder with model_index.json"
        )
    return wrap_load(
        lambda: cls.from_single_file(
            str(path), config=str(config), local_files_only=True, **dtype_kwargs
        ),
        path,
    )
