"""Train the toy encoders (toy-clip, toy-dino; toy-gram uses toy-dino's convs) on world images.

``python -m tools.toy.train_encoders`` — needs ``train_vae`` first. Images: the whole world
(base + held-out concepts), rendered in pairs with the same ground truth and new geometry, half of
them passed through the shipped VAE. toy-clip: symmetric InfoNCE between images and random
descriptive captions. toy-dino: NT-Xent between the two renders of a pair (plus light noise).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch import nn

from t2ibench.toy import world
from t2ibench.toy.common import BASE_DIR, WEIGHTS, Log, render_scenes, setup, write_json
from t2ibench.toy.encoders import ToyClipModel, ToyCNN, save_model
from tools.toy.train_probe import reconstruct


def vocabulary() -> list[str]:
    """Every word the toy CLIP can know ("<unk>" first)."""
    words: set[str] = set()
    for i in range(3000):
        rng = world.rng_for(0, "vocab", i)
        words.update(
            world.clip_caption(world.sample_any_scene(0, i), rng).replace(",", " ").split()
        )
        s = world.sample_base_scene(0, i)
        for t in range(len(world.BASE_TEMPLATES)):
            words.update(world.base_caption(s, t).replace(",", " ").split())
    return ["<unk>"] + sorted(words)


def pair_pool(vae, seed: int, n_pairs: int) -> tuple[torch.Tensor, list[world.Scene]]:
    """2·n images: scene i and i+n share their ground truth; half of all images are reconstructed."""
    first = [world.sample_any_scene(seed, i) for i in range(n_pairs)]
    second = [world.regeometry(s, world.rng_for(seed, "pair", i)) for i, s in enumerate(first)]
    scenes = first + second
    clean = render_scenes(scenes)
    gen = torch.Generator().manual_seed(seed)
    recon = reconstruct(vae, clean, torch.zeros(len(clean)), gen)
    pick = torch.rand(len(clean), generator=gen) < 0.5
    return torch.where(pick.view(-1, 1, 1, 1), recon, clean), scenes


def _x(images: torch.Tensor) -> torch.Tensor:
    return images.float().div(127.5).sub(1.0)  # the encoders' mean/std 0.5


def train_clip(images, scenes, args, log) -> tuple[ToyClipModel, list[str]]:
    vocab = vocabulary()
    model = ToyClipModel(vocab, dim=128)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(args.seed)
    n = len(images)
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        idx = torch.randint(n, (args.batch,), generator=gen)
        caps = [
            world.clip_caption(scenes[i], world.rng_for(args.seed, "cap", step, k))
            for k, i in enumerate(idx.tolist())
        ]
        img = nn.functional.normalize(model.image(_x(images[idx])), dim=-1)
        txt = nn.functional.normalize(model.text(caps), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
        # Captions that fit several images of the batch are not negatives for them.
        same = torch.tensor([[c == d for d in caps] for c in caps], dtype=torch.float32)
        target = same / same.sum(1, keepdim=True)
        loss = (
            nn.functional.cross_entropy(logits, target)
            + nn.functional.cross_entropy(logits.T, target)
        ) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            log(f"clip step {step} loss {loss.item():.4f}")
    return model.eval(), vocab


def train_dino(images, args, log) -> ToyCNN:
    model = ToyCNN(dim=128)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(args.seed + 1)
    half = len(images) // 2
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        idx = torch.randint(half, (args.batch // 2,), generator=gen)
        x = _x(torch.cat([images[idx], images[idx + half]]))
        x = x + 0.03 * torch.randn(x.shape, generator=gen)
        z = nn.functional.normalize(model(x), dim=-1)
        sim = z @ z.T / 0.1
        sim.fill_diagonal_(-1e9)
        m = len(idx)
        target = torch.cat([torch.arange(m, 2 * m), torch.arange(0, m)])
        loss = nn.functional.cross_entropy(sim, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            log(f"dino step {step} loss {loss.item():.4f}")
    return model.eval()


@torch.no_grad()
def evaluate(clip: ToyClipModel, dino: ToyCNN, images, scenes) -> dict:
    """Held-out checks: caption retrieval among 4 shapes × colours, pair retrieval for dino."""
    img = nn.functional.normalize(clip.image(_x(images)), dim=-1)
    full = [world.describe(s) for s in scenes]
    txt = nn.functional.normalize(clip.text(full), dim=-1)
    sim = img @ txt.T
    # top-1 among all captions of the set (ties when captions are equal count as right)
    best = sim.argmax(1)
    clip_top1 = sum(full[b] == full[i] for i, b in enumerate(best.tolist())) / len(full)
    # attribute-swap test: the true caption beats the same caption with the colour changed
    wins = 0
    for i, s in enumerate(scenes):
        other = world.BASE_COLOURS[(world.COLOURS.index(s.colour) + 1) % 6]
        alt = world.describe(world.with_attrs(s, colour=other))
        t2 = nn.functional.normalize(clip.text([full[i], alt]), dim=-1)
        wins += int((img[i] @ t2.T).argmax().item() == 0)
    half = len(images) // 2
    z = nn.functional.normalize(dino(_x(images)), dim=-1)
    zs = z[:half] @ z[half:].T
    dino_top1 = (zs.argmax(1) == torch.arange(half)).float().mean().item()
    return {
        "clip_caption_top1": round(clip_top1, 4),
        "clip_colour_swap_win": round(wins / len(scenes), 4),
        "dino_pair_top1": round(dino_top1, 4),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=6000)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vae", type=Path, default=BASE_DIR / "vae")
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    args = ap.parse_args(argv)
    setup(args.threads, args.seed)
    log = Log("encoders")
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(args.vae, torch_dtype=torch.float32).eval()
    images, scenes = pair_pool(vae, args.seed, args.pairs)
    log(f"{len(images)} images")
    clip, vocab = train_clip(images, scenes, args, log)
    dino = train_dino(images, args, log)
    test_images, test_scenes = pair_pool(vae, args.seed + 1, 500)
    report = {
        "train_seconds": round(log.elapsed(), 1),
        **evaluate(clip, dino, test_images, test_scenes),
    }
    log(f"report {report}")
    save_model(clip, args.out / "toy-clip", "toy-clip", {"dim": 128, "vocab": vocab})
    save_model(dino, args.out / "toy-dino", "toy-dino", {"dim": 128})
    write_json(args.out / "reports" / "encoders.json", report)


if __name__ == "__main__":
    main()
