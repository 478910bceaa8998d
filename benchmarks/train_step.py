"""Training-step time of t2ibench's trainers against peft on the same layers, at SD1.5 size.

    nice python benchmarks/train_step.py [--threads 1] [--rounds 5] [--steps 2] \
        [--out benchmarks/results/train_step_2026-11-29.md]
    nice python benchmarks/train_step.py --model tiny   # the tiny base (UNet + text encoder)

Model (default ``--model sd15-block``): SD1.5's ``down_blocks.1`` — a ``CrossAttnDownBlock2D``
built from SD1.5's UNet config at full size (320 → 640 channels, two ResNet blocks, two
Transformer2DModel blocks with cross-attention to 77×768 text states, downsampler), random weights,
input 1×320×32×32 (the 512 px latent after the first down block). ``attn-mlp`` selects the
Transformer2DModel layers (attention, GEGLU feed-forward, proj_in/out), as in the paper.

One step = forward, MSE to a fixed random target, backward, grad-norm clip 1, AdamW step.
``lora`` / ``loha`` / ``lokr`` are compared with peft's LoRA / LoHa / LoKr built on exactly the
same layers with the same dim / alpha / factor (LoKr: factor 8, full second block); ``native``
with plain fine-tuning of the same layers. Every configuration lives in its own copy of the model
(same weights). Each round runs every configuration ``--steps`` times, in a freshly shuffled order
(seeded), so drifting background load hits all alike; the table gives the median step with its
interquartile range and min–max over all rounds, and the ratio of medians.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

ALGOS = ("lora", "loha", "lokr", "native")
BASELINE = {
    "lora": ("peft", "peft LoRA r8 α4"),
    "loha": ("peft", "peft LoHa r4 α2"),
    "lokr": ("peft", "peft LoKr f8, full w2"),
    "native": ("plain", "plain fine-tuning"),
}


def _peft_config(algo: str, targets: list[str]):
    from peft import LoHaConfig, LoKrConfig, LoraConfig

    if algo == "lora":
        return LoraConfig(r=8, lora_alpha=4, target_modules=targets, init_lora_weights=True)
    if algo == "loha":
        return LoHaConfig(r=4, alpha=2, target_modules=targets)
    return LoKrConfig(r=10000, alpha=1, decompose_factor=8, target_modules=targets)


# -- models -------------------------------------------------------------------------------------
class SD15Block(nn.Module):
    """SD1.5's ``down_blocks.1`` under its UNet path (so the presets select its layers)."""

    def __init__(self) -> None:
        from diffusers.models.unets.unet_2d_blocks import get_down_block

        super().__init__()
        torch.manual_seed(0)
        block = get_down_block(
            "CrossAttnDownBlock2D",
            num_layers=2,
            in_channels=320,
            out_channels=640,
            temb_channels=1280,
            add_downsample=True,
            resnet_eps=1e-5,
            resnet_act_fn="silu",
            resnet_groups=32,
            downsample_padding=1,
            cross_attention_dim=768,
            num_attention_heads=8,
            attention_head_dim=8,
        )
        self.down_blocks = nn.ModuleList([nn.Identity(), block])
        g = torch.Generator().manual_seed(1)
        self.register_buffer("x", torch.randn(1, 320, 32, 32, generator=g), persistent=False)
        self.register_buffer("temb", torch.randn(1, 1280, generator=g), persistent=False)
        self.register_buffer("ehs", torch.randn(1, 77, 768, generator=g), persistent=False)

    def parts(self) -> dict[str, nn.Module | None]:
        return {"unet": self, "te": None}

    def loss(self, gen: torch.Generator) -> torch.Tensor:
        out, _ = self.down_blocks[1](self.x, self.temb, encoder_hidden_states=self.ehs)
        target = torch.randn(out.shape, generator=gen)
        return torch.nn.functional.mse_loss(out, target)


class TinyBase(nn.Module):
    """The tiny base (UNet + text encoder, 64 px, batch 8): the loop's own loss function."""

    def __init__(self) -> None:
        from t2ibench.models import load_base

        super().__init__()
        self.pipe = load_base("tiny")
        self.unet, self.text_encoder = self.pipe.unet, self.pipe.text_encoder

    def parts(self) -> dict[str, nn.Module | None]:
        return {"unet": self.unet, "te": self.text_encoder}

    def loss(self, gen: torch.Generator) -> torch.Tensor:
        from diffusers import DDPMScheduler

        from t2ibench.adapters.training import diffusion_loss

        sched = DDPMScheduler.from_config(self.pipe.scheduler.config)
        size = self.unet.config.sample_size
        latents = torch.randn(8, 4, size, size, generator=gen)
        caps = [f"a photo of sks toy number {i}, smiling, simple background" for i in range(8)]
        return diffusion_loss(self.pipe, latents, caps, gen, sched)


def _setup(kind: str, algo: str, proto: nn.Module):
    """(model, trainable params, optimizer) for one configuration on a copy of ``proto``."""
    from t2ibench.adapters import get_trainer, load_trainer_config
    from t2ibench.adapters.presets import select_modules

    model = copy.deepcopy(proto)
    model.requires_grad_(False)
    parts = model.parts()
    torch.manual_seed(0)
    wd = 0.1
    if kind == "ours":
        te = parts["te"] is not None
        cfg = load_trainer_config(algo, overrides=["preset=attn-mlp", f"train_text_encoder={te}"])
        net = get_trainer(algo).build_network(parts, cfg)
        net.attach()
        model._network = net  # keep it alive with the model
        params = list(net.parameters())
        if algo != "native":
            with torch.no_grad():  # non-zero adapters, as mid-training
                for p in params:
                    p.add_(torch.randn_like(p) * 1e-3)
        else:
            wd = 0.0  # the trainer decays W + diff by hand; the loop here times the update only
    elif kind == "peft":
        from peft import inject_adapter_in_model

        params = []
        for part, sub in parts.items():
            if sub is None:
                continue
            targets = [n for n, _ in select_modules(sub, part, "attn-mlp")]
            inject_adapter_in_model(_peft_config(algo, targets), sub)
            params += [p for n, p in sub.named_parameters() if p.requires_grad]
    else:  # plain fine-tuning of the native trainer's layers
        params = []
        for part, sub in parts.items():
            if sub is None:
                continue
            for _, layer in select_modules(sub, part, "attn-mlp"):
                layer.requires_grad_(True)
                params += list(layer.parameters())
    for p in params:
        p.requires_grad_(True)
    model.train()
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.99), weight_decay=wd)
    return model, params, opt


def _steps(model, params, opt, n: int, seed: int) -> list[float]:
    gen = torch.Generator().manual_seed(seed)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        loss = model.loss(gen)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return times


def _q(v: list[float], q: float) -> float:
    return statistics.quantiles(v, n=4, method="inclusive")[int(q * 4) - 1] if len(v) > 1 else v[0]


def run(model_name: str, threads: int, rounds: int, steps: int, seed: int) -> str:
    torch.set_num_threads(threads)
    if model_name == "tiny":
        os.environ.setdefault("T2IBENCH_CACHE", tempfile.mkdtemp(prefix="t2ibench-bench-"))
        proto: nn.Module = TinyBase()
        what = "tiny base (UNet + text encoder), 64 px, batch 8, attn-mlp on both"
    else:
        proto = SD15Block()
        what = (
            "SD1.5 `down_blocks.1` at full size (CrossAttnDownBlock2D 320→640 ch, 2 transformers, "
            "cross-attention 77×768), random weights, batch 1, 32×32 latent (512 px), attn-mlp"
        )
    load_start = os.getloadavg()[0]
    configs = [(k, a) for a in ALGOS for k in ("ours", BASELINE[a][0])]
    setups = {c: _setup(*c, proto) for c in configs}
    t_start = time.perf_counter()
    for s in setups.values():  # warm-up: allocator, first-call overheads
        _steps(*s, 1, 0)
    rng = random.Random(seed)
    times: dict[tuple[str, str], list[float]] = {c: [] for c in configs}
    orders = []
    for r in range(rounds):
        order = list(configs)
        rng.shuffle(order)
        orders.append(order)
        for c in order:
            times[c] += _steps(*setups[c], steps, r + 1)
    wall = time.perf_counter() - t_start
    load_end = os.getloadavg()[0]

    def stats(v: list[float]) -> str:
        ms = [x * 1000 for x in v]
        return (
            f"{statistics.median(ms):.0f} [{_q(ms, 0.25):.0f}–{_q(ms, 0.75):.0f}] "
            f"({min(ms):.0f}–{max(ms):.0f})"
        )

    lines = [
        f"# Training-step time: t2ibench vs peft ({datetime.date.today().isoformat()})",
        "",
        f"Command: `nice python benchmarks/train_step.py --model {model_name} --threads {threads} "
        f"--rounds {rounds} --steps {steps} --seed {seed}`",
        "",
        f"- Model: {what}.",
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPU cores **shared with other jobs** "
        f"(the run was niced; torch threads = {threads}, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}); 1-min load average {load_start:.1f} at the "
        f"start, {load_end:.1f} at the end; torch {torch.__version__}, fp32 CPU.",
        f"- {rounds} rounds × {steps} steps per configuration after one warm-up step; each round "
        f"runs the {len(configs)} configurations in a shuffled order (seed {seed}). "
        f"Wall time {wall:.0f} s.",
        "- Cells: median step in ms [interquartile range] (min–max); ratio = median / median.",
        "",
        "| algorithm | t2ibench ms | baseline ms | ratio | baseline |",
        "|---|---|---|---|---|",
    ]
    for algo in ALGOS:
        kind, name = BASELINE[algo]
        ours, base = times[("ours", algo)], times[(kind, algo)]
        ratio = statistics.median(ours) / statistics.median(base)
        lines.append(f"| {algo} | {stats(ours)} | {stats(base)} | {ratio:.2f}× | {name} |")
    lines += [
        "",
        "Ratios below 1 mean t2ibench is faster. Round orders: "
        + "; ".join(" ".join(f"{a}/{k}" for k, a in o) for o in orders),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("sd15-block", "tiny"), default="sd15-block")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    table = run(args.model, args.threads, args.rounds, args.steps, args.seed)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table, encoding="utf-8")


if __name__ == "__main__":
    main()
