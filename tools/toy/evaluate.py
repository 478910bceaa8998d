"""Ground-truth measurements of a toy model: prompt following and concept learning, by the probe.

``python -m tools.toy.evaluate`` measures the shipped base: every base-vocabulary combination
(4 shapes × 6 colours × 4 backgrounds × 2 styles = 192 prompts), one image each, probe agreement
per attribute and on all attributes together. The functions are reused by the LoRA measurement.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from t2ibench.toy import world
from t2ibench.toy.common import BASE_DIR, WEIGHTS, Log, setup, write_json
from t2ibench.toy.probe import Probe

GUIDANCE = 4.0
STEPS = 25


def base_prompt_set() -> list[tuple[str, dict[str, str]]]:
    """(prompt, requested attributes) for every base-vocabulary combination."""
    out = []
    for shape, colour, bg, style in itertools.product(
        world.BASE_SHAPES, world.BASE_COLOURS, world.BASE_BACKGROUNDS, world.BASE_STYLES
    ):
        want = {"shape": shape, "colour": colour, "background": bg, "style": style}
        out.append((world.base_prompt(shape, colour, bg, style), want))
    return out


@torch.no_grad()
def generate(
    pipe: Any,
    prompts: Sequence[str],
    seeds: Sequence[int],
    guidance: float = GUIDANCE,
    steps: int = STEPS,
    batch: int = 64,
) -> list[Image.Image]:
    """One 32 px image per (prompt, seed), the base's own sampler (UNet: DDIM; FLUX-class: flow
    Euler, true CFG), seeded per image (batch-independent); the guidance argument in the name its
    base plug-in gives it (``pipeline_call_kwargs``), as the generate stage does."""
    from t2ibench.architectures import pipeline_call_kwargs

    images: list[Image.Image] = []
    for i in range(0, len(prompts), batch):
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds[i : i + batch]]
        kwargs = {
            "prompt": list(prompts[i : i + batch]),
            "height": world.SIZE,
            "width": world.SIZE,
            "num_inference_steps": steps,
            "guidance_scale": guidance,
            "generator": gens,
        }
        out = pipe(**pipeline_call_kwargs(pipe, kwargs))
        images.extend(out.images)
    return images


def follow_rates(
    preds: Sequence[dict[str, str]], wants: Sequence[dict[str, str]]
) -> dict[str, float]:
    """Per requested attribute, the share of images where the probe agrees; plus ``all``."""
    rates: dict[str, float] = {}
    for attr in world.ATTRIBUTES:
        pairs = [(p[attr], w[attr]) for p, w in zip(preds, wants, strict=True) if attr in w]
        if pairs:
            rates[attr] = round(sum(a == b for a, b in pairs) / len(pairs), 4)
    rates["all"] = round(
        sum(all(p[k] == v for k, v in w.items()) for p, w in zip(preds, wants, strict=True))
        / len(wants),
        4,
    )
    return rates


def evaluate_base(pipe: Any, probe: Probe, seed: int = 1000, guidance: float = GUIDANCE) -> dict:
    prompts, wants = zip(*base_prompt_set(), strict=True)
    images = generate(pipe, prompts, [seed + k for k in range(len(prompts))], guidance=guidance)
    preds = probe.predict(images)
    return {"prompts": len(prompts), "guidance": guidance, **follow_rates(preds, wants)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, default=BASE_DIR)
    ap.add_argument("--guidance", type=float, nargs="+", default=[GUIDANCE])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--grid", type=Path, default=None, help="save a PNG grid of the images")
    ap.add_argument("--report", default="base_eval.json", help="file name in weights/reports/")
    args = ap.parse_args(argv)
    setup(args.threads)
    log = Log("evaluate")
    from t2ibench.models import load_base

    pipe = load_base(args.base)
    probe = Probe.load()
    report = {}
    for g in args.guidance:
        report[f"guidance_{g:g}"] = r = evaluate_base(pipe, probe, guidance=g)
        log(f"guidance {g}: {r}")
    report["seconds"] = round(log.elapsed(), 1)
    write_json(WEIGHTS / "reports" / args.report, report)
    if args.grid:
        prompts = [p for p, _ in base_prompt_set()]
        imgs = generate(pipe, prompts, [1000 + k for k in range(len(prompts))])
        grid = Image.new("RGB", (16 * 34, (len(imgs) + 15) // 16 * 34), (255, 0, 255))
        for k, im in enumerate(imgs):
            grid.paste(im, ((k % 16) * 34, (k // 16) * 34))
        grid.save(args.grid)


if __name__ == "__main__":
    main()
