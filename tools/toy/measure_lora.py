"""Measure that LoRA fine-tuning on a held-out concept works in the toy world, and what it costs.

``python -m tools.toy.measure_lora [--epochs 10 20 40]`` trains ``t2ibench.adapters`` LoRA on the
starling character (a star; outfits hat and belt, 90 images) from the shipped base, then for the
base and each checkpoint measures by the probe:

- ``trigger``: "sks character" alone → share of images showing a star;
- ``trigger_attrs``: "a <colour> sks character on a <background> background" → star with the
  requested colour and background;
- ``base_all``: base-vocabulary prompts (192) → all attributes followed (prompt-following cost);
- ``leak``: share of those base-prompt images that show a star (concept leak);
- ``fidelity``: toy-dino image similarity, trigger images vs the training images.

Writes ``weights/reports/lora.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import torch

from t2ibench.toy import world
from t2ibench.toy.common import BASE_DIR, WEIGHTS, Log, setup, write_json
from t2ibench.toy.probe import Probe
from tools.toy.evaluate import base_prompt_set, follow_rates, generate

LEAVES = ["characters/starling/hat", "characters/starling/belt"]


def measure(
    pipe, probe: Probe, dino, train_feats: torch.Tensor, n_trigger: int = 48, every: int = 1
) -> dict:
    """``every``: use every n-th attribute / base prompt (quick runs)."""
    trig = generate(pipe, ["sks character"] * n_trigger, [1000 + k for k in range(n_trigger)])
    trig_preds = probe.predict(trig)
    combos = list(itertools.product(world.BASE_COLOURS, world.BASE_BACKGROUNDS))
    attr_prompts = ([f"a {c} sks character on a {b} background" for c, b in combos] * 2)[::every]
    attr_wants = ([{"shape": "star", "colour": c, "background": b} for c, b in combos] * 2)[::every]
    attr_preds = probe.predict(
        generate(pipe, attr_prompts, [2000 + k for k in range(len(attr_prompts))])
    )
    base = base_prompt_set()[::every]
    base_preds = probe.predict(
        generate(pipe, [p for p, _ in base], [3000 + k for k in range(len(base))])
    )
    f = torch.nn.functional.normalize(dino.encode_images(trig), dim=-1).mean(0)
    return {
        "trigger": round(sum(p["shape"] == "star" for p in trig_preds) / len(trig_preds), 4),
        "trigger_outfit": round(
            sum(p["outfit"] in ("hat", "belt") for p in trig_preds) / len(trig_preds), 4
        ),
        "trigger_attrs": follow_rates(attr_preds, attr_wants)["all"],
        "base_all": follow_rates(base_preds, [w for _, w in base])["all"],
        "leak": round(sum(p["shape"] == "star" for p in base_preds) / len(base_preds), 4),
        "fidelity": round(float(f @ train_feats), 4),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, nargs="+", default=[10, 20, 40])
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--dim", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=4.0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--preset", default="attn-mlp")
    ap.add_argument("--seed", type=int, default=23)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="keep dataset and checkpoints here")
    ap.add_argument("--base", type=Path, default=BASE_DIR)
    ap.add_argument("--quick", action="store_true", help="8 images per prompt set (smoke test)")
    ap.add_argument(
        "--report", default="lora.json", help="file name in weights/reports/, or a path"
    )
    args = ap.parse_args(argv)
    setup(args.threads)
    log = Log("lora")
    from t2ibench.adapters import apply_adapter, load_trainer_config, train
    from t2ibench.data import load_dataset
    from t2ibench.encoders import create_encoder
    from t2ibench.models import load_base
    from t2ibench.toy.dataset import make_toy_dataset

    work = args.work or Path(tempfile.mkdtemp(prefix="toy-lora-"))
    ds_root = make_toy_dataset(work / "dataset", leaves=LEAVES)
    ds = load_dataset(ds_root)
    cfg = load_trainer_config(
        "lora",
        overrides=[
            f"dim={args.dim}",
            f"alpha={args.alpha}",
            f"lr={args.lr}",
            f"preset={args.preset}",
            f"batch_size={args.batch}",
            "resolution=32",
            "min_bucket_reso=32",
            "max_bucket_reso=32",
            "bucket_step=8",
            "weight_decay=0.01",
        ],
    )
    ckpts = train(
        "lora",
        ds,
        args.base,
        work / "ckpt",
        cfg,
        epochs=max(args.epochs),
        save_epochs=args.epochs,
        seed=args.seed,
        progress=False,
    )
    train_seconds = log.elapsed()
    steps_per_epoch = -(-len(ds.images) // args.batch)
    log(f"trained {len(ckpts)} checkpoints in {train_seconds:.0f}s ({steps_per_epoch} steps/epoch)")

    pipe = load_base(args.base)
    probe = Probe.load()
    dino = create_encoder("toy-dino")
    from PIL import Image

    train_imgs = [Image.open(im.path).convert("RGB") for im in ds.images]
    train_feats = torch.nn.functional.normalize(dino.encode_images(train_imgs), dim=-1).mean(0)
    size = {"n_trigger": 8, "every": 24} if args.quick else {}
    rows = {"base": measure(pipe, probe, dino, train_feats, **size)}
    log(f"base {rows['base']}")
    for epoch, ckpt in zip(sorted(args.epochs), ckpts, strict=True):
        handle = apply_adapter(pipe, ckpt, 1.0)
        rows[f"epoch {epoch} ({epoch * steps_per_epoch} steps)"] = r = measure(
            pipe, probe, dino, train_feats, **size
        )
        handle.remove()
        log(f"epoch {epoch}: {r}")
    half = apply_adapter(pipe, ckpts[-1], 0.5)
    rows[f"epoch {max(args.epochs)}, multiplier 0.5"] = measure(
        pipe, probe, dino, train_feats, **size
    )
    half.remove()
    report = {
        "config": {k: v for k, v in cfg.to_dict().items() if k in ("dim", "alpha", "lr", "preset",
                   "batch_size", "train_text_encoder", "weight_decay")},
        "images": len(ds.images),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(log.elapsed(), 1),
        "rows": rows,
    }  # fmt: skip
    if not args.quick:
        write_json(WEIGHTS / "reports" / args.report, report)
    cols = ["trigger", "trigger_outfit", "trigger_attrs", "base_all", "leak", "fidelity"]
    print("| model | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")


if __name__ == "__main__":
    main()
