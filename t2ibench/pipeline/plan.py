"""``t2ibench run --dry-run``: what a run will do, and how long it should take.

The time estimate is measured, not guessed: a short calibration times one training step (UNet +
text encoder forward and backward on a batch at the training resolution), one image generation
with the run's sampler settings, and one encoder batch per encoder, then scales by the counts.

``t2ibench sweep --dry-run [--gpus N]``: a whole sweep's work per stage, its GPU-hours from
per-GPU rates (measured by ``benchmarks/gpu.sh`` when its table exists, else the documented
defaults below) and, with ``--gpus``, its makespan on N GPUs (:func:`makespan`).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
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
    from t2ibench.pipeline.generate import sampling_options
    from t2ibench.pipeline.run import create_encoders

    dev = r.options.device
    g = r.generation
    pipe = load_base(r.base, device=dev, allow_pickle=r.options.allow_pickle, **g.load_kwargs())
    gen = torch.Generator(dev).manual_seed(0)
    pipe.set_progress_bar_config(disable=True)
    call = {
        "guidance_scale": g.guidance_scale,
        "height": g.height,
        "width": g.width,
        "generator": gen,
    }
    with sampling_options(pipe, g):  # dtype, attention, channels-last, compile as generated
        pipe("calibration", num_inference_steps=1, **call)  # warm-up
        t0 = time.perf_counter()
        pipe("calibration", num_inference_steps=g.steps, **call)
        t_image = time.perf_counter() - t0

    from t2ibench.architectures import architecture_of_pipe

    arch = architecture_of_pipe(pipe)  # the base's own objective (epsilon / flow matching)
    cfg = r.trainer_config
    bs, side = cfg.batch_size, cfg.resolution
    f = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    channels = int(pipe.vae.config.latent_channels)
    latents = torch.randn(bs, channels, side // f, side // f, device=dev)
    params = [p for m in arch.all_parts(pipe).values() if m is not None for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    scheduler = arch.training_scheduler(pipe)
    t0 = time.perf_counter()
    loss = arch.training_loss(
        pipe, latents, ["calibration"] * bs, torch.Generator().manual_seed(0), scheduler
    )
    loss.backward()
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


# --------------------------------------------------------------------------------------------------
# A sweep's cost, projected: ``t2ibench sweep --grid NAME --dry-run``
# --------------------------------------------------------------------------------------------------

# The paper's dataset (Tables 3–4): 1,706 images in 39 leaves (32 character / object / scene leaves,
# 7 style leaves); repeats balance the classes to 5,560 samples per epoch (the sum of images ×
# repeats over Tables 3–4), i.e. 695 steps of batch 8 per epoch, 34,750 steps in 50 epochs.
PAPER_DATASET = {
    "images": 1706,
    "leaves": 39,
    "style_leaves": 7,
    "samples_per_epoch": 5560,
    "source": "paper Tables 3–4 (images × repeats per class)",
}
PAPER_STEPS_PER_RUN = 50 * math.ceil(5560 / 8)
PAPER_IMAGES_PER_CHECKPOINT = 14900  # paper section 4: 100 per leaf and prompt type, 4 types

# Paper Table 5: average training time (hours, one A6000) of a 50-epoch run, by algorithm, preset
# and capacity (LoRA/LoHa dim, LoKr factor). Generation and evaluation times are not reported.
TABLE5_HOURS: dict[tuple[str, str, int | None], float] = {
    ("lora", "attn-only", 8): 4.2,
    ("lora", "attn-mlp", 8): 4.9,
    ("lora", "full", 8): 5.6,
    ("lora", "attn-mlp", 32): 5.0,
    ("loha", "attn-only", 4): 4.3,
    ("loha", "attn-mlp", 4): 4.9,
    ("loha", "full", 4): 6.4,
    ("loha", "attn-mlp", 16): 5.0,
    ("lokr", "attn-mlp", 12): 4.4,
    ("lokr", "attn-only", 8): 3.9,
    ("lokr", "attn-mlp", 8): 4.5,
    ("lokr", "full", 8): 6.0,
    ("lokr", "attn-mlp", 4): 4.5,
    ("native", "attn-only", None): 4.4,
    ("native", "attn-mlp", None): 3.9,
    ("native", "full", None): 4.7,
}

# Per-GPU throughputs used when no measured table exists (``benchmarks/gpu.sh`` writes one). All
# are for one A6000-class GPU so the total compares with the paper's Table 5.
DEFAULT_THROUGHPUT: dict[str, Any] = {
    "gpu": "A6000 (assumed)",
    # Training: the paper's own rate, Table 5 hours / 34,750 steps, per config (see table5_hours).
    "train": "paper Table 5",
    # Generation: SD1.5 at 512 px, DDIM 30, CFG 7, fp16. Assumption: ≈18 it/s at batch 1 on a
    # GA102 GPU (RTX 3090 / A6000 class; community A1111 + xformers figures), i.e. 1.7 s an image,
    # about 25 % less in batches of 8 (batching saved 5–30 % in Salad's SD1.5 benchmark).
    "image_s": 1.3,
    # Encoders: a 224 px forward of a ViT-L / ConvNeXt-L / VGG-19 in bf16 takes under 2 ms on such a
    # GPU; PNG decoding and resizing on the CPU bound it. Assumption: 300 images/s per encoder.
    "encoder_images_per_s": 300.0,
    "source": "assumed defaults (no measured GPU table in benchmarks/results/)",
}


def table5_hours(algorithm: str, preset: str, capacity: int | None) -> float:
    """The paper's training hours for the nearest Table 5 row (same algorithm and preset). A
    trainer Table 5 does not have (DoRA, OFT, ...) takes LoRA's rows; ``lycoris-loha`` /
    ``peft-lokr`` take their algorithm's."""
    algorithm = table5_algorithm(algorithm)
    for key in ((algorithm, preset, capacity), (algorithm, preset, _default_capacity(algorithm))):
        if key in TABLE5_HOURS:
            return TABLE5_HOURS[key]
    return max(v for k, v in TABLE5_HOURS.items() if k[0] == algorithm)


def table5_algorithm(trainer: str) -> str:
    """The Table 5 algorithm whose training time stands for ``trainer``'s."""
    name = trainer.removeprefix("lycoris-").removeprefix("peft-")
    return name if any(k[0] == name for k in TABLE5_HOURS) else "lora"


def _default_capacity(algorithm: str) -> int | None:
    return {"lora": 8, "loha": 4, "lokr": 8}.get(algorithm)


def _capacity(cfg: Any) -> int | None:
    algorithm = table5_algorithm(cfg.trainer)
    if algorithm == "lokr":
        return getattr(cfg, "factor", None)
    if algorithm in ("lora", "loha"):
        return getattr(cfg, "dim", None)
    return None


def base_figures(base: Any) -> tuple[str, Any]:
    """(label, the base's :class:`~t2ibench.architectures.CostFigures` or None) for a run's
    ``base``: a base architecture named by ``--base`` brings its own figures; any other base
    (a hub id, a path, a named base) the projection's default rates."""
    from t2ibench.architectures import get_architecture, is_architecture

    if is_architecture(base):
        return str(base), get_architecture(base).cost
    return str(base), None


def measured_throughput(results_dir: Any = None) -> dict[str, Any] | None:
    """The newest ``gpu_*.json`` written by ``benchmarks/gpu_bench.py`` (not a ``--dry`` one)."""
    import json
    from pathlib import Path

    import t2ibench

    folder = (
        Path(results_dir)
        if results_dir
        else Path(t2ibench.__file__).resolve().parents[1] / "benchmarks" / "results"
    )
    for path in sorted(folder.glob("gpu_*.json"), reverse=True):
        data = json.loads(path.read_text(encoding="utf-8"))
        if not data.get("dry"):
            data["source"] = f"measured: {path.name}"
            return data
    return None


def _shape_from_dataset(ds: Any, prompt_types: list[str], n: int) -> dict[str, Any]:
    from t2ibench.prompts import jobs_for

    jobs = jobs_for(ds, prompt_types, n)
    return {
        "images": len(ds.images),
        "samples_per_epoch": sum(ds.repeats(im.concept) for im in ds.images),
        "images_per_checkpoint": len(jobs),
        "style_images_per_checkpoint": sum(j.prompt_type == "style" for j in jobs),
        "per_prompt_type": {p: sum(j.prompt_type == p for j in jobs) for p in prompt_types},
        "images_per_leaf": n,
        "source": str(ds.root),
    }


def _paper_shape(prompt_types: list[str], n: int) -> dict[str, Any]:
    leaves, style = PAPER_DATASET["leaves"], PAPER_DATASET["style_leaves"]
    per_leaf = n * len([p for p in prompt_types if p != "style"])
    style_images = n * (leaves - style) if "style" in prompt_types else 0
    return {
        "images": PAPER_DATASET["images"],
        "samples_per_epoch": PAPER_DATASET["samples_per_epoch"],
        "images_per_checkpoint": leaves * per_leaf + style_images,
        "style_images_per_checkpoint": style_images,
        "per_prompt_type": {p: style_images if p == "style" else leaves * n for p in prompt_types},
        "images_per_leaf": n,
        "source": PAPER_DATASET["source"],
    }


def sweep_plan(
    grid: Any,
    *,
    dataset: Any = None,
    base: Any = None,
    throughput: dict | None = None,
    gpus: int | None = None,
    base_path: Any = None,
) -> dict[str, Any]:
    """Work per stage of a whole sweep, before and after sharing the base model's work, and its
    GPU-hours from per-GPU throughputs, next to the paper's own (Table 5) training hours; with
    ``gpus``, the makespan on that many GPUs (:func:`makespan`).

    Needs neither the base model nor, for the paper grid, the dataset (its shape is the paper's).
    """
    from pathlib import Path

    from t2ibench.adapters import get_trainer
    from t2ibench.encoders import get_encoder_spec
    from t2ibench.errors import ConfigError
    from t2ibench.pipeline.run import choose_profile, parse_encoder
    from t2ibench.profiles import get_profile, resolve_named
    from t2ibench.prompts import list_prompt_types
    from t2ibench.runconfig import Layers

    def layered(opts):
        """The run's config and trainer config, layered as ``resolve`` does (no base needed)."""
        user = Layers()
        for where, table in opts.layers:
            user.add_table(where, table)
        try:
            profile = choose_profile(opts, user.values.get("base"), user.values.get("dataset"))
        except ConfigError:  # the paper grid without --dataset: count on the paper's shape
            profile = get_profile("paper")
        layers = Layers().add_table(f"profile {profile.name}", profile.values)
        for where, table in opts.layers:
            layers.add_table(where, table)
        cfg = layers.run_config()
        tcfg = get_trainer(cfg.trainer_name).config(layers.trainer_sources(), prefix="trainer.")
        return profile.name, cfg, tcfg

    runs = list(
        grid.run_options(
            out=Path("."), device="cpu", dataset=dataset, base=base, base_path=base_path
        )
    )
    profile, first, _ = layered(runs[0])
    prompt_types = list(first.generate.prompt_types or list_prompt_types())
    n = first.generate.images_per_leaf
    if first.dataset is None:
        shape = _paper_shape(prompt_types, n)
    else:
        from t2ibench.data import load_dataset

        ds = load_dataset(resolve_named("dataset", first.dataset))
        shape = _shape_from_dataset(ds, prompt_types, n)

    encoders = [parse_encoder(e)[0] for e in first.evaluate.encoders]
    kinds = {e: get_encoder_spec(e).kind for e in encoders}
    n_resize = len(first.evaluate.resize) if first.evaluate.resize else 1
    image_encoders = [e for e in encoders if kinds[e] in ("image", "image-text")]
    gram_encoders = [e for e in encoders if kinds[e] == "gram"]

    tp = throughput or measured_throughput() or DEFAULT_THROUGHPUT
    measured = tp.get("train_step_s") if isinstance(tp.get("train_step_s"), dict) else {}
    image_s = tp.get("image_s", DEFAULT_THROUGHPUT["image_s"])
    per_run = []
    bases: dict[str, Any] = {}  # label → its figures (None: the default rates), in grid order
    for opts in runs:
        _, run_cfg, cfg = layered(opts)
        saves = {e for e in cfg.save_epochs if e <= cfg.epochs} | {cfg.epochs}
        steps = cfg.epochs * math.ceil(shape["samples_per_epoch"] / cfg.batch_size)
        paper_h = table5_hours(cfg.trainer, cfg.preset, _capacity(cfg))
        step_s = measured.get(cfg.trainer, paper_h * 3600 / PAPER_STEPS_PER_RUN)
        label, fig = base_figures(run_cfg.base)
        bases.setdefault(label, fig)
        if fig is not None and fig.train_sample_s is not None:
            # the base's own rate, scaled by how the algorithm's Table 5 time compares with LoRA's
            ratio = paper_h / table5_hours("lora", "attn-mlp", 8)
            step_s = fig.train_sample_s * cfg.batch_size * ratio
        per_run.append(
            {
                "name": opts.name,
                "base": label,
                "image_s": fig.image_s if fig is not None else image_s,
                "steps": steps,
                "checkpoints": len(saves),
                "train_h": steps * step_s / 3600,
                "paper_train_h": paper_h,
            }
        )
    base_image_s = {b: f.image_s if f is not None else image_s for b, f in bases.items()}

    R = len(per_run)
    C = sum(r["checkpoints"] for r in per_run)
    per_ck = shape["images_per_checkpoint"]
    style = shape["style_images_per_checkpoint"]
    refs = shape["images"]
    E, G = len(image_encoders) * n_resize, len(gram_encoders)
    tuned = C * per_ck
    # before: every run makes and encodes its own base images and references, and every checkpoint
    # recomputes the base images' Gram matrices; after: once per sweep (shared folder + cache).
    # (the base model's images: once per base after sharing)
    work = {
        "before": {
            "training steps": sum(r["steps"] for r in per_run),
            "images generated": tuned + R * per_ck,
            "encoder passes": E * (tuned + R * refs),
            "Gram computations": G * (C * style + C * style),
        },
        "after": {
            "training steps": sum(r["steps"] for r in per_run),
            "images generated": tuned + len(bases) * per_ck,
            "encoder passes": E * (tuned + refs),
            "Gram computations": G * (C * style + style),
        },
    }
    enc_rate = tp.get("encoder_images_per_s", DEFAULT_THROUGHPUT["encoder_images_per_s"])
    if isinstance(enc_rate, dict):  # measured per encoder: the harmonic mean over those used
        rates = [enc_rate[e] for e in encoders if e in enc_rate] or list(enc_rate.values())
        enc_rate = len(rates) / sum(1 / r for r in rates)
    train_h = sum(r["train_h"] for r in per_run)
    # each image at its base's rate: the runs' checkpoints, and the base models' (every run its
    # own before sharing, once per base after)
    tuned_s = sum(r["checkpoints"] * per_ck * r["image_s"] for r in per_run)
    gen_s = {
        "before": tuned_s + sum(per_ck * r["image_s"] for r in per_run),
        "after": tuned_s + sum(per_ck * s for s in base_image_s.values()),
    }
    hours = {}
    for when, w in work.items():
        hours[when] = {
            "training steps": train_h,
            "images generated": gen_s[when] / 3600,
            "encoder passes": w["encoder passes"] / enc_rate / 3600,
            "Gram computations": w["Gram computations"] / enc_rate / 3600,
        }
    # Per run, after sharing: its checkpoints' images and their encoding (+ Gram matrices of their
    # style images); the base model's images, references and base Grams once for the sweep.
    enc_s = 1 / enc_rate / 3600
    for r in per_run:
        r["generate_h"] = r["checkpoints"] * per_ck * r["image_s"] / 3600
        r["evaluate_h"] = (E * r["checkpoints"] * per_ck + G * r["checkpoints"] * style) * enc_s
    shared = {
        "generate_h": sum(per_ck * s for s in base_image_s.values()) / 3600,
        "evaluate_h": (E * refs + G * style) * enc_s,
    }
    per_base = _per_base(per_run, bases, base_image_s, per_ck, shared["evaluate_h"])
    # The paper's own images: 4 prompt types (no concept-agnostic), 14,900 per checkpoint, plus the
    # base model's once; at the same generation rate (its generation time is not reported).
    paper_gen_h = (C + 1) * PAPER_IMAGES_PER_CHECKPOINT * image_s / 3600
    schedule = None
    if gpus is not None:
        schedule = {
            "gpus": gpus,
            "one_gpu_per_run": makespan(per_run, shared, gpus, shards=1),
            "sharded": makespan(per_run, shared, gpus, shards=gpus),
        }
    return {
        "schedule": schedule,
        "per_base": per_base,
        "paper_generation_h": paper_gen_h,
        "grid": grid.name,
        "profile": profile,
        "runs": R,
        "checkpoints": C,
        "dataset": shape,
        "encoders": encoders,
        "work": work,
        "gpu_hours": hours,
        "paper_train_h": sum(r["paper_train_h"] for r in per_run),
        "throughput": {
            "gpu": tp.get("gpu", ""),
            "source": tp.get("source", ""),
            "image_s": image_s,
            "encoder_images_per_s": round(enc_rate, 1),
            "train": tp.get("train", "measured s/step per algorithm"),
        },
    }


def _per_base(
    per_run: list[dict],
    bases: Mapping[str, Any],
    image_s: Mapping[str, float],
    per_ck: int,
    shared_evaluate_h: float,
) -> list[dict[str, Any]]:
    """GPU-hours (after sharing) per base: its runs' training, generation (with its base model's
    images, once) and evaluation; then the references' encoding, shared by every base. The rows
    add up to the "after" total."""
    rows = []
    for label, fig in bases.items():
        mine = [r for r in per_run if r["base"] == label]
        rows.append(
            {
                "base": label,
                "gpu": fig.gpu if fig is not None else "",
                "image_s": image_s[label],
                "train_sample_s": fig.train_sample_s if fig is not None else None,
                "source": fig.source if fig is not None else "",
                "runs": len(mine),
                "checkpoints": sum(r["checkpoints"] for r in mine),
                "train_h": sum(r["train_h"] for r in mine),
                "generate_h": sum(r["generate_h"] for r in mine) + per_ck * image_s[label] / 3600,
                "evaluate_h": sum(r["evaluate_h"] for r in mine),
            }
        )
    rows.append(
        {"base": "references (shared)", "gpu": "", "image_s": None, "train_sample_s": None,
         "source": "", "runs": 0, "checkpoints": 0, "train_h": 0.0, "generate_h": 0.0,
         "evaluate_h": shared_evaluate_h}
    )  # fmt: skip
    for r in rows:
        r["total_h"] = r["train_h"] + r["generate_h"] + r["evaluate_h"]
    return rows


def render_per_base(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The per-base table (after sharing) with each base's assumed figures and their source."""
    lines = [
        "per base (after sharing; each base at its own assumed figures — GPUs differ, see the "
        "figures' sources):",
        "",
        "| base | figures (GPU) | s/image | s/training sample | runs | checkpoints | training "
        "GPU-h | generation GPU-h | evaluation GPU-h | total GPU-h |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["base"] == "references (shared)":
            figures, img, smp = "the dataset's images, once", "", ""
        elif r["source"]:
            figures = f"{r['gpu']}: {r['source']}"
            img, smp = f"{r['image_s']:.2f}", f"{r['train_sample_s']:.3f}"
        else:
            figures = "no figures of its own: the default rates"
            img, smp = f"{r['image_s']:.2f}", "Table 5"
        lines.append(
            f"| {r['base']} | {figures} | {img} | {smp} | {r['runs']} | {r['checkpoints']} | "
            f"{r['train_h']:,.1f} | {r['generate_h']:,.1f} | {r['evaluate_h']:,.1f} | "
            f"{r['total_h']:,.1f} |"
        )
    t = {k: sum(r[k] for r in rows) for k in ("runs", "checkpoints", "train_h", "generate_h",
                                              "evaluate_h", "total_h")}  # fmt: skip
    lines.append(
        f"| **total** | | | | {t['runs']} | {t['checkpoints']} | {t['train_h']:,.1f} | "
        f"{t['generate_h']:,.1f} | {t['evaluate_h']:,.1f} | **{t['total_h']:,.1f}** |"
    )
    return lines


def makespan(
    runs: Sequence[Mapping[str, Any]], shared: Mapping[str, float], gpus: int, *, shards: int = 1
) -> dict[str, Any]:
    """Hours until the last run is done on ``gpus`` GPUs, by list scheduling.

    Each run is train → generate → evaluate (``train_h``, ``generate_h``, ``evaluate_h``); its
    generation and encoding are cut into ``shards`` equal parts that may run on different GPUs at
    once (sharded generation and encoding, ``generate.workers`` / ``evaluate.workers``); a training
    is one GPU's. The base model's images and the references' encoding (``shared``, sharded too)
    come first, and every evaluation waits for them. Whenever a GPU is free it takes the ready task
    of highest priority — the shared work, then shards of runs already trained (earliest first, so
    a run finishes as soon as it can), then the longest training left (LPT) — and keeps it to the
    end. Returns the makespan, the busy GPU-hours, the utilisation and the lower bound
    max(GPU-hours / gpus, longest chain).
    """
    import heapq
    import itertools

    if gpus < 1:
        raise ValueError(f"gpus must be ≥ 1, got {gpus}")
    shards = max(1, shards)
    tie = itertools.count()
    waiting: list[tuple] = []  # (ready_at, tie, priority, duration, on_done)
    eligible: list[tuple] = []  # (priority, tie, duration, on_done)
    free = [(0.0, g) for g in range(gpus)]
    busy = 0.0
    run_end: list[float] = []
    shared_end: list[float] = []
    generated: list[tuple[int, float]] = []  # runs generated before the shared work was placed

    def release(priority: tuple, ready_at: float, duration: float, on_done: Any) -> None:
        heapq.heappush(waiting, (ready_at, next(tie), priority, duration, on_done))

    def split(total: float, ready_at: float, priority: tuple, then: Any) -> None:
        """``total`` hours as ``shards`` parts from ``ready_at``; ``then(end)`` after the last."""
        ends: list[float] = []

        def one_done(end: float) -> None:
            ends.append(end)
            if len(ends) == shards:
                then(max(ends))

        for _ in range(shards):
            release(priority, ready_at, total / shards, one_done)

    def evaluate(i: int, gen_end: float) -> None:
        ready_at = max(gen_end, shared_end[0])
        split(runs[i]["evaluate_h"], ready_at, (1, ready_at), run_end.append)

    def after_generate(i: int, end: float) -> None:
        if shared_end:
            evaluate(i, end)
        else:
            generated.append((i, end))

    def shared_done(end: float) -> None:
        shared_end.append(end)
        for i, gen_end in generated:
            evaluate(i, gen_end)

    split(shared["generate_h"], 0.0, (0, 0.0),
          lambda end: split(shared["evaluate_h"], end, (0, end), shared_done))  # fmt: skip
    for i, r in enumerate(runs):

        def trained(end: float, i: int = i) -> None:
            split(runs[i]["generate_h"], end, (1, end), lambda e: after_generate(i, e))

        release((2, -r["train_h"]), 0.0, r["train_h"], trained)
    while waiting or eligible:
        now, g = heapq.heappop(free)
        while waiting and waiting[0][0] <= now:
            _, t, priority, duration, on_done = heapq.heappop(waiting)
            heapq.heappush(eligible, (priority, t, duration, on_done))
        if not eligible:  # idle until the next task is ready
            heapq.heappush(free, (waiting[0][0], g))
            continue
        _, _, duration, on_done = heapq.heappop(eligible)
        busy += duration
        heapq.heappush(free, (now + duration, g))
        on_done(now + duration)
    end = max(run_end + shared_end, default=0.0)
    chain = max(
        (r["train_h"] + (r["generate_h"] + r["evaluate_h"]) / shards for r in runs), default=0.0
    )
    chain = max(chain, (shared["generate_h"] + shared["evaluate_h"]) / shards)
    return {
        "makespan_h": end,
        "gpu_hours": busy,
        "utilisation": busy / (gpus * end) if end else 1.0,
        "lower_bound_h": max(busy / gpus, chain),
        "shards": shards,
    }


def render_sweep_plan(p: dict[str, Any]) -> str:
    """The projection as a Markdown table (it prints readably in a terminal too)."""
    before, after = p["gpu_hours"]["before"], p["gpu_hours"]["after"]
    tb, ta = sum(before.values()), sum(after.values())
    d, t = p["dataset"], p["throughput"]
    own = any(r["source"] for r in p.get("per_base", []))  # a base with figures of its own
    rates = (
        f"throughput: each base's own assumed figures (per base, below; a base without: "
        f"{t['gpu']}, {t['image_s']} s per image, training {t['train']}); "
        f"{t['encoder_images_per_s']} encoder images/s — {t['source']}"
        if own
        else f"throughput: {t['gpu']}; {t['image_s']} s per image, {t['encoder_images_per_s']} "
        f"encoder images/s, training {t['train']} — {t['source']}"
    )
    lines = [
        f"sweep {p['grid']} (profile {p['profile']}): {p['runs']} runs, {p['checkpoints']} "
        f"checkpoints; dataset {d['images']} images, {d['images_per_checkpoint']} images per "
        f"checkpoint ({d['style_images_per_checkpoint']} style) — {d['source']}",
        rates,
        "",
        "| stage | work before | work after | GPU-h before | GPU-h after |",
        "|---|---:|---:|---:|---:|",
    ]
    for stage in p["work"]["before"]:
        lines.append(
            f"| {stage} | {p['work']['before'][stage]:,} | {p['work']['after'][stage]:,} | "
            f"{before[stage]:,.1f} | {after[stage]:,.1f} |"
        )
    lines += [
        f"| **total** | | | **{tb:,.1f}** | **{ta:,.1f}** |",
        "",
    ]
    if not own:  # the paper's cost compares with SD1.5 runs only
        lines.append(
            f"paper's own cost (Table 5, one A6000, 3.9–6.4 h a run): {p['paper_train_h']:,.1f} GPU-h "
            "of training for these runs; generation and evaluation times are not reported. Its "
            f"{p['checkpoints'] + 1} × 14,900 images at the rate above: {p['paper_generation_h']:,.1f} "
            f"GPU-h, so about {p['paper_train_h'] + p['paper_generation_h']:,.1f} GPU-h in all; "
            f"half of that: {(p['paper_train_h'] + p['paper_generation_h']) / 2:,.1f}."
        )
    lines += [
        "before = every run makes and encodes its own base-model images and references and every "
        "checkpoint recomputes the base images' Gram matrices; after = once per sweep "
        "(<out>/runs/.base-images and the feature cache are shared by all runs).",
    ]
    if own:
        lines += ["", *render_per_base(p["per_base"])]
    if p.get("schedule"):
        lines += ["", *render_schedule(p["schedule"])]
    lines.append(
        "calibrate: on a GPU, benchmarks/gpu.sh measures these rates and writes "
        "benchmarks/results/gpu_<date>.json, which this plan then uses instead of the defaults."
    )
    return "\n".join(lines)


def render_schedule(schedule: Mapping[str, Any]) -> list[str]:
    n = schedule["gpus"]
    lines = [
        f"makespan on {n} GPU(s) (list scheduling; a run trains before it generates and is "
        "evaluated; the base model's images and the references' encoding first):",
        "",
        "| schedule | makespan | GPU-h busy | utilisation | lower bound |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in (
        ("one_gpu_per_run", "one GPU per run"),
        ("sharded", f"generation and encoding sharded over up to {n} GPU{'s' if n != 1 else ''}"),
    ):
        s = schedule[key]
        h = s["makespan_h"]
        lines.append(
            f"| {label} | {h:,.1f} h ({h / 24:,.1f} days) | {s['gpu_hours']:,.1f} | "
            f"{s['utilisation']:.0%} | {s['lower_bound_h']:,.1f} h |"
        )
    return lines


# --- ``--budget adaptive``: the projection with the image counts the evidence supports ----------


def adaptive_evidence(results_dir: Any = None, data: str = "lycoris-iclr2024") -> dict[str, Any]:
    """The racing replay's image fraction on ``data`` from the newest committed
    ``benchmarks/results/adaptive_*.csv`` (``benchmarks/adaptive.py``)."""
    from pathlib import Path

    import pandas as pd

    import t2ibench
    from t2ibench.errors import ConfigError

    folder = (
        Path(results_dir)
        if results_dir
        else Path(t2ibench.__file__).resolve().parents[1] / "benchmarks" / "results"
    )
    for path in sorted(folder.glob("adaptive_*.csv"), reverse=True):
        rows = pd.read_csv(path)
        rows = rows[rows["data"] == data]
        if not rows.empty:
            return {
                "data": data,
                "fraction": float(rows["fraction"].mean()),
                "agrees": f"{int(rows['best_agrees'].sum())} of {len(rows)}",
                "source": path.name,
            }
    raise ConfigError(f"--budget adaptive --dry-run: no adaptive_*.csv with {data!r} in {folder}")


def adaptive_projection(p: dict[str, Any], evidence: dict[str, Any] | None = None) -> dict:
    """The sweep plan ``p`` (after sharing) with adaptive image counts: prompt types no
    criterion's per-image headline measurement judges keep one round (``budget.round_images``
    per leaf, the default); judged ones the racing replay's fraction of their images (the width
    rule has no evidence on images per leaf yet: counted in full). Training is unchanged."""
    from t2ibench.analysis.targets import criteria_targets
    from t2ibench.runconfig import BudgetConfig

    # the committed replay on the same study where there is one (the toy grid), else the paper's
    evidence = evidence or adaptive_evidence(
        data="toy" if p["grid"] == "toy" else "lycoris-iclr2024"
    )
    judged = {t.prompt_type for ts in criteria_targets().values() for t in ts}
    shape = p["dataset"]
    n, first_round = shape["images_per_leaf"], BudgetConfig().round_images
    full = sum(shape["per_prompt_type"].values())
    kept = sum(
        count * (evidence["fraction"] if pt in judged else min(1.0, first_round / n))
        for pt, count in shape["per_prompt_type"].items()
    )
    share = kept / full if full else 1.0
    after = p["gpu_hours"]["after"]
    plain = sum(after.values())
    images = {k: v for k, v in after.items() if k != "training steps"}
    adaptive = after["training steps"] + share * sum(images.values())
    paper = p["paper_train_h"] + p["paper_generation_h"]
    return {
        "images_per_checkpoint": full,
        "adaptive_images_per_checkpoint": round(kept),
        "share": share,
        "not_judged": sorted(set(shape["per_prompt_type"]) - judged),
        "evidence": evidence,
        "plain_h": plain,
        "adaptive_h": adaptive,
        "paper_h": paper,
        "half_h": paper / 2,
        "training_h": after["training steps"],
        "grid": p["grid"],
    }


def render_adaptive_projection(a: dict[str, Any]) -> str:
    ev = a["evidence"]
    lines = [
        "| budget | images per checkpoint | GPU-h (after sharing) |",
        "|---|---:|---:|",
        f"| full | {a['images_per_checkpoint']:,} | {a['plain_h']:,.1f} |",
        f"| adaptive | {a['adaptive_images_per_checkpoint']:,} | {a['adaptive_h']:,.1f} |",
        "",
        f"adaptive: prompt types no criterion judges ({', '.join(a['not_judged']) or 'none'}) keep "
        f"one round; the judged ones {ev['fraction']:.0%} of their images, the racing replay on "
        f"{ev.get('data', 'the committed results')} ({ev['source']}; best config per criterion "
        f"agreed in {ev['agrees']} orders); the width rule's saving has no evidence yet and is "
        "not counted.",
    ]
    if a.get("grid") != "paper":
        return "\n".join(lines)
    lines.append(f"paper's total {a['paper_h']:,.1f} GPU-h, half {a['half_h']:,.1f}: ")
    if a["adaptive_h"] <= a["half_h"]:
        lines[-1] += "reached."
    else:
        lines[-1] += (
            f"not reached, {a['adaptive_h'] - a['half_h']:,.1f} GPU-h over "
            f"({a['adaptive_h'] / a['half_h']:.2f}x half); training alone is "
            f"{a['training_h']:,.1f}."
        )
    return "\n".join(lines)
