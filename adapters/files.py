"""Adapter files: fp16 safetensors with kohya keys and t2ibench metadata; loading and merging.

Keys are those sd-scripts / LyCORIS write and A1111 / ComfyUI read: ``lora_unet_<path>`` and
``lora_te_text_model_<path>`` stems with ``.lora_down.weight`` / ``.lora_up.weight`` /
``.alpha`` (LoRA), ``.hada_*`` (LoHa), ``.lokr_*`` (LoKr), ``.diff`` / ``.diff_b`` (native).
Metadata (all strings): ``t2ibench_trainer_config`` (the config as JSON), ``t2ibench_version``,
``t2ibench_base_model`` / ``t2ibench_base_sha256``, ``t2ibench_epoch``, plus the ``ss_network_*``
fields sd-scripts writes, so other tools recognise the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from t2ibench.fsutil import atomic_write_with

from .errors import AdapterFileError
from .network import AdapterNetwork
from .registry import get_trainer, module_class_for_file


def build_metadata(
    cfg: Any,
    base: Mapping[str, str] | None,
    *,
    epoch: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The string metadata saved with every checkpoint."""
    import t2ibench

    meta = {
        "t2ibench_version": t2ibench.__version__,
        "t2ibench_trainer_config": cfg.to_json(),
        "t2ibench_trainer": cfg.trainer,
        "t2ibench_base_model": (base or {}).get("id", ""),
        "t2ibench_base_sha256": (base or {}).get("sha256", ""),
        **get_trainer(cfg.trainer).metadata(cfg),  # the trainer's own fields (ss_network_*)
        "ss_output_name": cfg.output_name,
    }
    if epoch is not None:
        meta["t2ibench_epoch"] = str(epoch)
        meta["ss_epoch"] = str(epoch)
    for k, v in (extra or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    return meta


def current_umask() -> int:
    """The process umask (Linux: read without changing it; elsewhere set and restored)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: Path) -> None:
    """Give a file or folder tree the usual modes (0666 / 0777 less the umask), as for any file the
    user writes: safetensors creates 0600 files, which an A1111 or ComfyUI running as another user
    cannot read."""
    mask = current_umask()
    path = Path(path)
    for p in [path, *(path.rglob("*") if path.is_dir() else ())]:
        if not p.is_symlink():
            p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


def atomic_save_safetensors(
    tensors: Mapping[str, torch.Tensor], path: Path, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write to a temp name in the same folder, then ``os.replace`` (never a half-written file)."""
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in tensors.items()}

    def write(tmp: Path) -> None:
        save_file(state, tmp, metadata=dict(metadata or {}))
        _canonical_header(tmp)
        apply_umask(tmp)

    return atomic_write_with(path, write)


def _canonical_header(path: Path) -> None:
    """Rewrite a safetensors header with sorted keys, so identical runs give identical bytes.

    safetensors writes its JSON header from a hash map whose order changes from process to
    process; the content is the same. The header is compact JSON padded with spaces to 8 bytes:
    the same content with sorted keys has the same length and is written over it in place
    (else, with other escaping, the header is rewritten with the data after it)."""
    import json
    import struct

    with open(path, "r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        raw = f.read(n)
        header = json.loads(raw)
        if "__metadata__" in header:
            header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        data = text.encode("utf-8")
        padded = data + b" " * (-(8 + len(data)) % 8)
        if len(padded) == n:
            f.seek(8)
            f.write(padded)
            return
        rest = f.read()
        f.seek(0)
        f.write(struct.pack("<Q", len(padded)) + padded + rest)
        f.truncate()


def all_finite(tensor: torch.Tensor) -> bool:
    """No NaN or inf in ``tensor``. A NaN or inf element makes the sum NaN or inf, so a finite sum
    settles it; only a non-finite sum (also possible from finite values that overflow) needs the
    elementwise check. The sum is ~25x faster on CPU: 7 s less per load of SD1.5's 1.1 B weights."""
    with torch.no_grad():
        return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


def bad_tensors(tensors: Mapping[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """``(not floating point, holding NaN/inf)`` keys of ``tensors``."""
    not_float = [k for k, v in tensors.items() if not v.is_floating_point()]
    nonfinite = [k for k, v in tensors.items() if v.is_floating_point() and not all_finite(v)]
    return not_float, nonfinite


def check_tensors(tensors: Mapping[str, torch.Tensor], where: str) -> None:
    """One clear error when weights are not floating point or hold NaN / inf (they would give
    black images, silently)."""
    not_float, nonfinite = bad_tensors(tensors)
    if not_float:
        dtypes = sorted({str(tensors[k].dtype).replace("torch.", "") for k in not_float})
        raise AdapterFileError(
            f"{where}: {len(not_float)} of {len(tensors)} tensors are not floating point "
            f"({', '.join(dtypes)}; e.g. {not_float[0]}): quantised weights are not supported"
        )
    if nonfinite:
        raise AdapterFileError(
            f"{where}: {len(nonfinite)} of {len(tensors)} tensors hold NaN or inf "
            f"(e.g. {nonfinite[0]}); the weights are broken (a diverged training run?)"
        )


def check_module_weights(module: Any, where: str) -> None:
    """:func:`check_tensors` on a model's parameters and floating buffers (a base model part)."""
    if module is None:
        return
    tensors = dict(module.named_parameters())
    tensors.update({k: v for k, v in module.named_buffers() if v.is_floating_point()})
    not_float, nonfinite = bad_tensors(tensors)
    if nonfinite:
        raise AdapterFileError(
            f"{where}: {len(nonfinite)} of {len(tensors)} weight tensors hold NaN or inf "
            f"(e.g. {nonfinite[0]}); the base model is broken"
        )


def save_adapter(
    network: AdapterNetwork,
    path: Path,
    metadata: Mapping[str, str],
    *,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Save the network's tensors (cast to ``dtype``, fp16 by default) with kohya keys.

    Refuses (AdapterFileError) when a tensor is, or becomes after the cast, NaN or inf: fp16 stops
    at ±65504, so a diverging run can hold finite fp32 weights whose checkpoint would be inf.
    """
    state = {k: v.to(dtype) for k, v in network.kohya_state_dict().items()}
    check_tensors(state, f"{path}: not saved")
    return atomic_save_safetensors(state, path, metadata)


def read_adapter(path: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of an adapter file (kohya keys whatever tool saved it: see
    :mod:`.foreign`) or a PEFT / diffusers LoRA folder; errors name the file."""
    from safetensors import SafetensorError, safe_open

    from .foreign import convert_to_kohya, is_adapter_folder, read_adapter_folder

    path = Path(path)
    if path.is_dir() and is_adapter_folder(path):  # PEFT / diffusers LoRA folder
        tensors, meta = read_adapter_folder(path)
        check_tensors(tensors, str(path))
        return tensors, meta
    if path.is_dir():
        raise AdapterFileError(
            f"{path}: a full diffusers checkpoint (native_save='diffusers'), not an adapter file; "
            "load it as a base model instead"
        )
    if not path.is_file():
        raise AdapterFileError(f"{path}: no such adapter file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise AdapterFileError(f"{path}: not a readable safetensors file ({exc})") from None
    if not tensors:
        raise AdapterFileError(f"{path}: holds no tensors")
    # other tools' layouts (LyCORIS, PEFT, diffusers) read as kohya keys; see .foreign
    tensors, meta = convert_to_kohya(tensors, meta, path)
    check_tensors(tensors, str(path))
    return tensors, meta


def _architecture(pipe: Any) -> Any:
    from t2ibench.architectures import architecture_of_pipe
    from t2ibench.errors import ConfigError

    try:
        return architecture_of_pipe(pipe)
    except ConfigError:
        raise TypeError(
            "expected a diffusers pipeline of a registered base (StableDiffusionPipeline, "
            "StableDiffusionXLPipeline, ...; or an object with .unet / .text_encoder)"
        ) from None


def network_for(pipe: Any, path: Path | str) -> tuple[AdapterNetwork, dict[str, str]]:
    """Adapters rebuilt from a file on the pipeline's layers (not attached yet); a file made for
    another base family (its keys say which) is refused in one line naming both."""
    from t2ibench.architectures import check_adapter_fits

    arch = _architecture(pipe)
    tensors, meta = read_adapter(path)
    check_adapter_fits(tensors, arch, path)
    tensors = arch.adapter_state(tensors, pipe)  # e.g. sd-scripts' SGM names on SDXL
    parts = arch.all_parts(pipe)
    try:
        net = AdapterNetwork.from_state_dict(tensors, parts, module_class_for_file(meta))
    except ValueError as exc:
        raise AdapterFileError(f"{path}: does not fit this base model: {exc}") from None
    from .foreign import check_known_keys

    check_known_keys(tensors, path)  # a tensor no module reads (DoRA's dora_scale) is refused
    device = arch.denoiser_of(pipe).device
    net.to(device=device, dtype=torch.float32)
    net.requires_grad_(False)
    return net, meta


@dataclass
class AdapterHandle:
    """An adapter put on a pipeline by :func:`apply_adapter`; ``remove()`` takes it off."""

    network: AdapterNetwork
    metadata: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    @property
    def multiplier(self) -> float:
        return next(iter(self.network)).multiplier if len(self.network) else 1.0

    def set_multiplier(self, multiplier: float) -> None:
        self.network.set_multiplier(multiplier)

    def remove(self) -> None:
        if self.network.attached:
            self.network.detach_()

    def __enter__(self) -> AdapterHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def apply_adapter(pipe: Any, checkpoint: Path | str, multiplier: float = 1.0) -> AdapterHandle:
    """Put a saved adapter on ``pipe.unet`` / ``pipe.text_encoder`` at ``multiplier``.

    The base weights are untouched (the layers compute ``W + m·ΔW`` on the fly); ``handle.remove()``
    restores the pipeline exactly.
    """
    net, meta = network_for(pipe, checkpoint)
    net.set_multiplier(multiplier)
    net.attach()
    return AdapterHandle(net, meta, Path(checkpoint))


@dataclass
class FusedAdapterHandle:
    """An adapter merged into the base weights by :func:`fuse_adapter`; ``remove()`` puts the
    saved weights (and biases) back bit for bit."""

    #: (layer, its weight before, its bias before or None)
    saved: list[tuple[Any, torch.Tensor, torch.Tensor | None]]
    metadata: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    @torch.no_grad()
    def remove(self) -> None:
        for layer, weight, bias in self.saved:
            layer.weight.copy_(weight)
            if bias is None:
                layer.bias = None  # the merge gave it a bias (Δb of a bias-free layer)
            else:
                layer.bias.copy_(bias)
        self.saved = []

    def __enter__(self) -> FusedAdapterHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def fuse_adapter(pipe: Any, checkpoint: Path | str, multiplier: float = 1.0) -> FusedAdapterHandle:
    """Merge ``multiplier · ΔW`` into the adapted layers for generation (the forward then runs
    the base layers only, without recomputing ΔW per call), keeping a CPU copy of each layer's
    weights so ``handle.remove()`` restores the pipeline exactly. Numerically it differs from
    :func:`apply_adapter` only by rounding: W + m·ΔW is formed once in float32 and cast to the
    weights' dtype (applied: per call, in that dtype; LoRA's bypass form adds up(down(x)))."""
    net, meta = network_for(pipe, checkpoint)
    saved = []
    for module in net:
        layer = module.org
        bias = None if layer.bias is None else layer.bias.detach().to("cpu", copy=True)
        saved.append((layer, layer.weight.detach().to("cpu", copy=True), bias))
    handle = FusedAdapterHandle(saved, meta, Path(checkpoint))
    try:
        net.merge_into_base(multiplier)
    except BaseException:
        handle.remove()
        raise
    return handle


def merge_adapter(pipe: Any, checkpoint: Path | str, multiplier: float = 1.0) -> dict[str, str]:
    """Add ``multiplier · ΔW`` to the pipeline's weights (the alpha/dim scale applied once).

    Returns the file's metadata. Irreversible short of reloading the base.
    """
    net, meta = network_for(pipe, checkpoint)
    net.merge_into_base(multiplier)
    return meta
