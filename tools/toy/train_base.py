"""Pretrain the toy base model's UNet and text encoder on base-vocabulary images only.

``python -m tools.toy.train_base [--steps N]`` — needs the VAE (``train_vae``) first. Epsilon MSE
on the SD1.5 noise schedule, batch 64, AdamW 1e-3 cosine-decaying to 1e-4, 10 % empty captions
(so classifier-free guidance works), EMA weights. Writes the complete fp16 diffusers pipeline folder.
"""

from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path

import torch

from t2ibench.toy import world
from t2ibench.toy.base import (
    build_text_encoder,
    build_unet,
    clip_tokenizer,
    noise_scheduler,
    save_pipeline,
)
from t2ibench.toy.common import BASE_DIR, Log, render_pool, setup, to_unit, write_json


@torch.no_grad()
def encode_pool(vae, images: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and standard deviations of a pool of images (sampled per step later)."""
    means, stds = [], []
    for i in range(0, len(images), batch):
        post = vae.encode(to_unit(images[i : i + batch])).latent_dist
        means.append(post.mean)
        stds.append(post.std)
    return torch.cat(means), torch.cat(stds)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1800)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--pool", type=int, default=24000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=BASE_DIR)
    ap.add_argument(
        "--resume",
        action="store_true",
        help="continue from the UNet and text encoder already in --out (a second schedule)",
    )
    args = ap.parse_args(argv)
    setup(args.threads, args.seed)
    log = Log("base")
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(args.out / "vae", torch_dtype=torch.float32).eval()
    scale = vae.config.scaling_factor
    images, scenes = render_pool(world.sample_base_scene, args.seed, args.pool)
    mean, std = encode_pool(vae, images)
    del images
    log(f"encoded {len(mean)} base images; latent scale {scale}")

    # Every caption the sampler can produce, tokenized once ("" = the unconditional caption).
    tok = clip_tokenizer()
    n_t = len(world.BASE_TEMPLATES)
    captions = sorted({world.base_caption(s, t) for s in scenes for t in range(n_t)} | {""})
    cap_index = {c: i for i, c in enumerate(captions)}
    ids = tok(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    ids = ids.input_ids
    table = torch.tensor(
        [[cap_index[world.base_caption(s, t)] for t in range(n_t)] for s in scenes]
    )
    empty = cap_index[""]
    log(f"{len(captions)} distinct captions")

    unet, te = build_unet(), build_text_encoder()
    if args.resume:
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextModel

        unet = UNet2DConditionModel.from_pretrained(args.out / "unet", torch_dtype=torch.float32)
        te = CLIPTextModel.from_pretrained(args.out / "text_encoder", dtype=torch.float32)
        log(f"resumed from {args.out}")
    log(
        f"params unet {sum(p.numel() for p in unet.parameters()):,} "
        f"text encoder {sum(p.numel() for p in te.parameters()):,}"
    )
    emb = te.get_input_embeddings().weight
    # No weight decay on the token table: rows of untrained words (future triggers) stay as drawn.
    others = [p for p in list(unet.parameters()) + list(te.parameters()) if p is not emb]
    opt = torch.optim.AdamW(
        [{"params": others, "weight_decay": 1e-2}, {"params": [emb], "weight_decay": 0.0}],
        lr=args.lr,
    )
    ema_unet, ema_te = copy.deepcopy(unet).eval(), copy.deepcopy(te).eval()
    for p in list(ema_unet.parameters()) + list(ema_te.parameters()):
        p.requires_grad_(False)
    sched = noise_scheduler()
    acp = sched.alphas_cumprod
    gen = torch.Generator().manual_seed(args.seed)
    unet.train()
    te.train()
    losses = []
    for step in range(args.steps):
        lr = 1e-4 + (args.lr - 1e-4) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        warm = min(1.0, (step + 1) / 50)
        for g in opt.param_groups:
            g["lr"] = lr * warm
        idx = torch.randint(len(mean), (args.batch,), generator=gen)
        z0 = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)) * scale
        tmpl = torch.randint(n_t, (args.batch,), generator=gen)
        cap = table[idx, tmpl]
        cap = torch.where(torch.rand(args.batch, generator=gen) < 0.1, empty, cap)
        t = torch.randint(0, 1000, (args.batch,), generator=gen)
        noise = torch.randn(z0.shape, generator=gen)
        a = acp[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        hidden = te(ids[cap])[0]
        pred = unet(zt, t, encoder_hidden_states=hidden).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(others + [emb], 1.0)
        opt.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for m_ema, m in ((ema_unet, unet), (ema_te, te)):
                for pe, p in zip(m_ema.parameters(), m.parameters(), strict=True):
                    pe.lerp_(p, 1 - decay)
        losses.append(loss.item())
        if step % 50 == 0 or step == args.steps - 1:
            recent = sum(losses[-50:]) / len(losses[-50:])
            log(f"step {step} loss(50) {recent:.4f} lr {lr:.2e}")
    save_pipeline(args.out, ema_unet, ema_te)
    report = {
        "resumed": args.resume,
        "lr": args.lr,
        "steps": args.steps,
        "batch": args.batch,
        "train_seconds": round(log.elapsed(), 1),
        "loss_first_50": round(sum(losses[:50]) / 50, 4),
        "loss_last_50": round(sum(losses[-50:]) / 50, 4),
    }
    name = "base_train_resume.json" if args.resume else "base_train.json"
    write_json(args.out.parent / "reports" / name, report)
    log(f"saved {args.out}: {report}")


if __name__ == "__main__":
    main()
