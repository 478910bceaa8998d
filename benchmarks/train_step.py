"""Training-step time of t2ibench's trainers against peft with the same target layers.

    python benchmarks/train_step.py [--threads 2] [--rounds 5] [--steps 3] [--batch 8]
    python benchmarks/train_step.py --full-sd15      # + one SD1.5-size UNet step (~45 s, ~7 GiB)

One step = text encoder + UNet forward (noise-prediction MSE), backward, AdamW step, on the tiny
base (64 px, batch 8), ``attn-mlp`` on UNet and text encoder. ``lora`` / ``loha`` / ``lokr`` are
compared with peft's LoRA / LoHa / LoKr built on exactly the same layers with the same
dim / alpha / factor (LoKr: factor 8, full second block); ``native`` with plain fine-tuning of the
same layers (weights and biases unfrozen). Every configuration lives in its own copy of the base,
and the rounds interleave them, so background load hits all alike. The table shows the best step
(``timeit``'s convention: the least disturbed measurement of the intrinsic cost) and the median.
Targets: ≤ 1.1× peft for LoRA, ≤ 1.2× for LoHa and LoKr.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _peft_config(algo: str, targets: list[str]):
    from peft import LoHaConfig, LoKrConfig, LoraConfig

    if algo == "lora":
        return LoraConfig(r=8, lora_alpha=4, target_modules=targets, init_lora_weights=True)
    if algo == "loha":
        return LoHaConfig(r=4, alpha=2, target_modules=targets)
    return LoKrConfig(r=10000, alpha=1, decompose_factor=8, target_modules=targets)


def _setup(kind: str, algo: str, cache: Path):
    """(pipe, trainable params, optimizer) for one configuration on a fresh tiny base."""
    from t2ibench.adapters import get_trainer, load_trainer_config
    from t2ibench.adapters.presets import select_modules

    from t2ibench.models import load_base

    os.environ["T2IBENCH_CACHE"] = str(cache)
    pipe = load_base("tiny")
    for part in (pipe.unet, pipe.text_encoder, pipe.vae):
        part.requires_grad_(False)
    torch.manual_seed(0)
    if kind == "ours":
        cfg = load_trainer_config(algo, overrides=["preset=attn-mlp"])
        net = get_trainer(algo).build_network({"unet": pipe.unet, "te": pipe.text_encoder}, cfg)
        net.attach()
        params = list(net.parameters())
        if algo != "native":
            with torch.no_grad():  # non-zero adapters, as mid-training
                for p in params:
                    p.add_(torch.randn_like(p) * 1e-3)
        wd = 0.0 if algo == "native" else 0.1
    elif kind == "peft":
        from peft import inject_adapter_in_model

        params = []
        for part, model in (("unet", pipe.unet), ("te", pipe.text_encoder)):
            targets = [n for n, _ in select_modules(model, part, "attn-mlp")]
            inject_adapter_in_model(_peft_config(algo, targets), model)
            params += [p for n, p in model.named_parameters() if p.requires_grad]
        wd = 0.1
    else:  # plain fine-tuning of the native trainer's layers
        params = []
        for part, model in (("unet", pipe.unet), ("te", pipe.text_encoder)):
            for _, layer in select_modules(model, part, "attn-mlp"):
                layer.requires_grad_(True)
                params += list(layer.parameters())
        wd = 0.1
    for p in params:
        p.requires_grad_(True)
    pipe.unet.train()
    pipe.text_encoder.train()
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.99), weight_decay=wd)
    return pipe, params, opt


def _steps(pipe, params, opt, n: int, batch: int, seed: int) -> list[float]:
    from diffusers import DDPMScheduler
    from t2ibench.adapters.training import diffusion_loss

    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    gen = torch.Generator().manual_seed(seed)
    size = pipe.unet.config.sample_size
    latents = torch.randn(batch, 4, size, size, generator=gen)
    captions = [f"a photo of sks toy number {i}, smiling, simple background" for i in range(batch)]
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        loss = diffusion_loss(pipe, latents, captions, gen, sched)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return times


def tiny_table(threads: int, rounds: int, steps: int, batch: int) -> None:
    cache = Path(tempfile.mkdtemp(prefix="t2ibench-bench-"))
    configs = [(k, a) for a in ("lora", "loha", "lokr") for k in ("ours", "peft")]
    configs += [("ours", "native"), ("plain", "native")]
    setups = {c: _setup(*c, cache) for c in configs}
    for s in setups.values():  # warm-up
        _steps(*s, 2, batch, 0)
    times: dict[tuple[str, str], list[float]] = {c: [] for c in configs}
    for r in range(rounds):
        for c, s in setups.items():
            times[c] += _steps(*s, steps, batch, r + 1)
    best = {c: min(v) * 1000 for c, v in times.items()}
    med = {c: statistics.median(v) * 1000 for c, v in times.items()}
    print(
        f"\ntiny base, 64 px, batch {batch}, attn-mlp (UNet + text encoder), {threads} threads, "
        f"{rounds}×{steps} steps each (ms per training step: best / median)\n"
    )
    print(
        f"{'algorithm':<10}{'t2ibench':>16}{'baseline':>16}{'ratio':>8}{'median':>8}{'target':>8}  baseline"
    )
    for algo, target, base_kind, base_name in (
        ("lora", 1.1, "peft", "peft LoRA r8 α4"),
        ("loha", 1.2, "peft", "peft LoHa r4 α2"),
        ("lokr", 1.2, "peft", "peft LoKr f8 full w2"),
        ("native", None, "plain", "plain fine-tuning"),
    ):
        ours, base = best[("ours", algo)], best[(base_kind, algo)]
        mo, mb = med[("ours", algo)], med[(base_kind, algo)]
        tgt = f"≤{target}" if target else "-"
        print(
            f"{algo:<10}{ours:>7.1f} /{mo:>7.1f}{base:>7.1f} /{mb:>7.1f}{ours / base:>7.2f}×"
            f"{mo / mb:>7.2f}×{tgt:>8}  {base_name}"
        )


def full_sd15_step() -> None:
    """One LoRA training step of the full-size SD1.5 UNet (random weights), batch 1, 512 px."""
    from t2ibench.adapters import get_trainer, load_trainer_config
    from t2ibench.adapters.sd15 import build_sd15

    t0 = time.perf_counter()
    unet, _ = build_sd15("cpu")
    build_s = time.perf_counter() - t0
    unet.requires_grad_(False)
    cfg = load_trainer_config("lora", overrides=["preset=attn-mlp", "train_text_encoder=false"])
    net = get_trainer("lora").build_network({"unet": unet}, cfg)
    net.attach()
    unet.train()
    opt = torch.optim.AdamW(net.parameters(), lr=5e-4, weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 64, 64, generator=g)
    ehs = torch.randn(1, 77, 768, generator=g)
    t0 = time.perf_counter()
    loss = torch.nn.functional.mse_loss(
        unet(x, torch.tensor([500]), ehs).sample, torch.randn_like(x)
    )
    loss.backward()
    opt.step()
    step_s = time.perf_counter() - t0
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(
        f"\nfull-size SD1.5 UNet (859,520,964 params, random weights), LoRA attn-mlp "
        f"({len(net)} modules), batch 1, 512 px, fp32 CPU, {torch.get_num_threads()} threads"
    )
    print(f"  build {build_s:.1f} s, one training step {step_s:.1f} s, peak RSS {rss_gib:.1f} GiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--full-sd15", action="store_true", help="also one SD1.5-size UNet step")
    ap.add_argument("--skip-tiny", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    if not args.skip_tiny:
        tiny_table(args.threads, args.rounds, args.steps, args.batch)
    if args.full_sd15:
        full_sd15_step()


if __name__ == "__main__":
    main()
