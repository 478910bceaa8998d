"""Adapters saved by other tools, read as t2ibench's kohya keys (``lora_unet_*`` / ``lora_te_*``).

What comes in, and how it maps:

* kohya sd-scripts / LyCORIS' kohya wrapper / t2ibench: ``lora_unet_<path>.<suffix>`` and
  ``lora_te_text_model_<path>.<suffix>``, read as they are (``lora_te_encoder_...``, as written
  under transformers >= 5, gets its ``text_model_`` back).
* lycoris-lora's ``LycorisNetwork.save_weights`` (``create_lycoris(pipe.unet, ...)``, as
  SimpleTuner saves it): ``lycoris_<path>.<suffix>``, the path relative to the module wrapped; a
  text-encoder path (``text_model_...`` / ``encoder_layers_...``) becomes ``lora_te_``, any other
  ``lora_unet_``. The suffixes and the ``alpha`` scalar are LyCORIS's own, as in kohya files.
* PEFT adapter folders (``adapter_config.json`` + ``adapter_model.safetensors``, keys
  ``base_model.model.<path>.lora_A.weight``, LoHa ``.hada_*``, LoKr ``.lokr_*``), alone or as the
  ``unet/`` + ``text_encoder/`` pair that ``t2ibench export --format peft`` and diffusers write; and
  diffusers' ``pytorch_lora_weights.safetensors`` (``unet.<path>.lora_A.weight``, older
  ``.lora.down.weight``). peft's scale ``alpha / r`` (``/ sqrt(r)`` with rsLoRA; ``rank_pattern``
  / ``alpha_pattern`` per module) becomes the kohya ``alpha`` that gives the same scale.
* ai-toolkit's and ComfyUI's FLUX.1 / FLUX.2 files: BFL's dotted names under ``diffusion_model.``
  (or ``transformer.``), ``lora_A`` / ``lora_B`` or ``lora_down`` / ``lora_up`` (+ ``alpha``):
  read as diffusers keys (``lora_unet_double_blocks_0_img_attn_qkv``), which the base then maps
  onto its diffusers layers (:meth:`~t2ibench.architectures.BaseArchitecture.adapter_state`).

Every saved layer must then be one a registered trainer reads (its signature, and no tensor the
trainer does not know: a DoRA ``dora_scale`` or a norm's ``w_norm`` is refused, never dropped);
else one line names the file and the first unknown key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import torch

from t2ibench.errors import T2IBenchError

from .errors import AdapterFileError
from .peft_keys import DIFFUSERS_PARTS as _DIFFUSERS_PARTS
from .peft_keys import PEFT_PREFIX as _PEFT_PREFIX
from .peft_keys import configs_from_metadata as _configs_from_metadata
from .peft_keys import part_of as _part_of

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
DIFFUSERS_WEIGHTS = "pytorch_lora_weights.safetensors"
#: sub-folders of a two-part PEFT adapter (t2ibench export, diffusers) → model part
PART_FOLDERS = {"unet": "unet", "text_encoder": "te"}
#: metadata key recording which layout a file came in
SOURCE_FORMAT = "t2ibench_source_format"

# te1/te2(/te3): SDXL's and SD3's several text encoders
_KOHYA = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_", "lora_te3_")
_LYCORIS = "lycoris_"
_BFL_PREFIX = "diffusion_model."
# LoRA tensors in peft / diffusers naming → kohya suffix
_LORA_RENAMES = (
    (".lora_A.weight", "lora_down.weight"),
    (".lora_B.weight", "lora_up.weight"),
    (".lora.down.weight", "lora_down.weight"),
    (".lora.up.weight", "lora_up.weight"),
    (".lora_linear_layer.down.weight", "lora_down.weight"),
    (".lora_linear_layer.up.weight", "lora_up.weight"),
)
# kohya's suffixes on dotted paths (ComfyUI: ``diffusion_model.<path>.lora_down.weight`` +
# ``.alpha``): read under a known prefix only, never taken as a sign of the layout
_DOTTED_KOHYA = ((".lora_down.weight", "lora_down.weight"), (".lora_up.weight", "lora_up.weight"))


def _error(where: object, msg: str) -> T2IBenchError:
    return AdapterFileError(f"{where}: {msg}")


# --- folders --------------------------------------------------------------------------------------


def peft_parts(folder: Path) -> dict[str, Path]:
    """model part → PEFT folder of a PEFT adapter folder (``{}``: not one). A folder holding the
    files itself is one part (the text encoder when it is called ``text_encoder``, else the
    UNet); else its ``unet/`` and ``text_encoder/`` sub-folders."""
    folder = Path(folder)
    if (folder / PEFT_CONFIG).is_file():
        return {PART_FOLDERS.get(folder.name, "unet"): folder}
    return {
        part: folder / sub
        for sub, part in PART_FOLDERS.items()
        if (folder / sub / PEFT_CONFIG).is_file()
    }


def is_adapter_folder(folder: Path | str) -> bool:
    """Whether ``folder`` is an adapter (PEFT, or diffusers' LoRA weights), not a full model."""
    folder = Path(folder)
    return folder.is_dir() and bool(peft_parts(folder) or (folder / DIFFUSERS_WEIGHTS).is_file())


def _inside(folder: Path, path: Path) -> Path:
    """``path`` if it resolves inside ``folder`` (no symlink out of it)."""
    real = path.resolve()
    if not real.is_relative_to(folder.resolve()):
        raise _error(path, f"points outside {folder} (a symlink?); refused")
    return real


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _error(path, f"not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _error(path, "not a JSON object")
    return data


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise _error(path, f"not a readable safetensors file ({exc})") from None
    if not tensors:
        raise _error(path, "holds no tensors")
    return tensors, meta


def read_adapter_folder(folder: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(kohya tensors, metadata)`` of a PEFT adapter folder or a diffusers LoRA folder."""
    folder = Path(folder)
    parts = peft_parts(folder)
    if not parts:
        weights = _inside(folder, folder / DIFFUSERS_WEIGHTS)
        tensors, meta = _read_safetensors(weights)
        return convert_to_kohya(tensors, meta, weights)
    out: dict[str, torch.Tensor] = {}
    meta: dict[str, str] = {SOURCE_FORMAT: "peft"}
    for part, sub in sorted(parts.items()):
        config = _read_json(_inside(folder, sub / PEFT_CONFIG))
        weights = sub / PEFT_WEIGHTS
        if not weights.is_file():
            raise _error(sub, f"has {PEFT_CONFIG} but no {PEFT_WEIGHTS}")
        tensors, file_meta = _read_safetensors(_inside(folder, weights))
        out.update(_from_peft(tensors, {"*": config}, weights, default_part=part))
        extra = sub / "t2ibench_metadata.json"  # what t2ibench export keeps of the source file
        if extra.is_file():
            meta.update({k: str(v) for k, v in _read_json(_inside(folder, extra)).items()})
        meta.update(file_meta)
        meta[f"peft_config_{part}"] = json.dumps(config, sort_keys=True)
    meta[SOURCE_FORMAT] = "peft"
    return out, meta


# --- key conversion -------------------------------------------------------------------------------


def source_format(keys: list[str]) -> str:
    """``kohya``, ``lycoris``, ``peft``, ``bfl`` or ``diffusers`` from a file's keys (``unknown``: none)."""
    if all(k.startswith(_KOHYA) for k in keys):
        return "kohya"
    if all(k.startswith(_LYCORIS) for k in keys):
        return "lycoris"
    if all(k.startswith(_PEFT_PREFIX) for k in keys):
        return "peft"
    if all(k.startswith(_BFL_PREFIX) for k in keys):
        return "bfl"  # ai-toolkit / ComfyUI: read as diffusers keys, named by the base
    if all(k.startswith(tuple(_DIFFUSERS_PARTS)) for k in keys):
        return "diffusers"
    # diffusers' ``save_lora_adapter``: one model's peft keys without a prefix
    if all(k.endswith(tuple(s for s, _ in _LORA_RENAMES)) or k.endswith(".alpha") for k in keys):
        return "diffusers"
    return "unknown"


def convert_to_kohya(
    tensors: Mapping[str, torch.Tensor], meta: Mapping[str, str], where: object
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A safetensors adapter's tensors under kohya keys, and its metadata with the source
    format recorded (:data:`SOURCE_FORMAT`)."""
    keys = sorted(tensors)
    fmt = source_format(keys)
    if fmt == "kohya":
        # written under transformers >= 5 (lycoris-lora's kohya wrapper, sd-scripts): the text
        # encoder's keys lack ``text_model_``, which every loader (and t2ibench) expects
        return {_with_text_model(k): v for k, v in tensors.items()}, dict(meta)
    meta = {**meta, SOURCE_FORMAT: meta.get(SOURCE_FORMAT, fmt)}
    if fmt == "lycoris":
        return _from_lycoris(tensors), meta
    if fmt in ("peft", "diffusers", "bfl"):
        return _from_peft(tensors, _configs_from_metadata(meta), where), meta
    known = (*_KOHYA, _LYCORIS, _PEFT_PREFIX, *_DIFFUSERS_PARTS)
    first = next((k for k in keys if not k.startswith(known)), keys[0])
    raise _error(
        where,
        f"key {first!r} is in no known layout (kohya lora_unet_*/lora_te_*, LyCORIS lycoris_*, "
        "PEFT base_model.model.*, diffusers unet.*/text_encoder.*/transformer.*, ComfyUI / "
        "ai-toolkit diffusion_model.*; one layout per file)",
    )


def _with_text_model(key: str) -> str:
    for prefix in _KOHYA[1:]:  # lora_te_, lora_te1_, lora_te2_
        if key.startswith(prefix) and not key.startswith(prefix + "text_model_"):
            return prefix + "text_model_" + key[len(prefix) :]
    return key


def _from_lycoris(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in tensors.items():
        stem, _, suffix = key.partition(".")
        path = stem[len(_LYCORIS) :]
        if _part_of(path) == "te":
            path = path if path.startswith("text_model_") else "text_model_" + path
            new = "lora_te_" + path
        else:
            new = "lora_unet_" + path
        out[f"{new}.{suffix}"] = value
    return out


#: Seconds one rank_pattern / alpha_pattern key may take to match one module name, and all its
#: matches of one file together; module names are < 200 characters, so an ordinary key takes
#: microseconds and a key over the bound is a pathological regular expression.
PATTERN_MATCH_TIMEOUT_S = 0.25
PATTERN_FILE_BUDGET_S = 2.0


class _PatternMatcher:
    r"""peft's rank_pattern / alpha_pattern lookup (``peft.utils.other.get_pattern_key``: the first
    key ``k`` with ``re.match(rf"(.*\.)?({k})$", module)``), but time-bounded: the keys come
    from a file, and with ``re`` a key like ``(a+)+b`` backtracks for hours. The ``regex`` engine
    (a transformers dependency, ``re``-compatible syntax) avoids most such backtracking and stops
    a match after a timeout; a key over the bound is refused in one line naming it."""

    def __init__(self, where: object) -> None:
        self.where = where
        self.spent: dict[str, float] = {}

    def value(self, field: str, patterns: Mapping[str, object], name: str, default: object):
        import time

        import regex

        for key in patterns:
            try:
                compiled = regex.compile(rf"(.*\.)?({key})$")
            except (regex.error, TypeError) as exc:
                raise _error(
                    self.where, f"{field} key {key!r} is not a regular expression ({exc})"
                ) from None
            left = PATTERN_FILE_BUDGET_S - self.spent.get(key, 0.0)
            t0 = time.perf_counter()
            try:
                found = compiled.match(name, timeout=max(min(PATTERN_MATCH_TIMEOUT_S, left), 0))
            except TimeoutError:
                found = None
                left = -1.0
            self.spent[key] = self.spent.get(key, 0.0) + time.perf_counter() - t0
            if left < 0 or self.spent[key] > PATTERN_FILE_BUDGET_S:
                raise _error(
                    self.where,
                    f"{field} key {key!r} takes too long to match module names (a pathological "
                    "regular expression, e.g. nested repeats); refused — simplify the key",
                )
            if found:
                return patterns[key]
        return default


def _peft_scale(
    config: Mapping[str, object], module: str, kind: str, matcher: _PatternMatcher
) -> float | None:
    """peft's scale for ``module``; None when the config says nothing (diffusers file without
    metadata: its loader uses alpha = r, scale 1)."""
    if not config:
        return None
    rank_pattern = config.get("rank_pattern") or {}
    r = float(matcher.value("rank_pattern", rank_pattern, module, config.get("r", 8)))
    alpha_key = "lora_alpha" if kind == "lora" else "alpha"
    alpha_pattern = config.get("alpha_pattern") or {}
    alpha = float(matcher.value("alpha_pattern", alpha_pattern, module, config.get(alpha_key, r)))
    if kind == "lora" and config.get("use_rslora"):
        return alpha / math.sqrt(r)
    return alpha / r


def _split_peft_key(key: str, default_part: str | None) -> tuple[str, str, str]:
    """``(part, module path, suffix)`` of a PEFT / diffusers key (suffix in kohya naming)."""
    part = default_part
    for prefix, p in _DIFFUSERS_PARTS.items():
        if key.startswith(prefix):
            key, part = key[len(prefix) :], p
            break
    else:
        key = key.removeprefix(_PEFT_PREFIX)
    for peft_suffix, kohya_suffix in (*_LORA_RENAMES, *_DOTTED_KOHYA):
        if key.endswith(peft_suffix):
            path = key[: -len(peft_suffix)]
            return part or _part_of(path), path, kohya_suffix
    path, _, suffix = key.rpartition(".")
    if suffix == "alpha" and path.endswith(".lora"):  # older diffusers: <path>.lora.alpha
        path = path[: -len(".lora")]
    return part or _part_of(path), path, suffix


def _from_peft(
    tensors: Mapping[str, torch.Tensor],
    configs: Mapping[str, Mapping[str, object]],
    where: object,
    *,
    default_part: str | None = None,
) -> dict[str, torch.Tensor]:
    """kohya tensors of PEFT / diffusers ones; ``configs``: part (``*``: all) → peft config."""
    from .peft_wrap import needs_peft_layers, peft_tensors_to_kohya
    from .presets import kohya_name

    if needs_peft_layers(configs):  # DoRA, OFT, BOFT, HRA, IA3, VeRA: read by PEFT's own layers
        return peft_tensors_to_kohya(tensors, configs, where, default_part=default_part)
    matcher = _PatternMatcher(where)
    grouped: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        part, path, suffix = _split_peft_key(key, default_part)
        if not path:
            raise _error(where, f"key {key!r} is not '<module>.<tensor>'")
        grouped.setdefault((part, path), {})[suffix] = value
    out = {}
    for (part, path), group in grouped.items():
        stem = kohya_name(part, path)
        given_alpha = group.pop("alpha", None)
        kind = (
            "lora"
            if "lora_down.weight" in group
            else "loha"
            if "hada_w1_a" in group
            else "lokr"
            if any(k.startswith("lokr_") for k in group)
            else ""
        )
        if not kind:
            first = sorted(group)[0]
            raise _error(where, f"key {stem}.{first} matches no registered trainer")
        scale = _peft_scale(configs.get(part) or configs.get("*") or {}, path, kind, matcher)
        dim = _kohya_dim(kind, group)
        if scale is None:
            alpha = float(given_alpha) if given_alpha is not None else float(dim)
        elif kind == "lokr" and "lokr_w1" in group and "lokr_w2" in group:
            # LyCORIS (and t2ibench) fix the scale of an all-full LoKr at 1: fold peft's into w2.
            group["lokr_w2"] = group["lokr_w2"] * scale
            alpha = float(dim)
        else:
            alpha = scale * dim
        for suffix, value in group.items():
            out[f"{stem}.{suffix}"] = value
        out[f"{stem}.alpha"] = torch.tensor(alpha)
    return out


def _kohya_dim(kind: str, group: Mapping[str, torch.Tensor]) -> int:
    """The rank t2ibench's module reads from these tensors (its ``from_state``), so that
    ``alpha / dim`` is the scale wanted."""
    if kind == "lora":
        return int(group["lora_down.weight"].shape[0])
    if kind == "loha":
        return int(group["hada_w1_b"].shape[0])
    if "lokr_t2" in group:
        return int(group["lokr_t2"].shape[0])
    if "lokr_w1_a" in group:
        return int(group["lokr_w1_a"].shape[1])
    if "lokr_w2_a" in group:
        return int(group["lokr_w2_a"].shape[1])
    return 1


# --- the registry check ---------------------------------------------------------------------------


def check_known_keys(tensors: Mapping[str, torch.Tensor], where: object) -> dict[str, str]:
    """Every saved layer read by a registered trainer's module, with no tensor it does not know.
    Returns kohya stem → trainer name; else one line naming the file and the first unknown key."""
    from .registry import TRAINERS, module_class_for

    grouped: dict[str, set[str]] = {}
    for key in sorted(tensors):
        stem, _, suffix = key.partition(".")
        if not suffix:
            raise _error(where, f"key {key!r} is not '<module>.<tensor>'")
        grouped.setdefault(stem, set()).add(suffix)
    owner = {
        getattr(TRAINERS.get(n), "module_class", None): n for n in TRAINERS.names()
    }  # module class → trainer name
    out = {}
    for stem, suffixes in grouped.items():
        cls = module_class_for(suffixes)
        if cls is None:
            first = sorted(suffixes - {"alpha"} or suffixes)[0]
            raise _error(
                where,
                f"key {stem}.{first} matches no registered trainer ({', '.join(TRAINERS.names())})",
            )
        unknown = sorted(suffixes - set(cls.keys) - {"alpha"})
        if unknown:
            raise _error(
                where,
                f"key {stem}.{unknown[0]} is not a {owner.get(cls, cls.algo)} tensor "
                "(no registered trainer reads it)",
            )
        out[stem] = owner.get(cls, cls.algo)
    return out


__all__ = [
    "DIFFUSERS_WEIGHTS",
    "PEFT_CONFIG",
    "PEFT_WEIGHTS",
    "SOURCE_FORMAT",
    "check_known_keys",
    "convert_to_kohya",
    "is_adapter_folder",
    "peft_parts",
    "read_adapter_folder",
    "source_format",
]
