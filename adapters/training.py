"""The training loop (kohya sd-scripts semantics on diffusers): noise-prediction MSE, AdamW, constant
schedule with warm-up, aspect-ratio buckets, caption dropout, class-balancing repeats, checkpoints
at chosen epochs, resume, and a clear stop on a NaN / infinite loss.

Randomness is drawn from one generator per epoch seeded by ``(seed, epoch)``, so a run resumed at
an epoch boundary continues exactly as an uninterrupted one; on CPU two runs with the same seed are
bit-identical.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from t2ibench.errors import ConfigError, T2IBenchError
from t2ibench.fsutil import atomic_folder, atomic_write, remove_inside

from .config import TrainerConfig
from .files import (
    all_finite,
    apply_umask,
    atomic_save_safetensors,
    bad_tensors,
    build_metadata,
    check_module_weights,
    save_adapter,
)
from .network import AdapterNetwork
from .registry import config_from_dict, get_trainer, load_trainer_config

log = logging.getLogger(__name__)

# Fields that may differ between a run and the run it resumes.
_RESUMABLE = {"epochs", "save_epochs"}


class TrainingDivergedError(T2IBenchError, RuntimeError):
    """The loss became NaN or infinite; training stopped and earlier checkpoints were kept."""


@dataclass
class TrainResult:
    checkpoints: list[Path]
    losses: list[float] = field(default_factory=list)  # per step, this run only
    epochs_trained: int = 0
    steps: int = 0


# ---------------------------------------------------------------------------------------------
# aspect-ratio buckets
def make_buckets(resolution: int, min_reso: int, max_reso: int, step: int) -> list[tuple[int, int]]:
    """(width, height) pairs, sides multiples of ``step``, area ≤ resolution², sorted (kohya
    sd-scripts' ``make_bucket_resolutions``)."""
    lo = max(step, min(min_reso, resolution) // step * step)
    hi = max(resolution, max_reso // step * step)
    area = resolution * resolution
    buckets = {(resolution, resolution)}
    for w in range(lo, hi + 1, step):
        h = min(hi, (area // w) // step * step)
        if h >= lo:
            buckets.add((w, h))
            buckets.add((h, w))
    return sorted(buckets)


def assign_bucket(size: tuple[int, int], buckets: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """kohya sd-scripts' ``BucketManager.select_bucket``: an image whose size is a bucket goes
    there; otherwise the bucket with the smallest *linear* aspect-ratio error |w/h − W/H|, the
    first in sorted order on a tie (numpy's ``argmin``)."""
    w, h = size
    if (w, h) in buckets:
        return (w, h)
    ar = w / h
    ordered = sorted(buckets)
    return min(ordered, key=lambda b: abs(b[0] / b[1] - ar))


def load_image(path: Path, bucket: tuple[int, int]) -> torch.Tensor:
    """RGB image resized to cover the bucket, centre-cropped, as a (3, H, W) tensor in [-1, 1]."""
    import numpy as np
    from PIL import Image

    from t2ibench.images import open_image

    bw, bh = bucket
    with open_image(path) as im:  # upright (EXIF), 8-bit, transparency on white
        scale = max(bw / im.width, bh / im.height)
        nw, nh = max(bw, round(im.width * scale)), max(bh, round(im.height * scale))
        im = im.resize((nw, nh), Image.Resampling.LANCZOS)
        left, top = (nw - bw) // 2, (nh - bh) // 2
        im = im.crop((left, top, left + bw, top + bh))
        arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


# ---------------------------------------------------------------------------------------------
@dataclass
class _Sample:
    latent: torch.Tensor  # (4, h, w), scaled
    caption: str
    bucket: tuple[int, int]
    repeats: int


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch) * 7919) % (2**63))


def epoch_batches(
    samples: Sequence[_Sample], batch_size: int, gen: torch.Generator
) -> list[list[int]]:
    """Each image ``repeats`` times, shuffled within its bucket, chunked, batch order shuffled."""
    by_bucket: dict[tuple[int, int], list[int]] = {}
    for i, s in enumerate(samples):
        by_bucket.setdefault(s.bucket, []).extend([i] * s.repeats)
    batches = []
    for key in sorted(by_bucket):
        idx = by_bucket[key]
        order = torch.randperm(len(idx), generator=gen).tolist()
        idx = [idx[j] for j in order]
        batches += [idx[k : k + batch_size] for k in range(0, len(idx), batch_size)]
    order = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[j] for j in order]


def steps_per_epoch(samples: Sequence[_Sample], batch_size: int) -> int:
    counts: dict[tuple[int, int], int] = {}
    for s in samples:
        counts[s.bucket] = counts.get(s.bucket, 0) + s.repeats
    return sum(math.ceil(n / batch_size) for n in counts.values())


def effective_warmup(cfg: TrainerConfig, total_steps: int) -> int:
    """``warmup_steps`` clamped to ``warmup_max_fraction`` of the run (short runs reach the lr).

    The clamp depends on the run's length, so extending a finished run (``--epochs`` raised) is
    refused when it would change the warm-up: the result would not be the longer run it claims
    to be (see :func:`_check_extension`)."""
    return max(0, min(cfg.warmup_steps, int(cfg.warmup_max_fraction * total_steps)))


def lr_factor(step: int, warmup: int) -> float:
    """Constant schedule with linear warm-up (diffusers' ``constant_with_warmup``)."""
    return 1.0 if warmup <= 0 or step >= warmup else step / warmup


# ---------------------------------------------------------------------------------------------
def _encode_latents(
    pipe: Any,
    records: Sequence[Any],
    buckets: list[tuple[int, int]],
    repeats: Callable[[str], int],
    seed: int,
    device: str,
) -> list[_Sample]:
    """VAE latents of every image, computed once (the VAE is frozen; no augmentation)."""
    from t2ibench.architectures import architecture_of_pipe
    from t2ibench.images import open_image

    vae = pipe.vae
    arch = architecture_of_pipe(pipe)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    out = []
    with torch.no_grad():
        for rec in records:
            with open_image(rec.path) as im:  # the upright size (EXIF orientation applied)
                size = im.size
            bucket = assign_bucket(size, buckets)
            img = load_image(rec.path, bucket).unsqueeze(0).to(device, vae.dtype)
            dist = vae.encode(img).latent_dist
            eps = torch.randn(dist.mean.shape, generator=gen).to(device, dist.mean.dtype)
            latent = dist.mean + dist.std * eps
            latent = arch.normalize_latents(vae, latent)  # scale (and FLUX's shift, FLUX.2's bn)
            out.append(
                _Sample(latent[0].float().cpu(), rec.caption, bucket, int(repeats(rec.concept)))
            )
    return out


def diffusion_loss(
    pipe: Any,
    latents: torch.Tensor,
    captions: Sequence[str],
    gen: torch.Generator,
    scheduler: Any,
    *,
    autocast: Any = None,
    before_predict: Any = None,
) -> torch.Tensor:
    """The base's training objective on one batch (its plug-in's ``training_loss``: epsilon or v
    noise-prediction MSE on UNet bases, flow matching on MMDiT bases). ``before_predict``: a
    trainer's per-step hook, called with the batch's noise levels (passed only when given, so a
    base plug-in without the keyword still trains every other trainer)."""
    from t2ibench.architectures import architecture_of_pipe

    hook = {} if before_predict is None else {"before_predict": before_predict}
    return architecture_of_pipe(pipe).training_loss(
        pipe, latents, captions, gen, scheduler, autocast=autocast, **hook
    )


def fixed_loss(
    pipe: Any, dataset: Any, *, seed: int = 0, resolution: int = 64, draws: int = 4
) -> float:
    """The training objective on every image with fixed noise and timesteps (no dropout).

    Deterministic for a given ``seed``: compare a base and the same base with an adapter applied.
    """
    from t2ibench.architectures import architecture_of_pipe

    if isinstance(dataset, str | Path):
        from t2ibench.data import load_dataset

        dataset = load_dataset(dataset)
    arch = architecture_of_pipe(pipe)
    scheduler = arch.training_scheduler(pipe)
    device = str(arch.denoiser_of(pipe).device)
    buckets = make_buckets(resolution, resolution, resolution, 64)
    samples = _encode_latents(pipe, dataset.images, buckets, lambda _k: 1, seed, device)
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    with torch.no_grad():
        for _ in range(draws):
            for s in samples:
                total += float(diffusion_loss(pipe, s.latent[None], [s.caption], gen, scheduler))
    return total / (draws * len(samples))


# ---------------------------------------------------------------------------------------------
def _make_optimizer(cfg: TrainerConfig, groups: list[dict], device: str, native: bool) -> Any:
    wd = 0.0 if native else cfg.weight_decay  # native: decay applied to W + diff by hand
    if cfg.optimizer == "adamw8bit" and device.startswith("cuda"):
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(groups, betas=cfg.betas, eps=cfg.eps, weight_decay=wd)
        except ImportError:
            log.info("bitsandbytes is not installed: using torch AdamW instead of AdamW8bit")
    return torch.optim.AdamW(groups, betas=cfg.betas, eps=cfg.eps, weight_decay=wd)


def checkpoint_path(out_dir: Path, name: str, epoch: int) -> Path:
    return out_dir / f"{name}-e{epoch:06d}.safetensors"


def state_path(out_dir: Path, name: str) -> Path:
    """The resume record (JSON): the commit point of an epoch; it names its tensors file."""
    return out_dir / f"{name}-state.json"


def state_tensors_path(out_dir: Path, name: str, epoch: int) -> Path:
    """Adapter (fp32) and optimizer tensors after ``epoch`` (safetensors)."""
    return out_dir / f"{name}-state-e{epoch:06d}.safetensors"


def legacy_state_path(out_dir: Path, name: str) -> Path:
    return out_dir / f"{name}-state.pt"


class ResumeStateError(T2IBenchError, ValueError):
    """The resume state of a training folder cannot be used (damaged, or an old format)."""


def list_checkpoints(out_dir: Path, name: str) -> list[tuple[int, Path]]:
    rx = re.compile(rf"{re.escape(name)}-e(\d{{6}})(\.safetensors)?$")
    found = []
    if out_dir.is_dir():
        for p in out_dir.iterdir():
            m = rx.fullmatch(p.name)
            if m and (p.is_file() or (p / "model_index.json").is_file()):
                found.append((int(m.group(1)), p))
    return sorted(found)


def _same_config(a: TrainerConfig, b: TrainerConfig) -> list[str]:
    da, db = a.to_dict(), b.to_dict()
    return [k for k in da if k not in _RESUMABLE and da[k] != db[k]]


# -- resume state: safetensors + JSON, no pickle ------------------------------------------------
def _optimizer_to_files(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer ``state_dict`` as (tensors, JSON-able rest); tensors keyed ``optimizer.<i>.<k>``."""
    tensors: dict[str, torch.Tensor] = {}
    state: dict[str, dict] = {}
    for idx, entry in sd["state"].items():
        plain: dict[str, Any] = {}
        for k, v in entry.items():
            if torch.is_tensor(v):
                tensors[f"optimizer.{idx}.{k}"] = v.detach().cpu().contiguous()
                plain[k] = {"tensor": f"optimizer.{idx}.{k}"}
            else:
                plain[k] = v
        state[str(idx)] = plain
    return tensors, {"state": state, "param_groups": sd["param_groups"]}


def _optimizer_from_files(rest: dict, tensors: dict[str, torch.Tensor]) -> dict:
    state = {}
    for idx, entry in rest["state"].items():
        state[int(idx)] = {
            k: tensors[v["tensor"]] if isinstance(v, dict) and "tensor" in v else v
            for k, v in entry.items()
        }
    groups = []
    for g in rest["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def save_resume_state(
    out_dir: Path, name: str, record: dict, adapter: dict, optimizer: dict
) -> Path:
    """Write the epoch's tensors, then the JSON record that names them (the commit point).

    A run killed before the record is replaced resumes from the previous epoch and redoes this
    one, rewriting its checkpoint identically; older tensors files are removed after the commit.
    """
    epoch = int(record["epoch"])
    opt_tensors, opt_rest = _optimizer_to_files(optimizer)
    tensors = {f"adapter.{k}": v.detach().cpu().float() for k, v in adapter.items()}
    tensors.update(opt_tensors)
    tpath = state_tensors_path(out_dir, name, epoch)
    atomic_save_safetensors(tensors, tpath, {"t2ibench_epoch": str(epoch)})
    record = {
        **record,
        "format": 1,
        "tensors": tpath.name,
        "tensors_bytes": tpath.stat().st_size,
        "optimizer": opt_rest,
    }
    atomic_write(state_path(out_dir, name), json.dumps(record, indent=1, sort_keys=True))
    for old in out_dir.glob(f"{name}-state-e*.safetensors"):
        if old.name != tpath.name:
            remove_inside(old, out_dir)
    return tpath


def load_resume_state(out_dir: Path, name: str) -> tuple[dict, dict, dict] | None:
    """``(record, adapter tensors, optimizer state_dict)`` of the last finished epoch, or None
    when the folder holds no resume state. A damaged state is one clear error."""
    from safetensors import SafetensorError, safe_open

    spath = state_path(out_dir, name)
    legacy = legacy_state_path(out_dir, name)
    if not spath.is_file():
        if legacy.exists():
            raise ResumeStateError(
                f"{legacy}: a resume state in the old pickle format, which is no longer loaded; "
                f"delete it to retrain {out_dir} from the start"
            )
        return None
    hint = f"delete {spath.name} and {name}-state-e*.safetensors to retrain from the start"
    try:
        record = json.loads(spath.read_text(encoding="utf-8"))
        tpath = out_dir / record["tensors"]
        if Path(record["tensors"]).name != record["tensors"]:
            raise ValueError("the tensors file must sit in the same folder")
        int(record["epoch"]), int(record["step"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ResumeStateError(f"{spath}: damaged resume state ({exc}); {hint}") from None
    if not tpath.is_file() or tpath.stat().st_size != record.get("tensors_bytes"):
        raise ResumeStateError(
            f"{tpath}: missing or truncated (the resume state {spath.name} expects "
            f"{record.get('tensors_bytes')} bytes); {hint}"
        )
    try:
        with safe_open(str(tpath), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        adapter = {k[len("adapter.") :]: v for k, v in tensors.items() if k.startswith("adapter.")}
        optimizer = _optimizer_from_files(record["optimizer"], tensors)
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as exc:
        raise ResumeStateError(f"{tpath}: unreadable resume state ({exc}); {hint}") from None
    return record, adapter, optimizer


def _check_extension(prev: TrainerConfig, cfg: TrainerConfig, per_epoch: int, where: Path) -> None:
    """Refuse to continue a run whose warm-up would change with the new length (issue: a run
    extended from 2 to 4 epochs must equal a straight 4-epoch run, bit for bit)."""
    before = effective_warmup(prev, per_epoch * prev.epochs)
    after = effective_warmup(cfg, per_epoch * cfg.epochs)
    if before != after:
        raise ConfigError(
            f"{where}: this run was trained for {prev.epochs} epochs with a {before}-step warm-up "
            f"(warmup_steps={cfg.warmup_steps} clamped to warmup_max_fraction="
            f"{cfg.warmup_max_fraction:g} of the run); {cfg.epochs} epochs would need {after}, "
            f"so continuing would not give a {cfg.epochs}-epoch run. Retrain in a new --out "
            f"folder, or train with a warm-up the clamp does not shorten "
            f"(warmup_steps ≤ {int(cfg.warmup_max_fraction * per_epoch * min(prev.epochs, cfg.epochs))})"
        )


def _save_native_diffusers(pipe: Any, network: AdapterNetwork, path: Path, meta: dict) -> Path:
    """A full diffusers folder with W + diff; the live weights are swapped back exactly after."""
    originals = []
    with torch.no_grad():
        for m in network:
            org = m.org
            originals.append((org, org.weight.data, None if org.bias is None else org.bias.data))
            org.weight.data = (org.weight.data.float() + m.delta_weight().float()).to(
                org.weight.dtype
            )
            db = m.delta_bias()
            if db is not None and org.bias is not None:
                org.bias.data = (org.bias.data.float() + db.float()).to(org.bias.dtype)
    was_attached = network.attached
    network.detach_()
    try:
        with atomic_folder(path, lambda _: False) as tmp:  # always replaces an older save
            pipe.save_pretrained(tmp, safe_serialization=True)
            meta_json = json.dumps(meta, indent=1, sort_keys=True)
            (tmp / "t2ibench_metadata.json").write_text(meta_json)
            apply_umask(tmp)  # safetensors writes 0600 files
    finally:
        for org, w, b in originals:
            org.weight.data = w
            if b is not None:
                org.bias.data = b
        if was_attached:
            network.attach()
    return path


# ---------------------------------------------------------------------------------------------
def train(
    trainer: str,
    dataset: Any,
    base_spec: str | Path,
    out_dir: Path | str,
    cfg: TrainerConfig | None = None,
    *,
    epochs: int | None = None,
    save_epochs: Sequence[int] | None = None,
    seed: int | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> list[Path]:
    """Train ``trainer`` on ``dataset`` (a Dataset or its folder) from ``base_spec``; returns the
    checkpoints in ``out_dir`` (``<name>-e000010.safetensors``, ...), resuming where a previous
    run with the same config stopped."""
    return train_run(
        trainer,
        dataset,
        base_spec,
        out_dir,
        cfg,
        epochs=epochs,
        save_epochs=save_epochs,
        seed=seed,
        device=device,
        progress=progress,
    ).checkpoints


def train_run(
    trainer: str,
    dataset: Any,
    base_spec: str | Path,
    out_dir: Path | str,
    cfg: TrainerConfig | None = None,
    *,
    epochs: int | None = None,
    save_epochs: Sequence[int] | None = None,
    seed: int | None = None,
    device: str = "cpu",
    progress: bool = True,
    pipe: Any = None,
) -> TrainResult:
    """:func:`train` returning per-step losses too; ``pipe`` reuses an already loaded base."""
    from tqdm.auto import tqdm

    from t2ibench.adapters.presets import Preset
    from t2ibench.architectures import architecture_of_pipe
    from t2ibench.models import base_fingerprint, load_base

    spec = get_trainer(trainer)
    cfg = load_trainer_config(trainer) if cfg is None else cfg
    changes: dict[str, Any] = {"trainer": trainer}
    if epochs is not None:
        changes["epochs"] = int(epochs)
    if save_epochs is not None:
        changes["save_epochs"] = tuple(int(e) for e in save_epochs)
    if seed is not None:
        changes["seed"] = int(seed)
    cfg = cfg.replace(**changes)
    if isinstance(dataset, str | Path):
        from t2ibench.data import load_dataset

        dataset = load_dataset(dataset)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = cfg.output_name

    cuda = str(device).startswith("cuda")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.mixed_precision)
    use_amp = cuda and amp_dtype is not None
    base_dtype = amp_dtype if use_amp else torch.float32
    fingerprint = base_fingerprint(base_spec)
    if pipe is None:
        pipe = load_base(base_spec, device=device, dtype=base_dtype)
    arch = architecture_of_pipe(pipe)
    unet = arch.denoiser_of(pipe)  # the denoiser: a UNet or a transformer
    for label, part in arch.frozen_modules(pipe).items():
        check_module_weights(part, f"base model {base_spec} ({label})")
        part.requires_grad_(False)
    # the encoders an adapter may train switch to train mode, as SD1.5's always did; a frozen T5
    # (SD3, FLUX: dropout 0.1) stays in eval mode, as sd-scripts keeps it
    encoders = {
        te.part: getattr(pipe, te.attribute)
        for te in arch.text_encoders
        if te.trainable and getattr(pipe, te.attribute, None) is not None
    }

    # -- adapters (seeded: same seed, same initial weights) --
    torch.manual_seed(cfg.seed)
    parts = arch.adapter_parts(pipe, cfg.train_text_encoder)
    names = cfg.presets()
    presets = {}
    for part in parts:
        preset = names["unet" if part == "unet" else "te"]
        presets[part] = Preset(
            preset,
            unet=arch.preset_patterns(preset, "unet"),
            te=arch.preset_patterns(preset, part if part != "unet" else "te"),
            description=f"{arch.name} {preset}",
        )
    network = spec.build_network(parts, cfg, presets)
    if len(network) == 0:
        raise ConfigError(
            f"trainer {trainer!r}: preset {cfg.presets()} selects no layer of this base"
        )
    network.to(device=device, dtype=torch.float32)
    native = spec.full_weights  # trains W itself: decay on W + diff

    # -- data --
    buckets = make_buckets(
        cfg.resolution, cfg.min_bucket_reso, cfg.max_bucket_reso, cfg.bucket_step
    )
    samples = _encode_latents(pipe, dataset.images, buckets, dataset.repeats, cfg.seed, device)
    if not samples:
        raise ConfigError("dataset: has no images to train on")
    per_epoch = steps_per_epoch(samples, cfg.batch_size)
    total_steps = per_epoch * cfg.epochs
    warmup = effective_warmup(cfg, total_steps)
    scheduler = arch.training_scheduler(pipe)

    groups = []
    lrs = cfg.lrs()
    for part in parts:  # unet first, then the text encoders (te, or te1 and te2)
        params = network.trainable(part)
        lr = lrs["unet" if part == "unet" else "te"]
        if params:
            groups.append({"params": params, "lr": lr, "base_lr": lr})
    optimizer = _make_optimizer(cfg, groups, str(device), native)
    native_pairs = network.native_pairs() if native else []

    # -- resume (from the last committed epoch; see save_resume_state) --
    start_epoch, step = 0, 0
    spath = state_path(out_dir, name)
    resumed = load_resume_state(out_dir, name)
    if resumed is not None:
        record, adapter_state, optimizer_state = resumed
        prev = config_from_dict(json.loads(record["config"]), str(spath))
        diff = _same_config(prev, cfg)
        if diff:
            raise ConfigError(
                f"{spath}: {out_dir} holds a run with a different config ({', '.join(diff)}); "
                "use another --out folder"
            )
        if record.get("base_sha256") != fingerprint.get("sha256"):
            raise ConfigError(f"{spath}: {out_dir} was trained on another base model")
        if record.get("steps_per_epoch", per_epoch) != per_epoch:
            raise ConfigError(
                f"{spath}: {out_dir} was trained with {record['steps_per_epoch']} steps per epoch, "
                f"this dataset gives {per_epoch}: the dataset changed; use another --out folder"
            )
        _check_extension(prev, cfg, per_epoch, spath)
        try:
            network.load_kohya_state_dict(adapter_state)
            optimizer.load_state_dict(optimizer_state)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise ResumeStateError(f"{spath}: does not fit this run ({exc})") from None
        start_epoch, step = int(record["epoch"]), int(record["step"])
    else:
        done = [p for _, p in list_checkpoints(out_dir, name) if p.is_file()]
        if done:
            # Checkpoints without a committed resume state: a run killed before its first
            # commit (or a deleted state). Retrain from the start; they are rewritten identically.
            from safetensors import safe_open

            try:
                with safe_open(str(done[-1]), framework="pt") as f:
                    prev_json = (f.metadata() or {}).get("t2ibench_trainer_config")
                prev = config_from_dict(json.loads(prev_json), str(done[-1])) if prev_json else None
            except Exception:  # unreadable (e.g. a half-written file): it is rewritten anyway
                prev = None
            diff = _same_config(prev, cfg) if prev is not None else []
            if diff:
                raise ConfigError(
                    f"{done[-1]}: trained with a different config ({', '.join(diff)}); "
                    "use another --out folder"
                )
            log.warning(
                "%s: checkpoints but no resume state (%s); training from the start",
                out_dir,
                spath.name,
            )

    save_at = {e for e in cfg.save_epochs if e <= cfg.epochs} | {cfg.epochs}
    result = TrainResult(checkpoints=[])
    network.attach()
    unet.train()
    for te in encoders.values():
        te.train()
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if cfg.train_text_encoder:
            for te in encoders.values():
                _te_checkpointing(te, True)
    autocast = torch.autocast("cuda", dtype=amp_dtype) if use_amp else None
    scaler = torch.amp.GradScaler("cuda") if use_amp and amp_dtype == torch.float16 else None
    params_all = [p for g in groups for p in g["params"]]
    before_predict = None
    if spec.before_step is not None:

        def before_predict(timesteps: torch.Tensor, max_timestep: float) -> None:
            spec.before_step(network, cfg, timesteps, max_timestep)

    bar = tqdm(
        total=total_steps, initial=step, disable=not progress, desc=f"train {name}", unit="step"
    )
    t0, seen = time.perf_counter(), 0
    try:
        for epoch in range(start_epoch, cfg.epochs):
            gen = _epoch_generator(cfg.seed, epoch)
            for batch in epoch_batches(samples, cfg.batch_size, gen):
                latents = torch.stack([samples[i].latent for i in batch])
                drop = torch.rand(len(batch), generator=gen).tolist()
                captions = [
                    "" if d < cfg.caption_dropout else samples[i].caption
                    for i, d in zip(batch, drop, strict=True)
                ]
                loss = diffusion_loss(
                    pipe,
                    latents,
                    captions,
                    gen,
                    scheduler,
                    autocast=autocast,
                    before_predict=before_predict,
                )
                if not torch.isfinite(loss):
                    raise TrainingDivergedError(
                        f"{out_dir}: the loss became {float(loss.detach())} at epoch {epoch + 1}, step "
                        f"{step + 1}; training stopped. Last good checkpoint: "
                        f"{_last_kept(out_dir, name, epoch)} (kept). Lower the learning rate "
                        f"(lr={cfg.lr:g}) or check the data."
                    )
                factor = lr_factor(step, warmup)
                for g in optimizer.param_groups:
                    g["lr"] = g["base_lr"] * factor
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                else:
                    loss.backward()
                if cfg.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params_all, cfg.max_grad_norm)
                if native_pairs and cfg.weight_decay > 0:
                    _decay_native(native_pairs, optimizer, cfg.weight_decay)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                seen += len(batch)
                result.losses.append(float(loss.detach()))
                elapsed = time.perf_counter() - t0
                bar.set_postfix(
                    loss=f"{float(loss.detach()):.4f}",
                    img_s=f"{seen / max(elapsed, 1e-9):.1f}",
                    epoch=epoch + 1,
                )
                bar.update(1)
            done_epoch = epoch + 1
            if not all(all_finite(p) for p in params_all):
                # a last step can overflow the weights while its loss was still finite
                raise TrainingDivergedError(
                    f"{out_dir}: adapter weights became non-finite in epoch {done_epoch}; training "
                    f"stopped. Last good checkpoint: {_last_kept(out_dir, name, epoch)} (kept). "
                    f"Lower the learning rate (lr={cfg.lr:g})."
                )
            meta = build_metadata(
                cfg,
                fingerprint,
                epoch=done_epoch,
                extra={
                    "t2ibench_dataset_sha256": getattr(dataset, "sha256", ""),
                    "t2ibench_step": str(step),
                },
            )
            if done_epoch in save_at:
                path = checkpoint_path(out_dir, name, done_epoch)
                if native and getattr(cfg, "native_save", "diff") == "diffusers":
                    _save_native_diffusers(pipe, network, path.with_suffix(""), meta)
                else:
                    _check_fp16_range(network, out_dir, done_epoch, cfg, name)
                    save_adapter(network, path, meta)
            save_resume_state(
                out_dir,
                name,
                {
                    "epoch": done_epoch,
                    "step": step,
                    "steps_per_epoch": per_epoch,
                    "warmup": warmup,
                    "config": cfg.to_json(),
                    "base_sha256": fingerprint.get("sha256"),
                },
                network.kohya_state_dict(),
                optimizer.state_dict(),
            )
            result.epochs_trained += 1
    finally:
        bar.close()
        if spec.after_training is not None:
            spec.after_training()
        network.detach_()
        if cfg.gradient_checkpointing:
            unet.disable_gradient_checkpointing()
            for te in encoders.values():
                _te_checkpointing(te, False)
        unet.eval()
        for te in encoders.values():
            te.eval()
    result.steps = step
    result.checkpoints = [p for e, p in list_checkpoints(out_dir, name) if e in save_at]
    return result


def _last_kept(out_dir: Path, name: str, finished_epochs: int) -> str:
    kept = [p for e, p in list_checkpoints(out_dir, name) if e <= finished_epochs]
    return kept[-1].name if kept else "none"


def _check_fp16_range(
    network: AdapterNetwork, out_dir: Path, epoch: int, cfg: TrainerConfig, name: str
) -> None:
    """Stop before writing a checkpoint that fp16 would turn into inf (|w| > 65504)."""
    state = {k: v.to(torch.float16) for k, v in network.kohya_state_dict().items()}
    _, nonfinite = bad_tensors(state)
    if nonfinite:
        raise TrainingDivergedError(
            f"{out_dir}: at epoch {epoch} {len(nonfinite)} of {len(state)} adapter tensors exceed "
            f"the float16 range of the checkpoint (e.g. {nonfinite[0]}); training stopped. "
            f"Last good checkpoint: {_last_kept(out_dir, name, epoch - 1)} (kept). Lower the "
            f"learning rate (lr={cfg.lr:g})."
        )


def _te_checkpointing(te: Any, on: bool) -> None:
    """transformers 5 renamed gradient_checkpointing_* to activation_checkpointing_*."""
    verb = "enable" if on else "disable"
    fn = getattr(te, f"activation_checkpointing_{verb}", None) or getattr(
        te, f"gradient_checkpointing_{verb}"
    )
    fn()


@torch.no_grad()
def _decay_native(
    pairs: list[tuple[torch.Tensor, torch.Tensor]], optimizer: Any, wd: float
) -> None:
    """AdamW's decoupled decay on the effective weight W + diff (what plain fine-tuning decays)."""
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    for diff, base in pairs:
        lr = lr_of.get(id(diff))
        if lr:
            diff.sub_((base.float() + diff) * (lr * wd))


def save_checkpoint_now(
    network: AdapterNetwork, cfg: TrainerConfig, path: Path, base: dict | None = None
) -> Path:
    """Save a network outside the loop (used by tools and tests)."""
    return save_adapter(network, path, build_metadata(cfg, base))


__all__ = [
    "TrainResult",
    "TrainingDivergedError",
    "atomic_save_safetensors",
    "diffusion_loss",
    "fixed_loss",
    "train",
    "train_run",
]
