"""Pretrain the toy FLUX-class base (transformer + both text encoders) on base-vocabulary images.

``python -m tools.toy.train_flux_base [--steps N]`` — reuses the toy base's VAE (``weights/base/
vae``; run ``train_vae`` first), with its measured latent mean and scale written into the copy as
``shift_factor`` / ``scaling_factor`` (FLUX's convention). Rectified-flow MSE with the scheduler's
shift (the FLUX plug-in's objective, ``t2ibench.bases.flux``), batch 32, AdamW 7e-4 cosine-decaying to 1e-4 after a
100-step warm-up, 10 % empty captions (so classifier-free guidance works), EMA weights. Writes the
complete fp16 diffusers ``FluxPipeline`` folder ``weights/flux``; ``--resume`` continues from it
(the shipped weights: see ``t2ibench/toy/README.md``). ``--style-weight outline=3`` draws the pool's
outline scenes 3× as often (seeded; the default draws uniformly, as the first three runs did);
the report goes to ``reports/`` beside ``--out`` under ``--report`` (a name per resume).
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: busy-waiting threads make shared-CPU steps several times slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import copy  # noqa: E402
import math  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from t2ibench.architectures import architecture_of_pipe  # noqa: E402
from t2ibench.toy import flux, world  # noqa: E402
from t2ibench.toy.common import BASE_DIR, WEIGHTS, Log, render_pool, setup, write_json  # noqa: E402
from tools.toy.train_base import encode_pool  # noqa: E402

FLUX_DIR = WEIGHTS / "flux"


class _Captions:
    """Every caption the sampler can produce, with its index ("" = the unconditional caption)."""

    def __init__(self, scenes: list[world.Scene]) -> None:
        n_t = len(world.BASE_TEMPLATES)
        self.texts = sorted({world.base_caption(s, t) for s in scenes for t in range(n_t)} | {""})
        index = {c: i for i, c in enumerate(self.texts)}
        self.table = torch.tensor(
            [[index[world.base_caption(s, t)] for t in range(n_t)] for s in scenes]
        )
        self.empty = index[""]


def _style_weights(pairs: list[str]) -> dict[str, float]:
    """``["outline=2"]`` → ``{"outline": 2.0}``; a style outside the base vocabulary is refused."""
    out: dict[str, float] = {}
    for pair in pairs:
        style, sep, weight = pair.partition("=")
        if not sep or style not in world.BASE_STYLES:
            raise SystemExit(
                f"--style-weight wants STYLE=W with STYLE in {world.BASE_STYLES}: {pair!r}"
            )
        out[style] = float(weight)
        if out[style] <= 0:
            raise SystemExit(f"--style-weight needs a positive weight: {pair!r}")
    return out


def scene_draw_weights(
    scenes: list[world.Scene], style_weights: dict[str, float]
) -> torch.Tensor | None:
    """Per-scene draw weights from per-style ones (unlisted styles 1); None = uniform draws.

    The outline style is the one the base learns last (outlined crosses come out filled), so a
    resume can show it more often; None keeps the uniform ``randint`` draws of the earlier runs.
    """
    if not style_weights:
        return None
    return torch.tensor([style_weights.get(s.style, 1.0) for s in scenes], dtype=torch.float64)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=7e-4)
    ap.add_argument("--pool", type=int, default=24000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=FLUX_DIR)
    ap.add_argument("--vae", type=Path, default=BASE_DIR / "vae")
    ap.add_argument("--resume", action="store_true", help="continue from the weights in --out")
    ap.add_argument("--save-every", type=int, default=0, help="also save the EMA every N steps")
    ap.add_argument(
        "--style-weight",
        action="append",
        default=[],
        metavar="STYLE=W",
        help="draw pool scenes of STYLE W times as often (repeatable; default: uniform draws)",
    )
    ap.add_argument(
        "--report",
        default=None,
        help="report file name in the reports folder beside --out "
        "(default flux_train.json, with --resume flux_train_resume.json)",
    )
    args = ap.parse_args(argv)
    setup(args.threads, args.seed)
    log = Log("flux-base")
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5EncoderModel

    vae = AutoencoderKL.from_pretrained(args.vae, torch_dtype=torch.float32).eval()
    images, scenes = render_pool(world.sample_base_scene, args.seed, args.pool)
    mean, std = encode_pool(vae, images)
    del images
    # FLUX's latent convention: (z − shift_factor) · scaling_factor has mean 0 and std 1
    # (measured once; a resumed run keeps the values its weights were trained with).
    if args.resume:
        saved = AutoencoderKL.load_config(args.out / "vae")
        shift, scale = saved["shift_factor"], saved["scaling_factor"]
    else:
        shift = round(float(mean.mean()), 5)
        scale = round(1.0 / float((mean - shift).std()), 5)
    vae.register_to_config(shift_factor=shift, scaling_factor=scale)
    log(f"encoded {len(mean)} base images; latent shift {shift} scale {scale}")
    caps = _Captions(scenes)
    style_weights = _style_weights(args.style_weight)
    draw = scene_draw_weights(scenes, style_weights)
    if draw is not None:
        share = {
            k: round(float(draw[[s.style == k for s in scenes]].sum() / draw.sum()), 3)
            for k in sorted({s.style for s in scenes})
        }
        log(f"style weights {style_weights}: draw shares {share}")
    n_t = caps.table.shape[1]
    log(f"{len(caps.texts)} distinct captions")

    if args.resume:
        tr = FluxTransformer2DModel.from_pretrained(
            args.out / "transformer", torch_dtype=torch.float32
        )
        te = CLIPTextModel.from_pretrained(args.out / "text_encoder", dtype=torch.float32)
        te2 = T5EncoderModel.from_pretrained(args.out / "text_encoder_2", dtype=torch.float32)
        log(f"resumed from {args.out}")
    else:
        tr = flux.build_transformer()
        te, te2 = flux.build_text_encoders()
    # The pipeline the loss reads (the FLUX plug-in's objective: t2ibench.bases.flux).
    pipe = flux.pipeline(tr, te, te2, vae)
    arch = architecture_of_pipe(pipe)
    log(
        "params transformer {:,} clip {:,} t5 {:,}".format(
            *(sum(p.numel() for p in m.parameters()) for m in (tr, te, te2))
        )
    )
    embs = [te.get_input_embeddings().weight, te2.get_input_embeddings().weight]
    # No weight decay on the token tables: rows of untrained words (future triggers) stay as drawn.
    models = (tr, te, te2)
    params = [p for m in models for p in m.parameters()]
    others = [p for p in params if all(p is not e for e in embs)]
    opt = torch.optim.AdamW(
        [{"params": others, "weight_decay": 1e-2}, {"params": embs, "weight_decay": 0.0}],
        lr=args.lr,
    )
    emas = [copy.deepcopy(m).eval().requires_grad_(False) for m in models]
    gen = torch.Generator().manual_seed(args.seed)
    for m in models:
        m.train()
    losses = []
    for step in range(args.steps):
        lr = 1e-4 + (args.lr - 1e-4) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        warm = min(1.0, (step + 1) / 100)
        for g in opt.param_groups:
            g["lr"] = lr * warm
        if draw is None:
            idx = torch.randint(len(mean), (args.batch,), generator=gen)
        else:
            idx = torch.multinomial(draw, args.batch, replacement=True, generator=gen)
        z = mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)
        x0 = (z - shift) * scale
        cap = caps.table[idx, torch.randint(n_t, (args.batch,), generator=gen)]
        cap = torch.where(torch.rand(args.batch, generator=gen) < 0.1, caps.empty, cap)
        captions = [caps.texts[i] for i in cap.tolist()]
        loss = arch.training_loss(pipe, x0, captions, gen, pipe.scheduler)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for m_ema, m in zip(emas, models, strict=True):
                for pe, p in zip(m_ema.parameters(), m.parameters(), strict=True):
                    pe.lerp_(p, 1 - decay)
        losses.append(loss.item())
        if step % 50 == 0 or step == args.steps - 1:
            recent = sum(losses[-50:]) / len(losses[-50:])
            log(f"step {step} loss(50) {recent:.4f} lr {lr:.2e}")
        if args.save_every and (step + 1) % args.save_every == 0 and step + 1 < args.steps:
            flux.save_pipeline(args.out, *[copy.deepcopy(m) for m in emas], vae=copy.deepcopy(vae))
            log(f"saved the EMA after {step + 1} steps")
    flux.save_pipeline(args.out, *emas, vae=vae)
    report = {
        "resumed": args.resume,
        "lr": args.lr,
        "steps": args.steps,
        "batch": args.batch,
        "pool": args.pool,
        "seed": args.seed,
        "style_weights": style_weights,
        "latent_shift": shift,
        "latent_scale": scale,
        "train_seconds": round(log.elapsed(), 1),
        "loss_first_50": round(sum(losses[:50]) / min(50, len(losses)), 4),
        "loss_last_50": round(sum(losses[-50:]) / min(50, len(losses)), 4),
    }
    name = args.report or ("flux_train_resume.json" if args.resume else "flux_train.json")
    write_json(args.out.parent / "reports" / name, report)
    log(f"saved {args.out}: {report}")


if __name__ == "__main__":
    main()
