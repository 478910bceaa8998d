"""The two toy bases side by side: prompt following (probe) and what LoRA does to each.

``python -m benchmarks.toy_flux_base [--bases toy toy-flux] [--guidance 4] [--epochs 50]`` on CPU:

1. prompt following of the shipped UNet base (``toy``) and FLUX-class base (``toy-flux``): all
   192 base-vocabulary prompts, one image each, 25 steps of the base's own sampler (DDIM /
   flow Euler), judged per attribute by the toy probe (``tools.toy.evaluate``);
2. LoRA on the held-out starling character from each base, same recipe (``tools.toy.measure_lora``:
   dim 8, alpha 4, lr 1e-3, attn-mlp + text encoder, batch 16, 90 images, ``--epochs`` epochs of
   6 steps), measured by the probe before and after.

``--follow-only``: step 1 alone for ``toy-flux`` (under a minute), written beside the earlier
measurement to ``results/toy_flux_base_2026-12-07_plugin.md`` — the check that main's FLUX base
plug-in (``t2ibench.bases.flux``, ``pipeline_call_kwargs``) samples the shipped weights as well as
the full run did (the file on record: the toyflux branch's driver vs the plug-in, both 84.4 % all
at CFG 4, on the weights before the style-weighted resumes).

Each base's numbers go to ``results/toy_flux_base_2026-12-07_<base>.json`` (the bases can run
one at a time); the table ``results/toy_flux_base_2026-12-07.md`` is written from every base's
file present.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from t2ibench.toy.common import WEIGHTS

OUT = Path(__file__).parent / "results" / "toy_flux_base_2026-12-07.md"
BASES = {
    "toy": ("toy (UNet, DDIM)", WEIGHTS / "base"),
    "toy-flux": ("toy-flux (FLUX-class, flow Euler)", WEIGHTS / "flux"),
}
ATTRS = ("shape", "colour", "background", "style", "all")
LORA_COLS = ("trigger", "trigger_outfit", "trigger_attrs", "base_all", "leak", "fidelity")


def result_path(base: str) -> Path:
    return OUT.with_name(f"{OUT.stem}_{base}.json")


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def measure(base: str, guidance: float, epochs: int) -> dict:
    from t2ibench.models import load_base
    from t2ibench.toy.probe import Probe
    from tools.toy import measure_lora
    from tools.toy.evaluate import evaluate_base

    folder = BASES[base][1]
    t0 = time.time()
    follow = evaluate_base(load_base(folder), Probe.load(), guidance=guidance)
    follow["seconds"] = round(time.time() - t0, 1)
    print(base, follow, flush=True)
    lora_path = result_path(base).with_suffix(".lora.json")  # measure_lora's own report
    measure_lora.main(["--base", str(folder), "--epochs", str(epochs), "--report", str(lora_path)])
    return {
        "base": base,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "guidance": guidance,
        "epochs": epochs,
        "prompt_following": follow,
        "lora": json.loads(lora_path.read_text()),
    }


def table(results: list[dict]) -> str:
    g, epochs = results[0]["guidance"], results[0]["epochs"]
    lines = [
        "# The toy bases: prompt following and LoRA, UNet vs FLUX-class",
        "",
        f"`python -m benchmarks.toy_flux_base --guidance {g:g} --epochs {epochs}` on "
        f"{platform.machine()} CPU, 2 threads, a machine shared with other sessions (seconds vary "
        "2-4× with load); measured " + ", ".join(f"{r['base']} {r['when']}" for r in results) + ".",
        "",
        f"## Prompt following (192 base-vocabulary prompts, 25 steps, CFG {g:g}, toy probe)",
        "",
        "| base | " + " | ".join(ATTRS) + " | seconds |",
        "|---" * (len(ATTRS) + 2) + "|",
    ]
    for r in results:
        f = r["prompt_following"]
        lines.append(
            f"| {BASES[r['base']][0]} | "
            + " | ".join(pct(f[a]) for a in ATTRS)
            + f" | {f['seconds']:.0f} |"
        )
    lines += [
        "",
        f"## LoRA on the held-out starling character ({epochs} epochs = {epochs * 6} steps, CFG 4)",
        "",
        '`trigger`: "sks character" → a star; `trigger_outfit`: → a hat or belt; `trigger_attrs`: '
        '"a <colour> sks character on a <background> background" → star, colour and background '
        "all right; `base_all`: the 192 base prompts, every attribute right; `leak`: base prompts "
        "showing a star; `fidelity`: toy-dino similarity to the training images.",
        "",
        "| base | model | " + " | ".join(LORA_COLS) + " | train s |",
        "|---" * (len(LORA_COLS) + 3) + "|",
    ]
    for r in results:
        rep = r["lora"]
        for model, row in rep["rows"].items():
            vals = [f"{row[c]:.3f}" if c == "fidelity" else pct(row[c]) for c in LORA_COLS]
            lines.append(
                f"| {BASES[r['base']][0]} | {model} | "
                + " | ".join(vals)
                + f" | {rep['train_seconds']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def follow_only(guidance: float) -> None:
    """toy-flux prompt following through the base plug-in, beside the branch's measurement."""
    from t2ibench.models import load_base
    from t2ibench.toy.probe import Probe
    from tools.toy.evaluate import evaluate_base

    t0 = time.time()
    now = evaluate_base(load_base(str(BASES["toy-flux"][1])), Probe.load(), guidance=guidance)
    seconds = time.time() - t0
    before = json.loads(result_path("toy-flux").read_text())
    rows = [
        ("full run (_toy-flux.json)", before["prompt_following"], before["when"]),
        ("main, bases/flux.py plug-in", now, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())),
    ]
    lines = [
        "# toy-flux prompt following: the FLUX base plug-in vs the toyflux branch's driver",
        "",
        f"`python -m benchmarks.toy_flux_base --follow-only --guidance {guidance:g}` on "
        f"{platform.machine()} CPU, 2 threads, shared machine ({seconds:.0f} s). 192 "
        f"base-vocabulary prompts, one image each, 25 flow Euler steps, true CFG {guidance:g} "
        "against the empty caption, toy probe.",
        "",
        "| path | " + " | ".join(ATTRS) + " | measured |",
        "|---" * (len(ATTRS) + 2) + "|",
    ]
    for name, f, when in rows:
        lines.append(f"| {name} | " + " | ".join(pct(f[a]) for a in ATTRS) + f" | {when} |")
    out = OUT.with_name(f"{OUT.stem}_plugin.md")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(out.read_text())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bases", nargs="*", default=list(BASES), choices=list(BASES))
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--follow-only", action="store_true", help="toy-flux prompt following only")
    args = ap.parse_args(argv)
    from t2ibench.toy.common import setup

    setup(2)
    if args.follow_only:
        follow_only(args.guidance)
        return
    for base in args.bases:
        result_path(base).write_text(
            json.dumps(measure(base, args.guidance, args.epochs), indent=1) + "\n"
        )
    results = [json.loads(result_path(b).read_text()) for b in BASES if result_path(b).is_file()]
    if results:
        OUT.write_text(table(results), encoding="utf-8")
        print(OUT.read_text())


if __name__ == "__main__":
    main()
