"""GPU benchmark: generation, encoders and training steps on full-size models with random weights.

On CUDA (``benchmarks/gpu.sh``): SD1.5's architecture with random weights (bundled configs, no
download) at 512 px, DDIM 30 steps, CFG 7, in fp16 or bf16, measures

1. images/s of ``generate_images`` against a plain diffusers loop over the same jobs: each
   generation option on its own (``attention``, ``channels_last``, ``compile``, ``dtype`` against
   fp32, ``fuse_adapter`` against the adapter applied, LoRA and LoHa) and all together, an adapter
   merged into the weights, and diffusers' own fused LoRA (``load_lora_weights`` + ``fuse_lora``)
   of the same LoRA file;
2. images/s of every paper encoder (full-size DINOv2-L, CLIP-L/14, ConvNeXt V2-L, VGG-19, random
   weights) through the feature cache, cold (encoding) and warm (reading the cache);
3. training steps/s of t2ibench's LoRA / LoHa / LoKr against peft's on the same modules
   (``attn-mlp``, UNet + text encoder, batch 8, 512 px, autocast);
4. SDXL 1.0 and FLUX.1 [dev] at full size (bundled configs, random weights; FLUX.1 in bf16 with
   a T5 of T5-XXL's width, ``--flux-t5-layers`` deep, CLIP's tokenizer): images/s of
   ``generate_images`` against a plain call of the diffusers pipeline (the base's own resolution,
   sampler, steps and guidance), and s/step of t2ibench's LoRA and PEFT-DoRA trainers against
   plain PEFT LoRA / DoRA on the same denoiser layers (SDXL 1024 px, FLUX.1 512 px, batch 1);

with the peak GPU memory of each, and writes ``results/gpu_<date>.md`` and ``gpu_<date>.json`` (the
JSON is what ``t2ibench sweep --dry-run`` reads for its GPU-hours). ``--dry`` runs every part on
CPU at tiny size (tiny base, tiny encoders, 64 px, 2 steps; generation in bf16, compile not run;
SDXL and FLUX.1: the tiny test-class models of tests/bases, 1 step, 1 training step) so
the script is known to work before a GPU is at hand; its files are marked ``"dry": true`` and never
used for projections. ``--bases sd15,sdxl,flux`` (the default) picks the bases; the encoders run
whatever the bases.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

PROMPTS = [
    "kiro robot, red background",
    "a watercolor painting of a kiro robot",
    "blbo stuffed toy on a beach",
    "twrq scene at night, pixel art",
    "a pencil drawing of a castle",
    "dtsy style, a tree",
    "kiro robot, vstx outfit, walking in the rain",
    "blbo stuffed toy in the style of Claude Monet",
]
ENCODERS = ("dinov2-l", "clip-l14", "convnextv2-l", "vgg19")
BASES = ("sd15", "sdxl", "flux")  # --bases: SDXL and FLUX.1 get generation and training rows


class Meter:
    """Wall time and peak memory (GPU: allocated; CPU: the process's peak RSS) of a block."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    def __enter__(self) -> Meter:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak_gib = torch.cuda.max_memory_allocated() / 2**30
        else:
            self.peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        self.seconds = time.perf_counter() - self.t0


def settings(dry: bool):
    s = {
        "size": 64 if dry else 512,
        "steps": 2 if dry else 30,
        "cfg": 7.0,
        "images": 4 if dry else 32,
        "batch": 2 if dry else 8,
        "encode_images": 8 if dry else 512,
        "train_batch": 2 if dry else 8,
        "train_steps": 2 if dry else 10,
        "repeats": 1 if dry else 2,
        "warmup": not dry,  # the dry run checks the script; its times mean nothing
    }
    return s


#: dtype → the tiny base loaded once on CPU (``--dry``); see load_pipe
_TINY_LOADED: dict = {}


def load_pipe(base: str, device: str, dtype: torch.dtype):
    """A fresh pipeline of ``base``. The tiny base on CPU (``--dry``) is read through
    ``load_base`` once per dtype and every caller gets a deep copy: the dry run asks for it twelve
    times, and a load (its tokenizer's 49,408-token vocabulary, diffusers' lazy imports) costs
    more CPU than the rows it feeds. Full-size bases load anew for every row."""
    import copy

    from t2ibench.models import load_base

    attention = "sdpa" if device.startswith("cuda") else "plain"
    if base != "tiny" or device != "cpu":
        return load_base(base, device=device, dtype=dtype, attention=attention)
    if dtype not in _TINY_LOADED:
        _TINY_LOADED[dtype] = load_base(base, device=device, dtype=dtype, attention=attention)
    return copy.deepcopy(_TINY_LOADED[dtype])


def make_adapter(base: str, algo: str, folder: Path) -> Path:
    """A saved adapter with random (non-zero) weights on the ``attn-mlp`` preset."""
    from t2ibench.adapters import get_trainer, load_trainer_config
    from t2ibench.adapters.files import build_metadata, save_adapter
    from t2ibench.models import base_fingerprint

    pipe = load_pipe(base, "cpu", torch.float32)
    cfg = load_trainer_config(algo, overrides=["preset=attn-mlp"])
    torch.manual_seed(0)
    net = get_trainer(algo).build_network({"unet": pipe.unet, "te": pipe.text_encoder}, cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 1e-3)
    path = folder / f"{algo}.safetensors"
    save_adapter(net, path, build_metadata(cfg, base_fingerprint(base)))
    return path


# --- 1. generation ------------------------------------------------------------------------------


def plain_generation(pipe, jobs, gs, out: Path, **extra) -> None:
    """The plain diffusers loop the rows compare against: batches of ``gs.batch_size`` jobs, one
    CPU generator per image seeded as generate_images seeds it, PNGs written."""
    out.mkdir()
    for first in range(0, len(jobs), gs.batch_size):
        batch = jobs[first : first + gs.batch_size]
        images = pipe(
            prompt=[j.prompt for j in batch],
            num_inference_steps=gs.steps,
            guidance_scale=gs.guidance_scale,
            height=gs.height,
            width=gs.width,
            generator=[torch.Generator("cpu").manual_seed(j.seed) for j in batch],
            **extra,
        ).images
        for j, im in zip(batch, images, strict=True):
            im.save(out / f"{j.index:04d}-s{j.seed}.png")


def bench_generation(base: str, device: str, dtype_name: str, s: dict, work: Path) -> list:
    """Images/s of a plain diffusers loop and of ``generate_images`` with each generation option
    (docs/performance.md#generation-speed), all on this device, each against the plain loop."""
    from dataclasses import replace

    from t2ibench.adapters import merge_adapter
    from t2ibench.pipeline.generate import (
        GenerationSettings,
        checkpoint_on_base,
        generate_images,
        torch_dtype,
    )
    from t2ibench.prompts import GenerationJob

    cuda = device.startswith("cuda")
    dtype = torch_dtype(dtype_name)
    jobs = [
        GenerationJob("bench/leaf", "train", PROMPTS[k % len(PROMPTS)], 1000 + k, k)
        for k in range(s["images"])
    ]
    # what the projection reads ("generate_images (base)"): the benchmark dtype, SDPA on CUDA
    gs = GenerationSettings(
        steps=s["steps"],
        guidance_scale=s["cfg"],
        height=s["size"],
        width=s["size"],
        batch_size=s["batch"],
        dtype=dtype_name,
        attention="sdpa" if cuda else "plain",
    )
    adapters = {a: make_adapter(base, a, work) for a in ("lora", "loha")}
    pipe = load_pipe(base, device, dtype)
    rows = []
    counter = iter(range(10**6))

    def plain(p):
        plain_generation(p, jobs, gs, work / f"plain-{next(counter)}")

    def ours(settings=gs, checkpoint=None):
        def call(p):
            folder = work / f"ours-{next(counter)}"
            if checkpoint is None:
                generate_images(p, jobs, folder, checkpoint="b", settings=settings, progress=False)
                return
            with checkpoint_on_base(p, checkpoint, fuse=settings.fuse_adapter) as tuned:
                generate_images(
                    tuned, jobs, folder, checkpoint="b", settings=settings, progress=False
                )

        return call

    def measure(name: str, fn, p) -> None:
        if s["warmup"]:
            fn(p)  # warm-up: kernels, autotuning, the allocator, the tokenizer (and compile)
        times, peak = [], 0.0
        for _ in range(s["repeats"]):
            with Meter(device) as m:
                fn(p)
            times.append(m.seconds)
            peak = max(peak, m.peak_gib)
        med = statistics.median(times)
        rows.append({"method": name, "images_per_s": len(jobs) / med, "peak_gib": peak})

    measure("plain diffusers loop (base)", plain, pipe)
    measure("generate_images (base)", ours(), pipe)
    # --- each generation option on its own, then together (the plain loop is the reference) ---
    attention = gs.attention
    other = "plain" if attention == "sdpa" else "sdpa"
    measure(f"option: attention={other}", ours(replace(gs, attention=other)), pipe)
    measure("option: channels_last", ours(replace(gs, channels_last=True)), pipe)
    if cuda:
        measure("option: compile", ours(replace(gs, compile=True)), pipe)
    else:  # inductor compiles C++ for minutes on CPU; tests/slow/test_generate_compile.py runs it
        rows.append({"method": "option: compile", "skipped": "not run in --dry (CPU)"})
    if dtype_name != "fp32":
        fp32 = load_pipe(base, device, torch.float32)
        measure("option: dtype=fp32 (reference)", ours(replace(gs, dtype="fp32")), fp32)
        del fp32
    for algo, path in adapters.items():
        measure(f"generate_images, {algo} applied", ours(checkpoint=path), pipe)
        fused = replace(gs, fuse_adapter=True)
        measure(f"option: fuse_adapter, {algo}", ours(fused, checkpoint=path), pipe)
    every = replace(gs, channels_last=True, compile=cuda, fuse_adapter=True, attention="sdpa")
    label = "sdpa, channels_last" + (", compile" if cuda else "") + ", fuse_adapter"
    measure(f"options together ({label}), lora", ours(every, checkpoint=adapters["lora"]), pipe)
    merged = load_pipe(base, device, dtype)
    merge_adapter(merged, adapters["lora"])
    measure("generate_images, lora merged", ours(), merged)
    del merged
    try:
        fused = load_pipe(base, device, dtype)
        fused.load_lora_weights(str(adapters["lora"]))
        fused.fuse_lora()
        measure("plain diffusers loop, diffusers fused lora", plain, fused)
        del fused
    except Exception as exc:  # diffusers' kohya conversion: record why, keep the rest
        rows.append({"method": "diffusers fused lora", "error": f"{type(exc).__name__}: {exc}"})
    base_rate = rows[0]["images_per_s"]
    for r in rows:
        if "images_per_s" in r:
            r["vs_plain"] = base_rate / r["images_per_s"]  # time ratio: > 1 is slower
    return rows


# --- 2. encoders --------------------------------------------------------------------------------


def bench_encoders(device: str, dtype: torch.dtype, s: dict, work: Path, dry: bool) -> list:
    from PIL import Image

    from t2ibench.encoders import FeatureCache, create_encoder, encode_images_cached
    from t2ibench.models.fullsize import make_random_encoder

    folder = work / "images"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    paths = []
    for k in range(s["encode_images"]):
        arr = (torch.rand(s["size"], s["size"], 3, generator=g) * 255).to(torch.uint8).numpy()
        paths.append(folder / f"{k:05d}.png")
        Image.fromarray(arr).save(paths[-1])
    rows = []
    for name in ENCODERS:
        if dry:
            enc = create_encoder(name, tiny=True, device=device)
        else:
            weights = make_random_encoder(name, work / "encoders" / name)
            enc = create_encoder(name, weights=weights, device=device, dtype=dtype, batch_size=64)
        cache = FeatureCache(work / "cache")
        encode_images_cached(enc, paths[: enc.batch_size], None)  # warm-up
        with Meter(device) as cold:
            encode_images_cached(enc, paths, cache)
        with Meter(device) as warm:
            encode_images_cached(enc, paths, cache)
        rows.append(
            {
                "encoder": name,
                "cold_images_per_s": len(paths) / cold.seconds,
                "warm_images_per_s": len(paths) / warm.seconds,
                "peak_gib": cold.peak_gib,
            }
        )
        del enc
    return rows


# --- 3. training steps --------------------------------------------------------------------------


def bench_training(base: str, device: str, dtype: torch.dtype, s: dict) -> list:
    from diffusers import DDPMScheduler

    from t2ibench.adapters import get_trainer, load_trainer_config
    from t2ibench.adapters.presets import select_modules

    cuda = device.startswith("cuda")
    rows = []
    for algo in ("lora", "loha", "lokr"):
        for kind in ("t2ibench", "peft"):
            pipe = load_pipe(base, device, dtype if cuda else torch.float32)
            for part in (pipe.unet, pipe.text_encoder, pipe.vae):
                part.requires_grad_(False)
            torch.manual_seed(0)
            if kind == "t2ibench":
                cfg = load_trainer_config(algo, overrides=["preset=attn-mlp"])
                parts = {"unet": pipe.unet, "te": pipe.text_encoder}
                net = get_trainer(algo).build_network(parts, cfg).to(device)
                net.attach()
                params = list(net.parameters())
            else:
                from peft import inject_adapter_in_model

                params = []
                for part, model in (("unet", pipe.unet), ("te", pipe.text_encoder)):
                    targets = [n for n, _ in select_modules(model, part, "attn-mlp")]
                    inject_adapter_in_model(_peft_config(algo, targets), model)
                    params += [p for p in model.parameters() if p.requires_grad]
            for p in params:
                p.data = p.data.float()
                p.requires_grad_(True)
            pipe.unet.train()
            pipe.text_encoder.train()
            opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1)
            sched = DDPMScheduler.from_config(pipe.scheduler.config)
            gen = torch.Generator().manual_seed(0)
            side = s["size"] // 8
            latents = torch.randn(s["train_batch"], 4, side, side, generator=gen)
            captions = [
                f"kiro robot number {i}, simple background" for i in range(s["train_batch"])
            ]
            autocast = torch.autocast("cuda", dtype=dtype) if cuda else None

            args = (pipe, params, opt, latents, captions, gen, sched, autocast)
            _train_step(*args)  # warm-up
            with Meter(device) as m:
                for _ in range(s["train_steps"]):
                    _train_step(*args)
            rows.append(
                {
                    "algorithm": algo,
                    "implementation": kind,
                    "steps_per_s": s["train_steps"] / m.seconds,
                    "peak_gib": m.peak_gib,
                }
            )
            del pipe, opt, params, args
            if cuda:
                torch.cuda.empty_cache()
    return rows


def _train_step(pipe, params, opt, latents, captions, gen, sched, autocast) -> torch.Tensor:
    from t2ibench.adapters.training import diffusion_loss

    loss = diffusion_loss(pipe, latents, captions, gen, sched, autocast=autocast)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.detach()


def _peft_config(algo: str, targets: list[str]):
    from peft import LoHaConfig, LoKrConfig, LoraConfig

    if algo == "lora":
        return LoraConfig(r=8, lora_alpha=4, target_modules=targets)
    if algo == "loha":
        return LoHaConfig(r=4, alpha=2, target_modules=targets)
    return LoKrConfig(r=10000, alpha=1, decompose_factor=8, target_modules=targets)


# --- 4. SDXL and FLUX.1: generation and training steps -----------------------------------------

#: base → (bundled config tree, its pipeline's published name) of the bases beside SD1.5
OTHER_BASES = {"sdxl": ("sdxl-base-1.0", "SDXL 1.0"), "flux": ("flux.1-dev", "FLUX.1 [dev]")}
#: training resolution on the GPU: SDXL at its own 1024 px; FLUX.1 at 512 px (1024 px without
#: gradient checkpointing would hold about 4× the activations beside 32 GiB of bf16 weights)
TRAIN_SIZE = {"sdxl": 1024, "flux": 512}
#: the training comparisons: (row name, t2ibench trainer, PEFT LoraConfig extra keys)
TRAIN_METHODS = (("lora", "lora", {}), ("dora", "peft-dora", {"use_dora": True}))


def reduced_t5(layers: int) -> dict:
    """FLUX.1's T5-XXL config (width 4096, d_ff 10240, 64 heads) with ``layers`` encoder layers
    (24 is the published depth) and CLIP's vocabulary: the random folder's tokenizer is CLIP's
    (T5's SentencePiece file cannot be built offline), whose ids reach 49,407."""
    from t2ibench.models.fullsize import bundled_config_folder

    path = bundled_config_folder("flux.1-dev") / "text_encoder_2" / "config.json"
    cfg = json.loads(path.read_text())
    return {**cfg, "num_layers": layers, "num_decoder_layers": layers, "vocab_size": 49408}


def other_base_folder(base: str, work: Path, dry: bool, dtype: torch.dtype, t5_layers: int):
    """(folder, description) of ``base``: on the GPU the published architecture at full size with
    random weights (bundled configs, streamed to disk); in ``--dry`` the tiny test-class model."""
    if dry:
        root = str(Path(__file__).resolve().parents[1])
        if root not in sys.path:  # ``python benchmarks/gpu_bench.py`` puts benchmarks/ first
            sys.path.insert(0, root)
        from tests.bases.bases_testutil import make_tiny_flux, make_tiny_sdxl

        build = {"sdxl": make_tiny_sdxl, "flux": make_tiny_flux}[base]
        return build(work / f"tiny-{base}"), f"tiny {OTHER_BASES[base][1]}-class test model"
    from t2ibench.models.fullsize import bundled_config_folder, make_random_from_config_tree

    configs, title = OTHER_BASES[base]
    replace, what = {}, f"{title} at full size"
    if base == "flux":
        replace = {"text_encoder_2": ("transformers", "T5EncoderModel", reduced_t5(t5_layers))}
        depth = "all 24" if t5_layers == 24 else f"{t5_layers} of T5-XXL's 24"
        what += f"; T5: {depth} layers, same width, CLIP's tokenizer and vocabulary (77 tokens)"
    folder = make_random_from_config_tree(
        work / base, bundled_config_folder(configs), dtype=dtype, replace=replace
    )
    return folder, what + ", random weights"


def base_settings(arch, base: str, s: dict, dry: bool) -> dict:
    """Generation and training settings of a base: its own defaults on the GPU (resolution,
    steps, guidance, sampler), 1 step at 64 px in ``--dry``."""
    g = arch.generation
    return {
        "size": 64 if dry else g.resolution,
        "steps": 1 if dry else g.steps,
        "cfg": g.guidance_scale,
        "scheduler": g.scheduler,
        "images": 2 if dry else 4,
        "batch": 2,
        "train_size": 64 if dry else TRAIN_SIZE[base],
        "train_batch": 1,
        "train_steps": 1 if dry else 5,
        "repeats": 1,
        "warmup": s["warmup"],
    }


def _measure(rows: list, name: str, fn, device: str, bs: dict, count: int, key: str) -> None:
    if bs["warmup"]:
        fn()
    times, peak = [], 0.0
    for _ in range(bs["repeats"]):
        with Meter(device) as m:
            fn()
        times.append(m.seconds)
        peak = max(peak, m.peak_gib)
    rows.append({"method": name, key: count / statistics.median(times), "peak_gib": peak})


def bench_base_generation(pipe, device: str, dtype_name: str, bs: dict, work: Path) -> list:
    """Images/s of ``generate_images`` against a plain call of the diffusers pipeline with the
    same prompts, seeds (CPU generators), sampler, steps, guidance, size and T5 length."""
    import inspect

    from t2ibench.pipeline.generate import GenerationSettings, generate_images
    from t2ibench.prompts import GenerationJob

    jobs = [
        GenerationJob("bench/leaf", "train", PROMPTS[k % len(PROMPTS)], 1000 + k, k)
        for k in range(bs["images"])
    ]
    gs = GenerationSettings(
        steps=bs["steps"],
        guidance_scale=bs["cfg"],
        height=bs["size"],
        width=bs["size"],
        scheduler=bs["scheduler"],
        batch_size=bs["batch"],
        dtype=dtype_name,
        attention="sdpa" if device.startswith("cuda") else "plain",
    )
    counter = iter(range(10**6))
    extra = {}
    if "max_sequence_length" in inspect.signature(type(pipe).__call__).parameters:
        # FLUX: generate_images reads T5 prompts at the tokenizer's length (at most 512)
        extra["max_sequence_length"] = int(min(512, pipe.tokenizer_2.model_max_length))

    def plain() -> None:
        plain_generation(pipe, jobs, gs, work / f"plain-{next(counter)}", **extra)

    def ours() -> None:
        folder = work / f"ours-{next(counter)}"
        generate_images(pipe, jobs, folder, checkpoint="b", settings=gs, progress=False)

    rows: list = []
    _measure(rows, "plain diffusers pipeline call", plain, device, bs, len(jobs), "images_per_s")
    _measure(rows, "generate_images", ours, device, bs, len(jobs), "images_per_s")
    for r in rows:
        r["vs_plain"] = rows[0]["images_per_s"] / r["images_per_s"]  # time ratio: > 1 slower
    return rows


def bench_base_training(pipe, device: str, dtype: torch.dtype, bs: dict) -> list:
    """Seconds per step of t2ibench's LoRA and PEFT-DoRA trainers against plain PEFT (LoraConfig,
    ``use_dora`` for DoRA, the same rank, alpha and layers) on the denoiser alone: the base's
    ``attn-mlp`` preset, its own objective (epsilon on SDXL, flow matching on FLUX.1), AdamW.
    One pipeline for all: t2ibench's adapters are detached and PEFT's layers unwrapped after each
    (loading FLUX.1 four times would cost more than the steps)."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    from t2ibench.adapters import get_trainer, load_trainer_config
    from t2ibench.adapters.presets import Preset, select_modules
    from t2ibench.architectures import architecture_of_pipe

    cuda = device.startswith("cuda")
    rows = []
    arch = architecture_of_pipe(pipe)
    for part in arch.frozen_modules(pipe).values():
        part.requires_grad_(False)
    den = arch.denoiser_of(pipe)
    preset = Preset("attn-mlp", arch.preset_patterns("attn-mlp", "unet"), (), arch.name)
    layers = len(select_modules(den, "unet", preset))
    for method, trainer, peft_extra in TRAIN_METHODS:
        for kind in ("t2ibench", "peft"):
            cfg = load_trainer_config(trainer, overrides=["preset=attn-mlp"])
            torch.manual_seed(0)
            if kind == "t2ibench":
                net = get_trainer(trainer).build_network({"unet": den}, cfg, {"unet": preset})
                net.to(device)
                net.attach()
                params = net.trainable("unet")  # what training optimises
            else:
                targets = [n for n, _ in select_modules(den, "unet", preset)]  # same layers
                lora = LoraConfig(
                    r=cfg.dim, lora_alpha=cfg.alpha, target_modules=targets, **peft_extra
                )
                inject_adapter_in_model(lora, den)
                wrapped = sum(isinstance(m, LoraLayer) for m in den.modules())
                if wrapped != layers:  # PEFT matches names by suffix: it must be the same layers
                    raise RuntimeError(
                        f"PEFT wrapped {wrapped} layers, the preset selects {layers}"
                    )
                params = [p for p in den.parameters() if p.requires_grad]
            for p in params:
                p.data = p.data.float()
                p.requires_grad_(True)
            den.train()
            opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1)
            sched = arch.training_scheduler(pipe)
            gen = torch.Generator().manual_seed(0)
            side = bs["train_size"] // pipe.vae_scale_factor
            shape = (bs["train_batch"], pipe.vae.config.latent_channels, side, side)
            latents = torch.randn(shape, generator=gen)
            captions = [f"kiro robot number {i}" for i in range(bs["train_batch"])]
            autocast = torch.autocast("cuda", dtype=dtype) if cuda else None

            args = (pipe, params, opt, latents, captions, gen, sched, autocast)
            _train_step(*args)  # warm-up: kernels, the allocator, the optimizer's state
            with Meter(device) as m:
                for _ in range(bs["train_steps"]):
                    loss = _train_step(*args)
            if not torch.isfinite(loss):
                raise RuntimeError(f"{arch.name} {method} ({kind}): non-finite loss {float(loss)}")
            rows.append(
                {
                    "algorithm": method,
                    "implementation": kind,
                    "trainer": trainer if kind == "t2ibench" else "peft LoraConfig",
                    "layers": layers,
                    "s_per_step": m.seconds / bs["train_steps"],
                    "peak_gib": m.peak_gib,
                }
            )
            if kind == "t2ibench":
                net.detach_()
            else:
                _unwrap_peft(den, LoraLayer)
            den.eval()
            del opt, params, args
            if cuda:
                torch.cuda.empty_cache()
    return rows


def _unwrap_peft(model: torch.nn.Module, layer_class: type) -> None:
    """Put back the base layer of every PEFT layer ``inject_adapter_in_model`` put in ``model``."""
    for name, module in list(model.named_modules()):
        if isinstance(module, layer_class):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.get_base_layer())
    if any(isinstance(m, layer_class) for m in model.modules()):
        raise RuntimeError("a PEFT layer is left in the denoiser")
    if hasattr(model, "peft_config"):  # the adapter's config, set on the model by PEFT
        del model.peft_config


def bench_other_base(base: str, args, device: str, s: dict, work: Path, only: set) -> dict:
    """Generation and training rows of SDXL or FLUX.1 on one loaded pipeline (FLUX.1 in bf16, as
    published; SDXL in the benchmark dtype; ``--dry``: fp32, the SD1.5 rows try bf16 on CPU)."""
    from t2ibench.architectures import architecture_of_folder

    dry = device == "cpu"
    gen_dtype = "fp32" if dry else "bf16" if base == "flux" else args.dtype
    weights = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[gen_dtype]
    folder, what = other_base_folder(base, work, dry, weights, args.flux_t5_layers)
    pipe = load_pipe(str(folder), device, weights)
    bs = base_settings(architecture_of_folder(Path(folder)), base, s, dry)
    train_dtype = "fp32" if dry else f"{gen_dtype} weights, autocast {gen_dtype}, fp32 adapters"
    out = {"model": what, "dtype": gen_dtype, "train_dtype": train_dtype, "settings": bs}
    if "generation" in only:
        images = work / f"{base}-images"  # the plain and generate_images folders of this base
        images.mkdir()
        out["generation"] = bench_base_generation(pipe, device, gen_dtype, bs, images)
    if "training" in only:
        out["training"] = bench_base_training(pipe, device, weights, bs)
    del pipe
    if not dry:
        torch.cuda.empty_cache()
    return out


# --- report -------------------------------------------------------------------------------------


def render(meta: dict, gen: list, enc: list, train: list, others: dict | None = None) -> str:
    lines = [
        f"# GPU benchmark{' (dry run: CPU, tiny models — not GPU figures)' if meta['dry'] else ''}",
        "",
        f"{meta['date']}, {meta['gpu']}, torch {meta['torch']}, {meta['dtype']}; "
        f"SD1.5: {meta['size']} px, DDIM {meta['steps']} steps, CFG {meta['cfg']}; "
        f"`python benchmarks/gpu_bench.py{' --dry' if meta['dry'] else ''}"
        f"{' --bases ' + ','.join(meta['bases']) if meta['bases'] != list(BASES) else ''}`.",
    ]
    if gen:
        lines += [
            "",
            "## Generation (SD1.5 architecture, random weights)",
            "",
            "| method | images/s | time vs plain | peak GiB |",
            "|---|---:|---:|---:|",
        ]
    for r in gen:
        if "error" in r:
            lines.append(f"| {r['method']} | failed: {r['error'][:120]} | | |")
        elif "skipped" in r:
            lines.append(f"| {r['method']} | {r['skipped']} | | |")
        else:
            lines.append(
                f"| {r['method']} | {r['images_per_s']:.3f} | {r['vs_plain']:.3f}× | "
                f"{r['peak_gib']:.2f} |"
            )
    if enc:
        lines += [
            "",
            "## Encoders through the feature cache",
            "",
            "| encoder | cold images/s | warm (cached) images/s | peak GiB |",
            "|---|---:|---:|---:|",
        ]
    for r in enc:
        lines.append(
            f"| {r['encoder']} | {r['cold_images_per_s']:.1f} | {r['warm_images_per_s']:.1f} | "
            f"{r['peak_gib']:.2f} |"
        )
    if train:
        lines += [
            "",
            f"## Training steps (SD1.5, attn-mlp, UNet + text encoder, batch {meta['train_batch']})",
            "",
            "| algorithm | t2ibench steps/s | peft steps/s | ratio (time) | peak GiB t2ibench / peft |",
            "|---|---:|---:|---:|---:|",
        ]
        by = {(r["algorithm"], r["implementation"]): r for r in train}
        for algo in ("lora", "loha", "lokr"):
            a, b = by[(algo, "t2ibench")], by[(algo, "peft")]
            lines.append(
                f"| {algo} | {a['steps_per_s']:.3f} | {b['steps_per_s']:.3f} | "
                f"{b['steps_per_s'] / a['steps_per_s']:.3f}× | "
                f"{a['peak_gib']:.2f} / {b['peak_gib']:.2f} |"
            )
    for base, out in (others or {}).items():
        lines += render_other_base(base, out)
    if meta["dry"]:
        lines += [
            "",
            "Dry run: one short run each on a shared CPU, and peak GiB is the process's peak RSS "
            "so far: the numbers only show that every row runs end to end.",
        ]
    return "\n".join(lines) + "\n"


def render_other_base(base: str, out: dict) -> list[str]:
    title, bs = OTHER_BASES[base][1], out["settings"]
    lines = ["", f"## {title}: {out['model']}"]
    if "error" in out:
        return [*lines, "", f"failed: {out['error'][:300]}"]
    if out.get("generation"):
        lines += [
            "",
            f"Generation: {out['dtype']}, {bs['size']} px, {bs['scheduler']} {bs['steps']} steps, "
            f"guidance {bs['cfg']}, {bs['images']} images in batches of {bs['batch']}.",
            "",
            "| method | images/s | time vs plain | peak GiB |",
            "|---|---:|---:|---:|",
            *(
                f"| {r['method']} | {r['images_per_s']:.3f} | {r['vs_plain']:.3f}× | "
                f"{r['peak_gib']:.2f} |"
                for r in out["generation"]
            ),
        ]
    if out.get("training"):
        layers = out["training"][0]["layers"]
        lines += [
            "",
            f"Training step: denoiser only, attn-mlp ({layers} layers), rank 8, alpha 4, "
            f"{bs['train_size']} px, batch {bs['train_batch']}, AdamW, {out['train_dtype']}; "
            "t2ibench's trainer against plain PEFT (LoraConfig) on the same layers.",
            "",
            "| method | t2ibench trainer | t2ibench s/step | plain PEFT s/step | ratio (time) "
            "| peak GiB t2ibench / PEFT |",
            "|---|---|---:|---:|---:|---:|",
        ]
        by = {(r["algorithm"], r["implementation"]): r for r in out["training"]}
        for method, trainer, _ in TRAIN_METHODS:
            a, b = by[(method, "t2ibench")], by[(method, "peft")]
            lines.append(
                f"| {method} | {trainer} | {a['s_per_step']:.3f} | {b['s_per_step']:.3f} | "
                f"{a['s_per_step'] / b['s_per_step']:.3f}× | "
                f"{a['peak_gib']:.2f} / {b['peak_gib']:.2f} |"
            )
    return lines


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry", action="store_true", help="CPU, tiny models: check the script")
    ap.add_argument("--dtype", choices=("fp16", "bf16"), default="fp16")
    ap.add_argument("--results", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--only", default="generation,encoders,training")
    ap.add_argument(
        "--bases", default=",".join(BASES), help=f"comma-separated, of {', '.join(BASES)}"
    )
    ap.add_argument(
        "--flux-t5-layers",
        type=int,
        default=24,
        help="T5 encoder layers of the FLUX.1 model (24: T5-XXL's depth; fewer on a small GPU)",
    )
    args = ap.parse_args(argv)
    bases = [b.strip() for b in args.bases.split(",") if b.strip()]
    unknown = [b for b in bases if b not in BASES]
    if unknown or not bases:
        ap.error(
            f"--bases: unknown {', '.join(unknown) or '(none given)'}; known: {','.join(BASES)}"
        )
    dry = args.dry
    if not dry and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --dry to check the script on CPU")
    device = "cpu" if dry else "cuda"
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    s = settings(dry)
    only = set(args.only.split(","))
    sd15 = "sd15" in bases
    t0 = time.perf_counter()
    others = {}
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        if dry:
            # bf16 runs on CPU: the dry run goes through the dtype path (load, check, fp32 row)
            base, gen_dtype = "tiny", "bf16"
        elif sd15 and only & {"generation", "training"}:
            from t2ibench.models.fullsize import make_random_sd15

            base, gen_dtype = str(make_random_sd15(work / "sd15")), args.dtype
        run_gen, run_train = sd15 and "generation" in only, sd15 and "training" in only
        gen = bench_generation(base, device, gen_dtype, s, work) if run_gen else []
        enc = bench_encoders(device, dtype, s, work, dry) if "encoders" in only else []
        train = bench_training(base, device, dtype, s) if run_train else []
        for name in (b for b in bases if b != "sd15"):
            try:
                others[name] = bench_other_base(name, args, device, s, work, only)
            except Exception as exc:  # out of memory on a smaller GPU: say so, keep the rest
                if dry:
                    raise
                others[name] = {"error": f"{type(exc).__name__}: {exc}", "settings": {}}
                others[name]["model"] = OTHER_BASES[name][1]
                torch.cuda.empty_cache()
    today = datetime.date.today().isoformat()
    meta = {
        "dry": dry,
        "date": today,
        "gpu": torch.cuda.get_device_name() if not dry else f"CPU ({platform.processor()})",
        "torch": torch.__version__,
        "dtype": args.dtype if not dry else "bf16 (generation), fp32 (the rest)",
        "bases": bases,
        "size": s["size"],
        "steps": s["steps"],
        "cfg": s["cfg"],
        "train_batch": s["train_batch"],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    base_rate = next(
        (r["images_per_s"] for r in gen if r["method"] == "generate_images (base)"), None
    )
    summary = {
        **meta,
        # What ``t2ibench sweep --dry-run`` projects with: seconds per image and per step.
        "image_s": 1 / base_rate if base_rate else None,
        "encoder_images_per_s": {r["encoder"]: r["cold_images_per_s"] for r in enc},
        "train_step_s": {
            r["algorithm"]: 1 / r["steps_per_s"] for r in train if r["implementation"] == "t2ibench"
        },
        "train": "measured s/step per algorithm (native: paper Table 5)",
        "generation": gen,
        "encoders": enc,
        "training": train,
        # SDXL / FLUX.1 rows (not read by the projection: the bases' own cost figures are)
        "bases": others,
    }
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"gpu_{today}" + ("_dry" if dry else "")
    (out / f"{stem}.json").write_text(json.dumps(summary, indent=2))
    text = render(meta, gen, enc, train, others)
    (out / f"{stem}.md").write_text(text)
    print(text)
    print(f"written: {out / stem}.md/.json in {meta['seconds']} s", file=sys.stderr)
    return out / f"{stem}.md"


if __name__ == "__main__":
    main()
