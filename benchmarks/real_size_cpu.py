"""The paper profile's code path at full model size on CPU, with random weights: time and memory.

SD1.5's architecture (from the bundled configs) and full-size DINOv2-L/14, OpenCLIP ViT-L/14,
ConvNeXt V2-L and VGG-19, all with random weights saved to folders and loaded back through the real
loaders (``t2ibench.models.fullsize``); a one-class dataset of two 64 px images; then ``t2ibench
run`` twice under one ``--out`` — a LoRA and a LoHa, 2 training steps at 64 px each, a checkpoint
saved and re-applied, one image per prompt type with 2 DDIM steps (CFG 7), every metric the four
encoders feed. The second run reuses the first's base-model images and reference features.

    python benchmarks/real_size_cpu.py --threads 1   # writes results/real_size_cpu_<date>_threads1.md
    python -m pytest -m slow tests/slow                # the same scenario as a test

Wall time on a shared machine is inflated by other processes; CPU time (user + sys) is not.
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

ENCODERS = ("dinov2-l", "clip-l14", "convnextv2-l", "vgg19")


def cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_one_class_dataset(root: Path) -> Path:
    """One character class, two 64 px drawn images with captions: the smallest valid dataset."""
    from PIL import Image, ImageDraw

    (root / "characters" / "kiro").mkdir(parents=True, exist_ok=True)
    (root / "dataset.toml").write_text(
        '[classes."characters/kiro"]\ntrigger = "kiro"\nclass_word = "robot"\n'
        'kind = "character"\nalter_templates = "person"\n'
    )
    for k, (fg, bg) in enumerate([((220, 40, 40), (245, 245, 245)), ((40, 70, 220), (15, 15, 15))]):
        im = Image.new("RGB", (64, 64), bg)
        ImageDraw.Draw(im).rectangle([16 + 4 * k, 12, 48, 56], fill=fg)
        im.save(root / "characters" / "kiro" / f"{k}.png")
        (root / "characters" / "kiro" / f"{k}.txt").write_text(
            f"kiro robot, {'red' if k == 0 else 'blue'} body, simple background"
        )
    return root


def real_size_scenario(root: Path) -> dict:
    """Build, train, generate and evaluate at full model size; returns timings and the results."""
    from t2ibench.metrics import get_metric, list_metrics
    from t2ibench.models.fullsize import make_random_encoder, make_random_sd15
    from t2ibench.pipeline.run import RunOptions, run
    from t2ibench.results import read_results

    stages: list[tuple[str, float, float, float]] = []

    def timed(name, fn):
        w, c = time.perf_counter(), cpu_seconds()
        out = fn()
        stages.append((name, time.perf_counter() - w, cpu_seconds() - c, peak_rss_mib()))
        return out

    models = root / "models"
    base = timed("build SD1.5 (random) and save", lambda: make_random_sd15(models / "sd15"))
    weights = timed(
        "build the 4 encoders (random) and save",
        lambda: {n: make_random_encoder(n, models / n) for n in ENCODERS},
    )
    dataset = write_one_class_dataset(root / "dataset")
    metrics = [m for m in list_metrics() if get_metric(m).encoder in ENCODERS]
    tables = {}
    for trainer in ("lora", "loha"):
        opts = RunOptions(
            layers=[
                (
                    "real_size_cpu",
                    {
                        "base": str(base),
                        "dataset": str(dataset),
                        "trainer": {
                            "trainer": trainer,
                            "resolution": 64,
                            "epochs": 2,
                            "save_epochs": [2],
                            "batch_size": 2,  # 2 images: one step an epoch, so 2 steps in all
                            "min_bucket_reso": 64,
                            "max_bucket_reso": 64,
                            "bucket_step": 64,
                            "warmup_steps": 0,
                        },
                        "generate": {"images_per_leaf": 1, "steps": 2},
                        "evaluate": {
                            "encoders": [f"{n}@{weights[n]}" for n in ENCODERS],
                            "metrics": metrics,
                        },
                    },
                )
            ],
            out=str(root / "out"),
            progress=False,
        )
        run_dir = timed(f"t2ibench run --trainer {trainer}", lambda o=opts: run(o))
        tables[trainer] = read_results(run_dir / "results")
        tables[trainer].attrs["run_dir"] = str(run_dir)
    return {"stages": stages, "results": tables, "metrics": metrics, "base": base}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--results", default=str(Path(__file__).parent / "results"))
    ap.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        out = real_size_scenario(Path(tmp))
        disk = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file()) / 2**30
    total = time.perf_counter() - t0
    today = datetime.date.today().isoformat()
    load = os.getloadavg()
    lines = [
        "# Real-size path on CPU (random weights, full model sizes)",
        "",
        f"Measured {today} by `python benchmarks/real_size_cpu.py`: {os.cpu_count()} CPUs, torch "
        f"{torch.__version__} with {torch.get_num_threads()} threads, Python "
        f"{platform.python_version()}; load average at the end {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f} (1 / 5 / 15 min) — wall time is inflated on a shared machine, CPU time "
        "(user + sys) much less.",
        "",
        "| stage | wall s | CPU s | peak RSS so far MiB |",
        "|---|---:|---:|---:|",
    ]
    for name, wall, cpu, rss in out["stages"]:
        lines.append(f"| {name} | {wall:.1f} | {cpu:.1f} | {rss:.0f} |")
    lines += [
        f"| **total** | **{total:.1f}** | **{cpu_seconds():.1f}** | **{peak_rss_mib():.0f}** |",
        "",
        f"Disk used by the models and runs: {disk:.1f} GiB. Results rows: "
        + ", ".join(f"{k} {len(v)}" for k, v in out["results"].items())
        + f"; metrics: {', '.join(out['metrics'])}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    dest = Path(args.results) / f"real_size_cpu_{today}_threads{torch.get_num_threads()}.md"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    print(f"written: {dest}", file=sys.stderr)


if __name__ == "__main__":
    main()
