"""The newer bases at full model size on CPU, random weights: time, CPU time and peak memory.

For each base: the published diffusers config tree (``t2ibench/bases/configs``; FLUX.2 [klein]
4B's written by :func:`flux2_klein_config_tree`) built on the meta device and streamed to a diffusers folder with seeded random bf16 weights
(``t2ibench.models.fullsize.make_random_from_config_tree``: one tensor in memory at a time),
loaded back in bf16 through ``load_base`` (the base plug-in's loader), a LoRA and PEFT's IA3
trained 2 steps each at 64 px (one 2-image batch per epoch, 2 epochs; the base's default preset
and text-encoder training), each saved file re-applied and one 64 px image generated with 1 step
of the base's sampler. No evaluation encoders (the SD1.5 real-size test covers them).

    OMP_NUM_THREADS=1 python benchmarks/real_size_bases_cpu.py --bases sdxl sd3.5-medium flux2-klein
    python -m pytest -m slow tests/slow/test_real_size_bases.py   # the same scenario as a test

Wall time on a shared machine is inflated by other processes; CPU time (user + sys) is not.
Run one base per process for a clean peak RSS (``--bases`` one at a time; the table is merged).
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

# the SD1.5 full-size benchmark's meters and its smallest valid dataset, shared (same folder)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_size_cpu import cpu_seconds, peak_rss_mib, write_one_class_dataset  # noqa: E402

# trainer → its option changes. The second method is PEFT's IA3 (PEFT's own modules, through the
# peft-* family): it scales a layer's input or output, so autograd keeps activations only.
# LyCORIS' LoHa and IA3 form each layer's full-size ΔW or weight in fp32 and autograd keeps it: at
# SDXL's size they cost 348 and 49 CPU s, 11.9 and 15.6 GiB (``--second lycoris-loha``).
TRAINERS = {"lora": {}, "peft-ia3": {}}

# SD3.5's T5-XXL (4.76 B parameters, 9.5 GB in bf16) would not fit beside the rest in 14 GiB:
# a one-layer T5 of the same width (d_model 4096, what the transformer reads), CLIP's vocabulary
# (its tokenizer stands in for T5's SentencePiece, which cannot be built offline).
SMALL_T5 = {
    "architectures": ["T5EncoderModel"],
    "model_type": "t5",
    "d_model": 4096,
    "d_kv": 8,
    "num_heads": 2,
    "d_ff": 16,
    "num_layers": 1,
    "num_decoder_layers": 1,
    "feed_forward_proj": "gated-gelu",
    "dense_act_fn": "gelu_new",
    "is_gated_act": True,
    "vocab_size": 49408,
    "layer_norm_epsilon": 1e-6,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "tie_word_embeddings": False,
    "is_encoder_decoder": True,
}

# Qwen/Qwen3-4B config.json: FLUX.2 [klein] 4B's text encoder (it reads layers 9, 18 and 27).
QWEN3_4B = dict(
    hidden_size=2560,
    intermediate_size=9728,
    num_hidden_layers=36,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    vocab_size=151936,
    max_position_embeddings=40960,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)
# Qwen3-4B (4.02 B parameters, 7.5 GiB in bf16) beside klein's 7.2 GiB transformer would not fit
# in 13 GiB with training's own memory. ``Flux2KleinPipeline._get_qwen3_prompt_embeds`` stacks only
# ``hidden_states[9, 18, 27]``: 28 layers keep those three (27 would not: transformers returns the
# last hidden state after the final norm, so index 27 of a 27-layer model is normed, unlike the
# real one's). Qwen3-4B's width (hidden 2560, 32 query / 8 key-value heads of 128, its 151,936-token
# embedding, tied to the output), but 16-wide MLPs, not 9,728, as SMALL_T5's d_ff (28 full MLPs
# are 2.09 B parameters, 3.9 GiB). Its tokenizer: the tiny Qwen2 BPE of ``write_qwen_tokenizer``
# (Qwen's own BPE cannot be built offline; its ids are < 300).
SMALL_QWEN3 = {
    **QWEN3_4B,
    "architectures": ["Qwen3ForCausalLM"],
    "model_type": "qwen3",
    "num_hidden_layers": 28,
    "intermediate_size": 16,
}
# Qwen/Qwen3-4B tokenizer_config.json's length (the pipeline takes 512 tokens of it)
QWEN3_MAX_LENGTH = 131072


def flux2_klein_config_tree(folder: Path) -> Path:
    """black-forest-labs/FLUX.2-klein-4B's pipeline tree (no bundled copy): ``model_index.json``
    and each part's config — the transformer of ``t2ibench.adapters.sizes``
    (``FLUX2_KLEIN_4B_TRANSFORMER``, 3.88 B), the FLUX.2 VAE (``AutoencoderKLFlux2``'s own
    defaults: 32 latent channels, blocks 128/256/512/512), Qwen3-4B, FLUX.1's flow-Euler scheduler
    with the ``exponential`` time shift the klein pipeline's ``mu`` is for."""
    from diffusers import AutoencoderKLFlux2
    from transformers import Qwen3Config

    from t2ibench.adapters.sizes import FLUX2_KLEIN_4B_TRANSFORMER
    from t2ibench.models.fullsize import bundled_config_folder

    folder = Path(folder)
    flux1 = bundled_config_folder("flux.1-dev")
    scheduler = json.loads((flux1 / "scheduler" / "scheduler_config.json").read_text())
    vae = {
        k: p.default
        for k, p in inspect.signature(AutoencoderKLFlux2.__init__).parameters.items()
        if k != "self"
    }
    files = {
        "model_index.json": {
            "_class_name": "Flux2KleinPipeline",
            "is_distilled": True,
            "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
            "text_encoder": ["transformers", "Qwen3ForCausalLM"],
            "tokenizer": ["transformers", "Qwen2TokenizerFast"],
            "transformer": ["diffusers", "Flux2Transformer2DModel"],
            "vae": ["diffusers", "AutoencoderKLFlux2"],
        },
        "scheduler/scheduler_config.json": {**scheduler, "time_shift_type": "exponential"},
        "text_encoder/config.json": Qwen3Config(**QWEN3_4B).to_dict(),
        "tokenizer/tokenizer_config.json": {
            "tokenizer_class": "Qwen2Tokenizer",
            "model_max_length": QWEN3_MAX_LENGTH,
        },
        "transformer/config.json": {
            "_class_name": "Flux2Transformer2DModel",
            **FLUX2_KLEIN_4B_TRANSFORMER,
        },
        "vae/config.json": {"_class_name": "AutoencoderKLFlux2", **vae},
    }
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(content, indent=2, sort_keys=True))
    return folder


#: base → (config tree: a bundled one's name or a function writing one into a folder, parts
#: replaced by smaller ones, the denoiser's published parameter count (the test checks it),
#: trainer option changes for this base)
BASES = {
    "sdxl": ("sdxl-base-1.0", {}, 2_567_463_684, {}),
    "sd3.5-medium": (
        "sd3.5-medium",
        {"text_encoder_3": ("transformers", "T5EncoderModel", SMALL_T5)},
        2_243_171_520,
        {},
    ),
    # klein: 512 Qwen3 tokens through 3072-wide blocks; autograd's activations beside 9.5 GiB of
    # weights would pass the 13 GiB budget, so the blocks recompute them (gradient checkpointing)
    "flux2-klein": (
        flux2_klein_config_tree,
        {"text_encoder": ("transformers", "Qwen3ForCausalLM", SMALL_QWEN3)},
        3_875_544_576,
        {"gradient_checkpointing": True},
    ),
}


def unbuilt_bases() -> list[tuple[str, str, int]]:
    """(base, part, parameters) of the bases not built at full size, counted on the meta device."""
    from t2ibench.models.fullsize import _meta_model, bundled_config_folder

    flux = bundled_config_folder("flux.1-dev") / "transformer"
    model = _meta_model("diffusers", "FluxTransformer2DModel", flux)
    return [("flux.1-dev", "transformer", sum(p.numel() for p in model.parameters()))]


def base_scenario(base: str, root: Path, trainers=TRAINERS) -> dict:
    """Build ``base`` at full size, load, train each trainer 2 steps, re-apply, generate."""
    import numpy as np
    import torch

    from t2ibench.adapters import apply_adapter, load_trainer_config, train_run
    from t2ibench.architectures import architecture_of_pipe
    from t2ibench.models import load_base
    from t2ibench.models.fullsize import bundled_config_folder, make_random_from_config_tree
    from t2ibench.pipeline.generate import GenerationSettings, generate_batch
    from t2ibench.prompts import GenerationJob

    stages: list[tuple[str, float, float, float]] = []

    def timed(name, fn):
        w, c = time.perf_counter(), cpu_seconds()
        print(f"{base}: {name} ...", file=sys.stderr, flush=True)
        out = fn()
        row = (f"{base}: {name}", time.perf_counter() - w, cpu_seconds() - c, peak_rss_mib())
        wall, cpu, rss = row[1:]
        print(f"  wall {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {rss:.0f} MiB", file=sys.stderr)
        stages.append(row)
        return out

    configs, replace, _, base_options = BASES[base]

    def build():
        tree = configs(root / "configs") if callable(configs) else bundled_config_folder(configs)
        return make_random_from_config_tree(
            root / base, tree, dtype=torch.bfloat16, replace=replace
        )

    folder = timed("build (meta) and stream random bf16 weights to a folder", build)
    pipe = timed("load_base (bf16)", lambda: load_base(folder, dtype=torch.bfloat16))
    arch = architecture_of_pipe(pipe)
    dataset = write_one_class_dataset(root / "dataset")
    job = GenerationJob(leaf="x", prompt_type="t", prompt="kiro robot", seed=3, index=0)
    settings = GenerationSettings(
        steps=1, height=64, width=64, guidance_scale=2.0, scheduler=arch.generation.scheduler
    )
    images, trained = {}, {}
    for trainer in trainers:
        options = {**base_options, **trainers[trainer]}
        cfg = load_trainer_config(trainer).replace(
            resolution=64, min_bucket_reso=64, max_bucket_reso=64, bucket_step=64,
            batch_size=2, warmup_steps=0, **options,
        )  # fmt: skip
        how = ", gradient checkpointing" if options.get("gradient_checkpointing") else ""
        trained[trainer] = timed(
            f"train {trainer} 2 steps at 64 px{how}",
            lambda t=trainer, c=cfg: train_run(
                t, dataset, str(folder), root / f"train-{t}", c, epochs=2, progress=False,
                pipe=pipe,
            ),
        )  # fmt: skip

        def apply_and_generate(t=trainer):
            with apply_adapter(pipe, trained[t].checkpoints[-1]):
                return np.asarray(generate_batch(pipe, [job], settings)[0])

        images[trainer] = timed(f"re-apply {trainer} file, 1 image, 1 step", apply_and_generate)
    images["base"] = timed(
        "1 image without adapter", lambda: np.asarray(generate_batch(pipe, [job], settings)[0])
    )
    return {"stages": stages, "pipe": pipe, "folder": folder, "trained": trained, "images": images}


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bases", nargs="+", default=list(BASES), choices=list(BASES))
    ap.add_argument(
        "--second", default="peft-ia3", help="the second method (results file suffixed by it)"
    )
    ap.add_argument("--second-checkpointing", action="store_true", help="gradient checkpointing")
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--results", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    import torch

    rows = []
    for base in args.bases:
        t0, c0 = time.perf_counter(), cpu_seconds()
        with tempfile.TemporaryDirectory(dir=args.work) as tmp:
            second = {"gradient_checkpointing": True} if args.second_checkpointing else {}
            out = base_scenario(base, Path(tmp), {"lora": {}, args.second: second})
            disk = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file()) / 2**30
            arch = out["pipe"]
            den = getattr(arch, "unet", None) or arch.transformer
            sizes = f"denoiser {_params(den) / 1e9:.3f} B parameters, folder {disk:.1f} GiB"
            losses = {t: [round(x, 4) for x in r.losses] for t, r in out["trained"].items()}
            del out["pipe"], arch, den
        rows += out["stages"]
        rows.append(
            (f"**{base} total** ({sizes}; losses {losses})", time.perf_counter() - t0,
             cpu_seconds() - c0, peak_rss_mib())
        )  # fmt: skip
    today = datetime.date.today().isoformat()
    suffix_args = "" if args.second == "peft-ia3" else f" --second {args.second}"
    suffix_args += " --second-checkpointing" if args.second_checkpointing else ""
    suffix = "" if args.second == "peft-ia3" else f"_{args.second}"
    suffix += "_checkpointing" if args.second_checkpointing else ""
    dest = Path(args.results) / f"real_size_bases_cpu_{today}{suffix}.md"
    load = os.getloadavg()
    head = [
        "# Newer bases at full size on CPU (random bf16 weights)",
        "",
        f"Measured by `python benchmarks/real_size_bases_cpu.py --bases B{suffix_args}`"
        " (one base per process: "
        f"peak RSS is per process): {os.cpu_count()} CPUs, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()} — wall time is "
        "inflated on a shared machine, CPU time (user + sys) much less.",
        "",
        "| stage | wall s | CPU s | peak RSS so far MiB |",
        "|---|---:|---:|---:|",
    ]
    old = dest.read_text().splitlines() if dest.is_file() else []

    def row_of(line: str, bases) -> bool:  # a stage row of one of ``bases``
        return any(re.match(rf"\| \**{re.escape(b)}[: ]", line) for b in bases)

    keep = [line for line in old if row_of(line, BASES) and not row_of(line, args.bases)]
    new = [f"| {n} | {w:.1f} | {c:.1f} | {r:.0f} |" for n, w, c, r in rows]
    tail = [
        "",
        f"Last run ({', '.join(args.bases)}) {today}, load average at its end {load[0]:.1f} / "
        f"{load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min).",
        "",
    ]
    unbuilt = [
        "",
        "Not built at full size (parameters counted on the meta device; bf16 = 2 bytes each):",
        "",
        "| base | part | parameters | bf16 GiB |",
        "|---|---|---:|---:|",
        *(f"| {b} | {part} | {n:,} | {2 * n / 2**30:.1f} |" for b, part, n in unbuilt_bases()),
        "",
        "FLUX.1-dev: its transformer alone is 22.2 GiB in bf16, more than the 24 GiB machine can "
        "hold beside anything else (and 13 GiB is the budget).",
        "",
        "Replaced parts (`SMALL_T5`, `SMALL_QWEN3` in the script): SD3.5's T5-XXL (4.76 B, "
        "9.5 GiB) by a one-layer T5 of its width (d_model 4096) over CLIP's vocabulary. FLUX.2 "
        "[klein] 4B's Qwen3-4B (4.02 B, 7.5 GiB; with the 7.2 GiB transformer 14.7 GiB before "
        "training) by 28 layers of its width (hidden 2560, 32 / 8 heads of 128, the 151,936-token "
        "embedding) with 16-wide MLPs: the pipeline stacks hidden states 9, 18 and 27, and the "
        "28th layer keeps index 27 before the final norm (1.13 B parameters); its tokenizer is a "
        "tiny Qwen2 BPE, 512 tokens as the pipeline's default. klein's transformer (3.88 B) and "
        "FLUX.2 VAE are full size; its 2 training steps use gradient checkpointing.",
        "",
        "Second method: PEFT's IA3, which scales a layer's input or output. LyCORIS' LoHa and IA3 "
        "form each layer's full-size ΔW or weight in fp32, which autograd keeps for the backward "
        "pass; on SDXL `lycoris-loha` was killed by the kernel at 11.3 GiB RSS (another process "
        "held 9 GiB); with gradient checkpointing its 2 steps took 348 CPU s and 11.9 GiB and the "
        "re-applied file 15.0 GiB (`_lycoris-loha_checkpointing.md`); `lycoris-ia3` 49 CPU s, "
        "15.6 GiB (`_lycoris-ia3.md`).",
    ]
    text = "\n".join(head + keep + new + (unbuilt if not suffix else []) + tail)
    print(text)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    print(f"written: {dest}", file=sys.stderr)


if __name__ == "__main__":
    main()
