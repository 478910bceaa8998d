"""``t2ibench run --dry-run``: what a run will do, and how long it should take.

The time estimate is measured, not guessed: a short calibration times one training step (UNet +
text encoder forward and backward on a batch at the training resolution), one image generation
with the run's sampler settings, and one encoder batch per encoder, then scales by the counts.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any


def _training_steps(r: Any) -> int:
    cfg = r.trainer_config
    per_epoch = sum(r.dataset.repeats(im.concept) for im in r.dataset.images)
    return cfg.epochs * math.ceil(per_epoch / cfg.batch_size)


def plan(r: Any, *, calibrate: bool = True) -> dict[str, Any]:
    """Counts (and, with ``calibrate``, a time estimate) for the resolved run ``r``."""
    from t2ibench.pipeline.run import parse_encoder
    from t2ibench.prompts import jobs_for

    cfg = r.trainer_config
    saves = sorted({e for e in cfg.save_epochs if e <= cfg.epochs} | {cfg.epochs})
    jobs = jobs_for(r.dataset, r.prompt_types, r.images_per_leaf)
    per_type = Counter(j.prompt_type for j in jobs)
    n_ckpt = len(saves)
    n_images = len(jobs) * (n_ckpt + 1)  # + the base model's images, made once
    n_enc = len(r.encoders) * (len(r.resize) if r.resize else 1)
    n_ref = len(r.dataset.images)
    out: dict[str, Any] = {
        "run_dir": str(r.run_dir),
        "profile": r.profile,
        "checkpoints": [f"{cfg.output_name}-e{e:06d}" for e in saves],
        "images_per_prompt_type": dict(sorted(per_type.items())),
        "images_per_checkpoint": len(jobs),
        "images_total": n_images,
        "training_steps": _training_steps(r),
        "encoder_passes": n_enc * (n_images + n_ref),
        "encoders": [
            parse_encoder(e)[0] + ("@tiny" if parse_encoder(e)[2] else "") for e in r.encoders
        ],
    }
    if calibrate:
        out["calibration_s"] = t = _calibrate(r)
        est = (
            t["train_step"] * out["training_steps"]
            + t["image"] * n_images
            + t["encode_image"] * out["encoder_passes"]
        )
        out["estimate_s"] = round(est, 1)
    return out


def _calibrate(r: Any) -> dict[str, float]:
    import torch
    from PIL import Image

    from t2ibench.models import load_base
    from t2ibench.pipeline.run import create_encoders

    dev = r.options.device
    pipe = load_base(r.base, device=dev, allow_pickle=r.options.allow_pickle)
    g = r.generation
    gen = torch.Generator(dev).manual_seed(0)
    pipe.set_progress_bar_config(disable=True)
    pipe(
        "calibration",
        num_inference_steps=1,
        guidance_scale=g.guidance_scale,
        height=g.height,
        width=g.width,
        generator=gen,
    )  # warm-up
    t0 = time.perf_counter()
    pipe(
        "calibration",
        num_inference_steps=g.steps,
        guidance_scale=g.guidance_scale,
        height=g.height,
        width=g.width,
        generator=gen,
    )
    t_image = time.perf_counter() - t0

    cfg = r.trainer_config
    bs, side = cfg.batch_size, cfg.resolution
    f = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    latents = torch.randn(bs, pipe.unet.config.in_channels, side // f, side // f, device=dev)
    ids = pipe.tokenizer(
        ["calibration"] * bs,
        padding="max_length",
        truncation=True,
        max_length=pipe.tokenizer.model_max_length,
        return_tensors="pt",
    ).input_ids.to(dev)
    params = [p for p in pipe.unet.parameters()] + [p for p in pipe.text_encoder.parameters()]
    for p in params:
        p.requires_grad_(True)
    t0 = time.perf_counter()
    hidden = pipe.text_encoder(ids)[0]
    noise_pred = pipe.unet(latents, torch.full((bs,), 500, device=dev), hidden).sample
    noise_pred.float().pow(2).mean().backward()
    t_step = time.perf_counter() - t0
    del pipe

    img = Image.new("RGB", (g.width, g.height), (128, 128, 128))
    t_enc = 0.0
    for enc in create_encoders(r.encoders, r.resize[:1] if r.resize else None, dev):
        enc.encode_images([img])  # warm-up
        t0 = time.perf_counter()
        enc.encode_images([img] * 4)
        t_enc += (time.perf_counter() - t0) / 4
    n = max(1, len(r.encoders))
    return {
        "train_step": round(t_step, 4),
        "image": round(t_image, 4),
        "encode_image": round(t_enc / n, 5),
    }


def render_plan(p: dict[str, Any]) -> str:
    lines = [
        f"run folder      {p['run_dir']}  (profile {p['profile']})",
        f"checkpoints     {', '.join(p['checkpoints'])}",
        f"training steps  {p['training_steps']}",
        "images          "
        + ", ".join(f"{k} {v}" for k, v in p["images_per_prompt_type"].items())
        + f"  = {p['images_per_checkpoint']} per checkpoint; {p['images_total']} in total "
        "(checkpoints + base model)",
        f"encoders        {', '.join(p['encoders'])}; {p['encoder_passes']} image passes "
        "(generated + dataset references, before the cache)",
    ]
    if "estimate_s" in p:
        c = p["calibration_s"]
        lines.append(
            f"estimate        {p['estimate_s'] / 60:.1f} min (measured: train step {c['train_step']:.3f} s, "
            f"image {c['image']:.3f} s, encoder pass {c['encode_image'] * 1000:.1f} ms)"
        )
    return "\n".join(lines)
