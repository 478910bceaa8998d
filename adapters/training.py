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
import torch.nn.functional as F

from t2ibench.errors import ConfigError, T2IBenchError
from t2ibench.fsutil import atomic_folder, atomic_write_with

from .config import TrainerConfig
from .files import atomic_save_safetensors, build_metadata, read_adapter, save_adapter
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
    """(width, height) pairs, sides multiples of ``step``, area ≤ resolution² (kohya's rule)."""
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
    """The bucket whose aspect ratio is closest to the image's (log scale)."""
    w, h = size
    ar = math.log(w / h)
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - ar), -b[0] * b[1]))


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
    """``warmup_steps`` clamped to ``warmup_max_fraction`` of the run (short runs reach the lr)."""
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
    from t2ibench.images import open_image

    vae = pipe.vae
    sf = float(vae.config.scaling_factor)
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
            latent = (dist.mean + dist.std * eps) * sf
            out.append(
                _Sample(latent[0].float().cpu(), rec.caption, bucket, int(repeats(rec.concept)))
            )
    return out


def _tokens(pipe: Any, captions: Sequence[str], device: str) -> torch.Tensor:
    tok = pipe.tokenizer
    return tok(
        list(captions),
        padding="max_length",
        max_length=tok.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids.to(device)


def diffusion_loss(
    pipe: Any,
    latents: torch.Tensor,
    captions: Sequence[str],
    gen: torch.Generator,
    scheduler: Any,
    *,
    autocast: Any = None,
) -> torch.Tensor:
    """Mean-squared noise-prediction error (epsilon, or v when the scheduler predicts v)."""
    import contextlib

    device = pipe.unet.device
    latents = latents.to(device)
    noise = torch.randn(latents.shape, generator=gen).to(device)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=gen)
    t = t.to(device)
    ctx = autocast if autocast is not None else contextlib.nullcontext()
    with ctx:
        ehs = pipe.text_encoder(_tokens(pipe, captions, device))[0]
        noisy = scheduler.add_noise(latents, noise, t)
        pred = pipe.unet(noisy.to(pipe.unet.dtype), t, ehs.to(pipe.unet.dtype)).sample
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, t)
    else:
        target = noise
    return F.mse_loss(pred.float(), target.float())


def fixed_loss(
    pipe: Any, dataset: Any, *, seed: int = 0, resolution: int = 64, draws: int = 4
) -> float:
    """The training objective on every image with fixed noise and timesteps (no dropout).

    Deterministic for a given ``seed``: compare a base and the same base with an adapter applied.
    """
    from diffusers import DDPMScheduler

    if isinstance(dataset, str | Path):
        from t2ibench.data import load_dataset

        dataset = load_dataset(dataset)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    device = str(pipe.unet.device)
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
    return out_dir / f"{name}-state.pt"


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


def _atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write_with(path, lambda tmp: torch.save(obj, tmp))


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
    from diffusers import DDPMScheduler
    from tqdm.auto import tqdm

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
    unet, te = pipe.unet, pipe.text_encoder
    for part in (unet, te, pipe.vae):
        part.requires_grad_(False)

    # -- adapters (seeded: same seed, same initial weights) --
    torch.manual_seed(cfg.seed)
    parts = {"unet": unet, "te": te if cfg.train_text_encoder else None}
    network = spec.build_network(parts, cfg)
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
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)

    groups = []
    lrs = cfg.lrs()
    for part in ("unet", "te"):
        params = network.trainable(part)
        if params:
            groups.append({"params": params, "lr": lrs[part], "base_lr": lrs[part]})
    optimizer = _make_optimizer(cfg, groups, str(device), native)
    native_pairs = network.native_pairs() if native else []

    # -- resume --
    start_epoch, step = 0, 0
    spath = state_path(out_dir, name)
    if spath.is_file():
        state = torch.load(spath, map_location="cpu", weights_only=True)
        prev = config_from_dict(json.loads(state["config"]), str(spath))
        diff = _same_config(prev, cfg)
        if diff:
            raise ConfigError(
                f"{spath}: {out_dir} holds a run with a different config ({', '.join(diff)}); "
                "use another --out folder"
            )
        if state.get("base_sha256") != fingerprint.get("sha256"):
            raise ConfigError(f"{spath}: {out_dir} was trained on another base model")
        network.load_kohya_state_dict(state["adapter"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, step = int(state["epoch"]), int(state["step"])
    else:
        done = list_checkpoints(out_dir, name)
        if done and done[-1][1].is_file():
            # No optimizer state (e.g. deleted): continue from the newest fp16 checkpoint.
            epoch, path = done[-1]
            tensors, meta = read_adapter(path)
            prev = config_from_dict(json.loads(meta["t2ibench_trainer_config"]), str(path))
            diff = _same_config(prev, cfg)
            if diff:
                raise ConfigError(f"{path}: trained with a different config ({', '.join(diff)})")
            network.load_kohya_state_dict(tensors)
            start_epoch, step = epoch, epoch * per_epoch
            log.warning(
                "%s: no optimizer state; resuming from %s with a fresh optimizer",
                out_dir,
                path.name,
            )

    save_at = {e for e in cfg.save_epochs if e <= cfg.epochs} | {cfg.epochs}
    result = TrainResult(checkpoints=[])
    network.attach()
    unet.train()
    te.train()
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if cfg.train_text_encoder:
            _te_checkpointing(te, True)
    autocast = torch.autocast("cuda", dtype=amp_dtype) if use_amp else None
    scaler = torch.amp.GradScaler("cuda") if use_amp and amp_dtype == torch.float16 else None
    params_all = [p for g in groups for p in g["params"]]
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
                loss = diffusion_loss(pipe, latents, captions, gen, scheduler, autocast=autocast)
                if not torch.isfinite(loss):
                    kept = list_checkpoints(out_dir, name)
                    raise TrainingDivergedError(
                        f"{out_dir}: the loss became {float(loss.detach())} at epoch {epoch + 1}, step "
                        f"{step + 1}; training stopped. Last good checkpoint: "
                        f"{kept[-1][1].name if kept else 'none'} (kept). Lower the learning rate "
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
            if not all(bool(torch.isfinite(p).all()) for p in params_all):
                # a last step can overflow the weights while its loss was still finite
                kept = list_checkpoints(out_dir, name)
                raise TrainingDivergedError(
                    f"{out_dir}: adapter weights became non-finite in epoch {done_epoch}; training "
                    f"stopped. Last good checkpoint: {kept[-1][1].name if kept else 'none'} (kept). "
                    f"Lower the learning rate (lr={cfg.lr:g})."
                )
            result.epochs_trained += 1
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
                    save_adapter(network, path, meta)
            _atomic_torch_save(
                {
                    "epoch": done_epoch,
                    "step": step,
                    "config": cfg.to_json(),
                    "base_sha256": fingerprint.get("sha256"),
                    "adapter": network.kohya_state_dict(),
                    "optimizer": optimizer.state_dict(),
                },
                spath,
            )
    finally:
        bar.close()
        network.detach_()
        if cfg.gradient_checkpointing:
            unet.disable_gradient_checkpointing()
            _te_checkpointing(te, False)
        unet.eval()
        te.eval()
    result.steps = step
    result.checkpoints = [p for e, p in list_checkpoints(out_dir, name) if e in save_at]
    return result


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
