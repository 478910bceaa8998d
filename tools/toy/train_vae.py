"""Train the toy VAE (diffusers ``AutoencoderKL``, 32 px → 8×8×4 latents): the image codec.

Trained on base-vocabulary world images plus as many generic abstract images
(:func:`world.render_generic`: random colours, splits, stripes, checks, gradients, polygons). Trained
on base images only, it could not represent held-out concepts (a beach background came back at
MSE 0.05), so fine-tuning could never learn them; the generic images fix that without showing it
any held-out concept. The text-to-image parts (UNet, text encoder) see base images only.

``python -m tools.toy.train_vae [--steps N] [--out DIR]`` — about 5 minutes on 2 CPU cores.
Writes ``<out>/vae`` (fp16 safetensors + config with the measured latent scaling factor) and a
``vae_report.json`` with reconstruction errors on base and held-out images.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from t2ibench.toy import world
from t2ibench.toy.common import (
    BASE_DIR,
    Log,
    render_pool,
    render_scenes,
    setup,
    to_unit,
    write_json,
)

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(32, 64, 64),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=16,
    sample_size=32,
)


def build_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(**VAE_CONFIG)


@torch.no_grad()
def recon_mse(vae, images: torch.Tensor, batch: int = 256) -> float:
    """Reconstruction mean squared error in [0, 1] pixel units (as the feasibility notes report)."""
    err, n = 0.0, 0
    for i in range(0, len(images), batch):
        x = to_unit(images[i : i + batch])
        r = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
        err += ((r - x) / 2).pow(2).mean(dim=(1, 2, 3)).sum().item()
        n += len(x)
    return err / n


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--pool", type=int, default=12000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=BASE_DIR)
    args = ap.parse_args(argv)
    setup(args.threads, args.seed)
    log = Log("vae")
    base, _ = render_pool(world.sample_base_scene, args.seed, args.pool // 2)
    generic = torch.stack(
        [
            torch.from_numpy(np.asarray(world.render_generic(args.seed, i))).permute(2, 0, 1)
            for i in range(args.pool - args.pool // 2)
        ]
    )
    images = torch.cat([base, generic])
    log(f"rendered {len(base)} base and {len(generic)} generic images")
    vae = build_vae()
    log(f"params {sum(p.numel() for p in vae.parameters()):,}")
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed)
    vae.train()
    for step in range(args.steps):
        lr = args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(len(images), (args.batch,), generator=gen)
        x = to_unit(images[idx])
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        r = vae.decode(z).sample
        rec = (r - x).pow(2).mean() + 0.5 * (r - x).abs().mean()
        kl = post.kl().mean() / x[0].numel()
        loss = rec + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            log(f"step {step} loss {loss.item():.4f} kl/dim {kl.item():.3f} lr {lr:.2e}")
    vae.eval()
    # Latent scaling: make the latents unit-variance, as SD's 0.18215 does for its VAE.
    with torch.no_grad():
        lat = torch.cat(
            [
                vae.encode(to_unit(images[i : i + 256])).latent_dist.mean
                for i in range(0, min(len(images), 2048), 256)
            ]
        )
    scaling = float(1.0 / lat.std())
    vae.register_to_config(scaling_factor=round(scaling, 5))
    test, _ = render_pool(world.sample_base_scene, args.seed + 1, 512)
    report = {"steps": args.steps, "train_seconds": round(log.elapsed(), 1)}
    report["scaling_factor"] = round(scaling, 5)
    report["mse_base_heldout"] = round(recon_mse(vae, test), 5)
    gen_test = torch.stack(
        [
            torch.from_numpy(np.asarray(world.render_generic(args.seed + 1, i))).permute(2, 0, 1)
            for i in range(512)
        ]
    )
    report["mse_generic_heldout"] = round(recon_mse(vae, gen_test), 5)
    for c in world.CONCEPTS:
        scenes = [s for s, _ in world.concept_images(c, seed=args.seed + 1)]
        imgs = render_scenes(scenes)
        report[f"mse_{c.leaf}"] = round(recon_mse(vae, imgs), 5)
    log(f"report {report}")
    args.out.mkdir(parents=True, exist_ok=True)
    vae.to(torch.float16).save_pretrained(args.out / "vae", safe_serialization=True)
    write_json(args.out.parent / "reports" / "vae.json", report)
    log(f"saved {args.out / 'vae'}")


if __name__ == "__main__":
    main()
