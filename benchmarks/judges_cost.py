"""Per-image CPU cost of each open judge at full size (random weights, 1 thread).

Each judge's full architecture is built from its config with random weights (PickScore: CLIP
ViT-H/14 as in PickScore_v1's config.json; HPSv2.1: open_clip's ViT-H-14; DreamSim: its three
ViT-B/16 in the release's folder layout, loaded by its loader; ImageReward: BLIP ViT-L/16 + BERT-base
with cross-attention; VQAScore: CLIP-FlanT5-XL, bfloat16 weights on CPU; HPSv3: Qwen2-VL-7B, GPU
only), in memory, wrapped
in the judge's own class and preprocessing, then it scores ``--images`` 512×512 images with a
prompt each after one warm-up image. CPU time (user + sys) is what a judge costs; wall time on a
shared machine is inflated by other processes.

    OMP_NUM_THREADS=1 python benchmarks/judges_cost.py   # writes results/judges_cost_<date>.md
    python benchmarks/judges_cost.py --judges hpsv2 --images 2
    python benchmarks/judges_cost.py --device cuda --images 20   # GPU rows (benchmarks/gpu.sh)
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

#: Measured on CPU by default. HPSv3 and VQAScore's Qwen2-VL back-end (Qwen2-VL-7B: 8.3 B
#: parameters, 33 GB in float32, 17 GB in bfloat16) do not fit beside other work in this machine's
#: 24 GB: GPU rows only (gpu.sh).
JUDGES = ("pickscore", "hpsv2", "dreamsim", "imagereward", "vqascore")
GPU_JUDGES = (*JUDGES, "hpsv3", "vqascore-qwen2vl")
#: Peak memory (GiB) of each judge's CPU process, measured: a judge starts only when that much
#: (+ 1) is available, so a shared machine's other work is not pushed out of memory.
PEAK_GIB = {"pickscore": 5, "hpsv2": 5, "dreamsim": 4, "imagereward": 3, "vqascore": 8}
NOTES = {
    "vqascore": "CLIP-FlanT5-XL + CLIP ViT-L/14-336, bfloat16 weights (the reference's precision)",
    "dreamsim": "per image embedded; references once per concept",
}


def wait_for_memory(gib: float, timeout_s: float = 900) -> bool:
    """Wait until ``gib`` GiB are available (Linux MemAvailable); False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with open("/proc/meminfo") as f:
                info = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f)}
            available = info["MemAvailable"] / 2**20
        except OSError:
            return True  # not Linux: no way to tell, go ahead
        if available >= gib:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(10)


def cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_full(judge: str, root: Path, device: str = "cpu", dtype: str | None = None):
    """Judge ``judge`` at full size with random weights, built in memory (a save and reload would
    double the peak memory of a 1-billion-parameter model on a shared machine; the loaders are
    tested on the same architectures at small size)."""
    import open_clip
    import torch
    from transformers import CLIPConfig, CLIPModel

    from t2ibench.encoders.base import tiny_folder
    from t2ibench.metrics.judges import hpsv2, pickscore

    if judge == "pickscore":
        # The processor and tokenizer files are those of the tiny folder (same LAION settings).
        folder = tiny_folder("pickscore", pickscore.TINY_CONFIG, pickscore.build_random, root)
        processor = pickscore.load_processor(str(folder))
        model = CLIPModel(CLIPConfig(**pickscore.FULL_CONFIG)).eval()
        ip = processor.image_processor
        prep = pickscore.JudgePreprocess(
            lambda im: ip(images=im.convert("RGB"), return_tensors="pt")["pixel_values"][0], "clip"
        )
        return pickscore.PickScoreJudge(judge, model, "random", prep, device, dtype, batch_size=1,
                                        processor=processor)  # fmt: skip
    if judge == "hpsv2":
        cfg = open_clip.get_model_config(hpsv2.ARCH)
        model = open_clip.CLIP(**cfg).eval()
        prep = hpsv2.JudgePreprocess(hpsv2.preprocess_image, "hpsv2")
        tokenizer = open_clip.SimpleTokenizer(context_length=77)
        return hpsv2.Hpsv2Judge(
            judge, model, "random", prep, device, dtype, batch_size=1, tokenizer=tokenizer
        )
    if judge == "dreamsim":
        # The release's layout at full size (3 × ViT-B/16), through the judge's own loader.
        from t2ibench.encoders import create_encoder
        from t2ibench.metrics.judges import dreamsim

        folder = root / "dreamsim"
        folder.mkdir()
        dreamsim.build_random(folder, {"embed_dim": 768, "num_heads": 12, "mlp_ratio": 4})
        return create_encoder("dreamsim", weights=str(folder), device=device, dtype=dtype,
                              batch_size=1)  # fmt: skip
    if judge == "imagereward":
        # BLIP ViT-L/16 + the BERT of med_config.json with cross-attention; the tiny folder's
        # tokenizer (the vocabulary size does not change the per-image cost).
        from t2ibench.metrics.judges import imagereward

        folder = tiny_folder("imagereward", imagereward.TINY_CONFIG, imagereward.build_random,
                             root)  # fmt: skip
        model = imagereward.ImageRewardModel(imagereward.VIT_LARGE, imagereward.MED_LARGE).eval()
        prep = imagereward.JudgePreprocess(imagereward.preprocess_image, "imagereward")
        tokenizer = imagereward.make_tokenizer(folder / imagereward.VOCAB)
        return imagereward.ImageRewardJudge(
            judge, model, "random", prep, device, dtype, batch_size=1, tokenizer=tokenizer
        )
    if judge == "vqascore":
        # CLIP-FlanT5-XL (3.4 B parameters) + CLIP ViT-L/14-336, the tiny folder's tokenizer (the
        # question's length in tokens is close to FlanT5's). On CPU the weights are bfloat16, the
        # reference's own precision (t2v_metrics mm_utils.py line 228): float32 would need 14 GB.
        from t2ibench.metrics.judges import vqascore

        tiny_cfg = {"t5": vqascore.TINY_T5, "vision": vqascore.TINY_VISION}
        folder = tiny_folder("vqascore", tiny_cfg, vqascore.build_random, root)
        _, tokenizer, _ = vqascore.load_model(str(folder))
        previous = torch.get_default_dtype()
        if device == "cpu":
            torch.set_default_dtype(torch.bfloat16)
        try:
            model = vqascore.ClipT5(vqascore.FULL_T5_XL, vqascore.FULL_VISION).eval()
        finally:
            torch.set_default_dtype(previous)
        prep = vqascore.JudgePreprocess(vqascore.preprocess_image, "vqascore", size=336)
        return vqascore.VqaScoreJudge(judge, model, "random", prep, device, dtype, batch_size=1,
                                      tokenizer=tokenizer)  # fmt: skip
    if judge in ("hpsv3", "vqascore-qwen2vl"):
        # Qwen2-VL-7B-Instruct's architecture (+ the reward head); the tiny folder's processor (a
        # BPE trained on HPSv3's instruction: about 900 of its text tokens where Qwen2's gives
        # ~600; VQAScore's question is short either way).
        from transformers import Qwen2VLConfig

        from t2ibench.metrics.judges import hpsv3

        tiny_cfg = {"text": hpsv3.TINY_TEXT, "vision": hpsv3.TINY_VISION,
                    "template": hpsv3.TINY_CHAT_TEMPLATE}  # fmt: skip
        folder = tiny_folder("hpsv3", tiny_cfg, hpsv3.build_random, root)
        processor = hpsv3.load_processor(folder)
        ids = {t: processor.tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>",)}
        config = Qwen2VLConfig(
            text_config={"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                         "num_attention_heads": 28, "num_key_value_heads": 4,
                         "vocab_size": 152065, "rope_scaling": {"type": "mrope",
                         "mrope_section": [16, 24, 24]}, "bos_token_id": None},
            vision_config={"depth": 32, "embed_dim": 1280, "hidden_size": 3584, "num_heads": 16,
                           "mlp_ratio": 4, "patch_size": 14, "spatial_merge_size": 2,
                           "temporal_patch_size": 2},
            image_token_id=ids["<|image_pad|>"],
        )  # fmt: skip
        if judge == "vqascore-qwen2vl":
            from transformers import Qwen2VLForConditionalGeneration

            from t2ibench.metrics.judges import vqascore_qwen2vl as vq2

            model = Qwen2VLForConditionalGeneration(config).eval()
            model.generation_config.repetition_penalty = 1.05  # Qwen2-VL-7B-Instruct's
            prep = vq2.JudgePreprocess(vq2.fetch_image, "qwen")
            return vq2.VqaScoreQwen2VLJudge(judge, model, "random", prep, device, dtype,
                                            batch_size=1, processor=processor)  # fmt: skip
        model = hpsv3.Hpsv3Model(config).eval()
        prep = hpsv3.JudgePreprocess(hpsv3.fetch_image, "hpsv3")
        return hpsv3.Hpsv3Judge(judge, model, "random", prep, device, dtype, batch_size=1,
                                processor=processor)  # fmt: skip
    raise SystemExit(f"unknown judge {judge}")


def _score(enc, image, prompt):
    """One image: a prompt-reading judge scores it with the prompt, DreamSim embeds it (its
    distance to the references is then a dot product per reference)."""
    if getattr(enc, "needs_prompt", False):
        return enc.score([image], [prompt])
    return enc.encode_images([image])


def measure(judge: str, n_images: int, root: Path, device: str, dtype: str | None) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    enc = build_full(judge, root, device, dtype)
    build = time.perf_counter() - t0
    params = sum(p.numel() for p in enc.model.parameters())
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8))
              for _ in range(n_images + 1)]  # fmt: skip
    prompt = "a photo of a dog wearing a red hat on the beach"
    _score(enc, images[0], prompt)  # warm-up
    sync()
    t0, c0 = time.perf_counter(), cpu_seconds()
    for im in images[1:]:
        _score(enc, im, prompt)
    sync()
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return {
        "judge": judge,
        "params_m": params / 1e6,
        "build_wall": build,
        "wall_per_image": wall / n_images,
        "cpu_per_image": cpu / n_images,
        "peak_rss": peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--judges", nargs="+", default=None,
                        help=f"default: {' '.join(JUDGES)} (cuda: + hpsv3)")  # fmt: skip
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU rows")
    parser.add_argument("--dtype", default=None, help="CUDA autocast dtype (fp16, bf16)")
    parser.add_argument("--json", action="store_true", help="print one judge's row as JSON only")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--name", default="", help="file name part: judges_cost_<name>_<date>.md")
    args = parser.parse_args()
    args.judges = args.judges or list(JUDGES if args.device == "cpu" else GPU_JUDGES)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.device == "cpu":
        torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="t2ibench-judges-") as tmp:
        for judge in args.judges:  # one process per judge keeps each peak RSS its own
            if not args.json:  # the table writer: each judge in a child process
                import json
                import subprocess

                need = PEAK_GIB.get(judge, 0) + 1
                if args.device == "cpu" and not wait_for_memory(need):
                    rows.append({"judge": judge, "error": f"less than {need} GiB free for 15 min"})
                    print(rows[-1], flush=True)
                    continue
                out = subprocess.run(
                    [sys.executable, __file__, "--judges", judge, "--images", str(args.images),
                     "--device", args.device, *(["--dtype", args.dtype] if args.dtype else []),
                     "--json"], capture_output=True, text=True,
                )  # fmt: skip
                if out.returncode == 0:
                    rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                else:  # a row that says why, not a table that silently lacks the judge
                    why = (
                        f"killed by signal {-out.returncode} (out of memory?)"
                        if out.returncode < 0
                        else out.stderr.strip().splitlines()[-1]
                    )
                    rows.append({"judge": judge, "error": why})  # fmt: skip
            else:
                rows.append(measure(judge, args.images, Path(tmp), args.device, args.dtype))
            print(rows[-1], flush=True)
    if args.json:
        import json

        print(json.dumps(rows[0]))
        return
    date = datetime.date.today().isoformat()
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [
        f"# Open judges: per-image cost on {args.device} (full size, random weights"
        + (", 1 thread)" if args.device == "cpu" else f", autocast {args.dtype or 'default'})"),
        "",
        f"Measured {date} by `python benchmarks/judges_cost.py {' '.join(sys.argv[1:])}`: "
        f"{os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} thread, "
        f"Python {platform.python_version()}; load average at the end {load} (1 / 5 / 15 min): "
        "wall time is inflated on a shared machine, CPU time (user + sys) much less. One 512×512 "
        "image and one prompt per call (batch 1), after one warm-up call; the judge's own "
        "preprocessing included.",
        "",
        "| judge | parameters (M) | CPU s / image | wall s / image | peak RSS MiB (own process) "
        "| notes |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        note = NOTES.get(r["judge"], "") if args.device == "cpu" else ""
        if "error" in r:
            lines.append(f"| {r['judge']} | — | — | — | — | not measured: {r['error']} |")
            continue
        lines.append(
            f"| {r['judge']} | {r['params_m']:.0f} | {r['cpu_per_image']:.2f} | "
            f"{r['wall_per_image']:.2f} | {r['peak_rss']:.0f} | {note} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    where = "" if args.device == "cpu" else f"{args.device.split(':')[0]}_"
    name = f"{args.name}_" if args.name else ""
    path = args.out / f"judges_cost_{where}{name}{date}.md"
    path.write_text("\n".join(lines) + "\n")
    print(path)


if __name__ == "__main__":
    sys.exit(main())
