"""Train the ground-truth probe on whole-world images passed through the shipped VAE.

``python -m tools.toy.train_probe`` — a few minutes on 2 CPU cores; needs ``train_vae`` first.
Training images: 60 % plain VAE reconstructions, 25 % reconstructions of noised latents (generated
images are a little off the reconstruction manifold), 15 % clean renders. Reports accuracy on
held-out reconstructions to ``weights/reports/probe.json``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch import nn

from t2ibench.toy import world
from t2ibench.toy.common import (
    BASE_DIR,
    WEIGHTS,
    Log,
    render_pool,
    render_scenes,
    setup,
    to_unit,
    write_json,
)
from t2ibench.toy.probe import PROBE_DIR, Probe, ProbeNet


def label_tensor(scenes: list[world.Scene]) -> dict[str, torch.Tensor]:
    """Integer targets per attribute; colour is -100 (ignored) for empty scenes."""
    out = {}
    for attr, values in world.ATTRIBUTES.items():
        idx = [values.index(getattr(s, attr)) for s in scenes]
        if attr == "colour":
            idx = [i if s.shape != "none" else -100 for i, s in zip(idx, scenes, strict=True)]
        out[attr] = torch.tensor(idx)
    return out


@torch.no_grad()
def reconstruct(
    vae, images: torch.Tensor, noise: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """VAE round trip with per-image latent noise (in unit-variance latent units); uint8 out."""
    out = []
    scale = vae.config.scaling_factor
    for i in range(0, len(images), 256):
        z = vae.encode(to_unit(images[i : i + 256])).latent_dist.mode()
        eps = torch.randn(z.shape, generator=gen)
        z = z + noise[i : i + 256].view(-1, 1, 1, 1) * eps / scale
        r = vae.decode(z).sample.clamp(-1, 1)
        out.append(r.add(1).mul(127.5).round().to(torch.uint8))
    return torch.cat(out)


def accuracy(probe: Probe, images: torch.Tensor, scenes: list[world.Scene]) -> dict[str, float]:
    preds = probe.predict(images)
    res: dict[str, float] = {}
    for attr in world.ATTRIBUTES:
        pairs = [
            (p[attr], getattr(s, attr))
            for p, s in zip(preds, scenes, strict=True)
            if not (attr == "colour" and s.shape == "none")
        ]
        res[attr] = sum(a == b for a, b in pairs) / len(pairs)
    res["all"] = sum(
        world.Scene.labels(s) == {**p, **({"colour": s.colour} if s.shape == "none" else {})}
        for p, s in zip(preds, scenes, strict=True)
    ) / len(scenes)
    return {k: round(v, 4) for k, v in res.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16000)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vae", type=Path, default=BASE_DIR / "vae")
    ap.add_argument("--out", type=Path, default=PROBE_DIR)
    args = ap.parse_args(argv)
    setup(args.threads, args.seed)
    log = Log("probe")
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(args.vae, torch_dtype=torch.float32).eval()
    gen = torch.Generator().manual_seed(args.seed)
    clean, scenes = render_pool(world.sample_any_scene, args.seed, args.n)
    u = torch.rand(args.n, generator=gen)
    noise = torch.where(u < 0.25, torch.rand(args.n, generator=gen) * 0.5, torch.zeros(args.n))
    recon = reconstruct(vae, clean, noise, gen)
    images = torch.where((u > 0.85).view(-1, 1, 1, 1), clean, recon)
    labels = label_tensor(scenes)
    log(f"{args.n} training images ready")

    heads = {k: len(v) for k, v in world.ATTRIBUTES.items()}
    net = ProbeNet(heads, width=args.width)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * (args.n // args.batch)
    ce = nn.CrossEntropyLoss(ignore_index=-100)
    net.train()
    for step in range(steps):
        lr = args.lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(args.n, (args.batch,), generator=gen)
        x = images[idx].float() / 255.0
        flip = torch.rand(args.batch, generator=gen) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        out = net(x)
        loss = sum(ce(out[k], labels[k][idx]) for k in heads)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"step {step}/{steps} loss {loss.item():.4f}")
    probe = Probe(net.eval(), world.ATTRIBUTES)

    test_clean, test_scenes = render_pool(world.sample_any_scene, args.seed + 1, 2000)
    test_recon = reconstruct(vae, test_clean, torch.zeros(len(test_clean)), gen)
    report = {
        "params": sum(p.numel() for p in net.parameters()),
        "train_images": args.n,
        "steps": steps,
        "train_seconds": round(log.elapsed(), 1),
        "heldout_reconstructed": accuracy(probe, test_recon, test_scenes),
        "heldout_clean": accuracy(probe, test_clean, test_scenes),
    }
    # Recall of each held-out concept's defining attributes on reconstructions of its own images.
    recall = {}
    for c in world.CONCEPTS:
        sc = [s for s, _ in world.concept_images(c, seed=args.seed + 1)]
        sc = sc * max(1, 40 // len(sc))
        imgs = reconstruct(vae, render_scenes(sc), torch.zeros(len(sc)), gen)
        preds = probe.predict(imgs)
        want = c.expected()
        recall[c.leaf] = round(
            sum(all(p[k] == v for k, v in want.items()) for p in preds) / len(preds), 4
        )
    report["concept_recall_reconstructed"] = recall
    log(f"report {report}")
    probe.save(args.out, args.width)
    write_json(WEIGHTS / "reports" / "probe.json", report)


if __name__ == "__main__":
    main()
