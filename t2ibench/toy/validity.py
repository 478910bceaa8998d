"""Validity of the metrics on the toy world: each metric against the probe's ground truth.

The paper could only compare metrics with each other; in the toy world the probe
(:mod:`t2ibench.toy.probe`) says what every generated image actually shows, so each metric can be
checked against what it claims to measure:

- fidelity (image similarity, centroid distance, Fréchet distance) vs the **concept rate** on train
  and trigger prompts: the share of images that show the leaf's concept;
- text alignment vs the **attribute-follow rate** on alter and style prompts: the share of images
  whose probed attributes match the base-vocabulary attributes the prompt names;
- Vendi vs the number of **distinct probe outcomes** among the images;
- style loss vs the **base-change rate**: 1 − the share of seed-paired base and tuned images whose
  probed background, colour and style agree.

``probe_outcomes(sweep)`` runs the probe once over every image of every run (cached by image hash in
``<sweep>/probe_cache.parquet``), ``validity_table(sweep)`` joins the results rows and computes the
Spearman and Pearson correlations, ``write_validity_report(sweep, out)`` writes the CSV, Markdown
and self-contained HTML report.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from t2ibench.errors import ResultsError
from t2ibench.fsutil import atomic_write, atomic_write_with, file_sha256
from t2ibench.toy import world

log = logging.getLogger(__name__)

CACHE_NAME = "probe_cache.parquet"
ATTRS = tuple(world.ATTRIBUTES)  # shape, colour, background, style, outfit
PRESERVED = ("background", "colour", "style")  # what a base → tuned pair should keep
GROUP_KEYS = ("run", "checkpoint", "leaf", "prompt_type")


@dataclass(frozen=True)
class Pair:
    """A metric and the ground truth it should track, on the prompt types where that makes sense."""

    metric: str
    truth: str
    prompt_types: tuple[str, ...] | None  # None: every prompt type the metric has rows for
    sign: int  # expected sign of the correlation
    why: str


PAIRS: tuple[Pair, ...] = (
    Pair("image_similarity", "concept_rate", ("train", "trigger"), +1,
         "closer to the dataset images ↔ the concept is shown more often"),
    Pair("centroid_distance", "concept_rate", ("train", "trigger"), -1,
         "a distance: smaller when the concept is shown more often"),
    Pair("frechet_distance", "concept_rate", ("train", "trigger"), -1,
         "a distance: smaller when the concept is shown more often"),
    Pair("text_alignment", "attribute_follow_rate", ("alter", "style"), +1,
         "images match their prompt ↔ the probed attributes are the ones the prompt names"),
    Pair("vendi", "distinct_outcomes", None, +1,
         "more diverse features ↔ more distinct things shown"),
    Pair("style_loss", "base_change_rate", None, +1,
         "further from the base model's image ↔ its background, colour or style changed"),
)  # fmt: skip

_VOCAB = {
    **{w: "shape" for w in world.BASE_SHAPES},
    **{w: "colour" for w in world.BASE_COLOURS},
    **{w: "background" for w in world.BASE_BACKGROUNDS},
    **{w: "style" for w in world.BASE_STYLES},
}


# --- prompts and outcomes ---------------------------------------------------------------------------
def requested_attributes(prompt: str) -> dict[str, str]:
    """The base-vocabulary attributes a prompt names, matched by whole word.

    An attribute named with two different values ("a red circle and a blue square") is ambiguous
    and left out. Held-out words (triggers, "beach", "pastel") are not base vocabulary.
    """
    found: dict[str, set[str]] = {}
    for word in re.findall(r"[a-z]+", prompt.lower()):
        attr = _VOCAB.get(word)
        if attr:
            found.setdefault(attr, set()).add(word)
    return {a: next(iter(v)) for a, v in found.items() if len(v) == 1}


def outcome_tuple(pred: dict[str, str]) -> tuple[str, ...]:
    """The probe outcome as a tuple; colour means nothing on an empty scene, so it is blanked."""
    empty = pred.get("shape") == "none"
    return tuple("" if (a == "colour" and empty) else str(pred[a]) for a in ATTRS)


def shows_concept(pred: dict[str, str], leaf: str) -> bool:
    """Whether a probe prediction shows the leaf's held-out concept (every attribute it fixes)."""
    return all(pred.get(k) == v for k, v in world.concept(leaf).expected().items())


# --- finding the images -------------------------------------------------------------------------------
def _runs_root(sweep_dir: Path) -> Path:
    """``<sweep>/runs`` for a sweep; a ``t2ibench run --out`` folder holds the runs itself."""
    return sweep_dir / "runs" if (sweep_dir / "runs").is_dir() else sweep_dir


def _run_dirs(sweep_dir: Path) -> list[Path]:
    root = _runs_root(sweep_dir)
    if not root.is_dir():
        raise ResultsError(f"{sweep_dir}: no such sweep folder")
    runs = sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "run.json").is_file()
    )
    if not runs:
        raise ResultsError(f"{root}: no run folders (subfolders with a run.json)")
    return runs


def _base_images_dir(run_dir: Path) -> Path | None:
    """The run's base-model images: run.json ``base_images`` (looked up under this sweep's
    ``.base-images`` first, so a moved sweep folder still works), else an old-style images/base."""
    try:
        record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{run_dir / 'run.json'}: not JSON ({exc.msg})") from None
    spec = record.get("base_images")
    candidates = []
    if spec:
        candidates += [run_dir.parent / ".base-images" / Path(spec).name, Path(spec)]
    candidates.append(run_dir / "images" / "base")
    for c in candidates:
        if (c / "manifest.jsonl").is_file():
            return c
    return None


def _image_table(sweep_dir: Path) -> pd.DataFrame:
    """One row per generated image (runs' checkpoints and the base images they share)."""
    from t2ibench.pipeline.manifest import MANIFEST_NAME, read_manifest

    rows: list[dict] = []
    seen_base: dict[Path, str] = {}
    for run_dir in _run_dirs(sweep_dir):
        folders = []
        images = run_dir / "images"
        if images.is_dir():
            folders = [
                (run_dir.name, d)
                for d in sorted(images.iterdir())
                if d.name != "base" and (d / MANIFEST_NAME).is_file()
            ]
        base = _base_images_dir(run_dir)
        base_label = ""
        if base is not None:
            key = base.resolve()
            if key not in seen_base:
                seen_base[key] = f"base:{base.name}"
                folders.append((seen_base[key], base))
            base_label = seen_base[key]
        for run_name, folder in folders:
            for r in read_manifest(folder / MANIFEST_NAME):
                path = r.path(folder)
                if not path.is_file():
                    raise ResultsError(f"{folder / MANIFEST_NAME}: file {r.file!r} is missing")
                rows.append(
                    {
                        "run": run_name,
                        "base_of": base_label if not run_name.startswith("base:") else "",
                        "checkpoint": r.checkpoint,
                        "leaf": r.leaf,
                        "prompt_type": r.prompt_type,
                        "prompt": r.prompt,
                        "gen_seed": r.seed,
                        "index": -1 if r.index is None else r.index,
                        "variant": r.variant,
                        "sha256": r.sha256 or file_sha256(path),
                        "path": str(path),
                    }
                )
    if not rows:
        raise ResultsError(f"{sweep_dir}: no generated images (no images/*/manifest.jsonl)")
    return pd.DataFrame(rows)


# --- the probe, cached ------------------------------------------------------------------------------
def _probe_id(folder: Path) -> str:
    h = hashlib.sha256()
    for name in ("config.json", "probe.safetensors"):
        h.update((folder / name).read_bytes())
    return h.hexdigest()[:16]


def probe_images(
    paths: Sequence[str], hashes: Sequence[str], cache: Path, probe_dir: Path | None = None,
    batch: int = 512,
) -> pd.DataFrame:  # fmt: skip
    """Probe predictions (columns sha256 + attributes) for the given images, cached by hash.

    Only images whose hash is not in ``cache`` (for the same probe weights) are read and probed, on
    the CPU in fixed batches, so a rerun costs nothing and the output does not depend on the batch.
    """
    import torch
    from PIL import Image

    from t2ibench.toy.probe import PROBE_DIR, Probe

    probe_dir = Path(probe_dir or PROBE_DIR)
    if not (probe_dir / "probe.safetensors").is_file():
        raise ResultsError(f"{probe_dir}: the toy probe's weights are not installed")
    pid = _probe_id(probe_dir)
    known = pd.DataFrame(columns=["sha256", "probe", *ATTRS])
    if cache.is_file():
        try:
            known = pd.read_parquet(cache)
        except Exception as exc:  # a damaged cache is only lost time: recompute
            log.warning("%s: unreadable probe cache (%s); recomputing", cache, exc)
        else:
            known = known[known["probe"] == pid]
    have = set(known["sha256"])
    todo = {h: p for p, h in zip(paths, hashes, strict=True) if h not in have}
    if todo:
        probe = Probe.load(probe_dir)
        probe.net.to("cpu")
        torch.manual_seed(0)
        items = sorted(todo.items())
        new = []
        for i in range(0, len(items), batch):
            chunk = items[i : i + batch]
            images = []
            for _, p in chunk:
                with Image.open(p) as im:
                    images.append(im.convert("RGB"))
            for (h, _), pred in zip(chunk, probe.predict(images), strict=True):
                new.append({"sha256": h, "probe": pid, **pred})
        known = pd.concat([known, pd.DataFrame(new)], ignore_index=True)
        known = known.drop_duplicates("sha256", keep="last").sort_values("sha256")
        atomic_write_with(cache, lambda t: known.to_parquet(t, index=False))
    return known.drop(columns="probe").reset_index(drop=True)


def _vendi_groups_by_prompt(prompt_type: str) -> bool:
    """Whether the Vendi metric is computed per prompt then averaged on this prompt type (alter);
    the distinct-outcome count mirrors it so both count the same thing."""
    from t2ibench.metrics import get_metric

    try:
        return get_metric("vendi").group_by.get(prompt_type) == "prompt"
    except Exception:
        return False


def _entropy(counts: Sequence[int]) -> float:
    p = np.asarray(counts, float)
    p = p / p.sum()
    return float(-(p * np.log(p)).sum())


def _group_outcomes(g: pd.DataFrame, by_prompt: bool) -> dict[str, float]:
    n = len(g)
    concept = g["concept"].to_numpy(bool)
    req = g["requested"].to_numpy(bool)
    out: dict[str, float] = {
        "n_images": n,
        "concept_rate": float(concept.mean()),
        "n_attribute_prompts": int(req.sum()),
        "attribute_follow_rate": float(g["follows"][req].mean()) if req.any() else math.nan,
    }
    parts = [sub for _, sub in g.groupby("prompt", sort=True)] if by_prompt else [g]
    distinct = [len(set(sub["outcome"])) for sub in parts]
    counts = [list(Counter(sub["outcome"]).values()) for sub in parts]
    out["distinct_outcomes"] = float(np.mean(distinct))
    out["distinct_outcomes_norm"] = float(
        np.mean([d / len(s) for d, s in zip(distinct, parts, strict=True)])
    )
    out["outcome_entropy"] = float(np.mean([_entropy(c) for c in counts]))
    agnostic = g["prompt_type"].iat[0] == "concept-agnostic"
    out["leak_rate"] = float(concept.mean()) if agnostic else math.nan
    paired = g["base_agree"].notna().to_numpy()
    if paired.any():
        agree = g["base_agree"][paired].astype(float).mean()
        out["base_agreement_rate"] = float(agree)
        out["base_change_rate"] = float(1.0 - agree)
    else:
        out["base_agreement_rate"] = out["base_change_rate"] = math.nan
    return out


def probe_outcomes(
    sweep_dir: str | os.PathLike, probe_dir: str | os.PathLike | None = None
) -> pd.DataFrame:
    """Ground truth per (run, checkpoint, leaf, prompt type) of a sweep, from the probe.

    Columns: ``run`` (run folder; ``base:<hash>`` for the shared base-model images), ``checkpoint``,
    ``leaf``, ``prompt_type``, ``n_images``, ``concept_rate``, ``n_attribute_prompts``,
    ``attribute_follow_rate`` (NaN when no prompt names a base-vocabulary attribute),
    ``distinct_outcomes`` / ``distinct_outcomes_norm`` (÷ images) / ``outcome_entropy`` (nats;
    per prompt then averaged where Vendi is), ``leak_rate`` (concept-agnostic prompts only),
    ``base_agreement_rate`` / ``base_change_rate`` (seed-paired base images; tuned runs only).
    """
    sweep_dir = Path(sweep_dir)
    images = _image_table(sweep_dir)
    toy = images["leaf"].isin({c.leaf for c in world.CONCEPTS})
    if not toy.all():
        # A run on another dataset (e.g. the tiny demo) has no ground truth: leave it out.
        other = images.loc[~toy, "run"].unique()
        log.warning("not toy-world leaves, left out: images of %s", ", ".join(sorted(other)))
        images = images[toy].reset_index(drop=True)
        if images.empty:
            raise ResultsError(
                f"{sweep_dir}: no image shows a toy-world leaf; the validity report needs a "
                "sweep on the toy dataset"
            )
    preds = probe_images(
        images["path"].tolist(),
        images["sha256"].tolist(),
        sweep_dir / CACHE_NAME,
        Path(probe_dir) if probe_dir else None,
    )
    df = images.merge(preds, on="sha256", how="left", validate="many_to_one")
    pred_dicts = df[list(ATTRS)].to_dict("records")
    df["outcome"] = [outcome_tuple(p) for p in pred_dicts]
    df["concept"] = [shows_concept(p, leaf) for p, leaf in zip(pred_dicts, df["leaf"], strict=True)]
    wants = [requested_attributes(p) for p in df["prompt"]]
    df["requested"] = [bool(w) for w in wants]
    df["follows"] = [
        all(p[k] == v for k, v in w.items()) for p, w in zip(pred_dicts, wants, strict=True)
    ]

    # Seed-paired base image of every tuned image: same leaf, prompt type, index and seed.
    pair_key = ["leaf", "prompt_type", "index", "gen_seed"]
    base = df[df["run"].str.startswith("base:")]
    base_preserved = {
        (row["run"], *(row[k] for k in pair_key)): tuple(row["outcome"][ATTRS.index(a)] for a in PRESERVED)
        for _, row in base.iterrows()
    }  # fmt: skip
    df["base_agree"] = [
        None
        if (ref := base_preserved.get((row["base_of"], *(row[k] for k in pair_key)))) is None
        else ref == tuple(row["outcome"][ATTRS.index(a)] for a in PRESERVED)
        for _, row in df.iterrows()
    ]
    rows = []
    for key, g in df.groupby(list(GROUP_KEYS), sort=True):
        rows.append(
            {
                **dict(zip(GROUP_KEYS, key, strict=True)),
                **_group_outcomes(g, _vendi_groups_by_prompt(key[3])),
            }
        )
    out = pd.DataFrame(rows)
    out["n_images"] = out["n_images"].astype(int)
    return out


# --- correlations -----------------------------------------------------------------------------------
def _run_results(sweep_dir: Path) -> pd.DataFrame:
    """Every run's results rows, tagged with the run folder (checkpoint names repeat across runs)."""
    from t2ibench.results import read_results

    frames = []
    for run_dir in _run_dirs(sweep_dir):
        if not (run_dir / "results").is_dir():
            log.warning("%s: no results yet; left out", run_dir)
            continue
        try:
            df = read_results(run_dir / "results")
        except ResultsError as exc:
            log.warning("%s; left out", exc)
            continue
        frames.append(df.assign(run=run_dir.name))
    if not frames:
        raise ResultsError(f"{sweep_dir}: no run has a results table yet")
    return pd.concat(frames, ignore_index=True)


def correlate(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """Spearman and Pearson correlation with p-values; NaN when n < 3 or either side is constant."""
    from scipy import stats

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    out = {"n": int(len(x)), "spearman": math.nan, "spearman_p": math.nan}
    out.update(pearson=math.nan, pearson_p=math.nan)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    s = stats.spearmanr(x, y)
    p = stats.pearsonr(x, y)
    out.update(
        spearman=float(s.statistic),
        spearman_p=float(s.pvalue),
        pearson=float(p.statistic),
        pearson_p=float(p.pvalue),
    )
    return out


def joined_table(
    sweep_dir: str | os.PathLike,
    outcomes: pd.DataFrame | None = None,
    probe_dir: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Results rows of the paired metrics with the ground truth of their group (one row each)."""
    sweep_dir = Path(sweep_dir)
    if outcomes is None:
        outcomes = probe_outcomes(sweep_dir, probe_dir)
    results = _run_results(sweep_dir)
    results = results[results["metric"].isin({p.metric for p in PAIRS})]
    truth_cols = sorted({p.truth for p in PAIRS})
    return results.merge(
        outcomes[[*GROUP_KEYS, "n_images", *truth_cols]],
        on=list(GROUP_KEYS),
        how="inner",
        validate="many_to_one",
    )


def validity_table(
    sweep_dir: str | os.PathLike,
    outcomes: pd.DataFrame | None = None,
    probe_dir: str | os.PathLike | None = None,
    joined: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per metric × encoder × resize × prompt type: the correlation of the metric's value with its
    ground truth over every (run, checkpoint, leaf) of the sweep, the expected sign and whether the
    observed Spearman sign agrees (``holds``: None when the correlation is undefined)."""
    if joined is None:
        joined = joined_table(sweep_dir, outcomes, probe_dir)
    rows = []
    for pair in PAIRS:
        sub = joined[joined["metric"] == pair.metric]
        if pair.prompt_types is not None:
            sub = sub[sub["prompt_type"].isin(pair.prompt_types)]
        for (encoder, resize, prompt_type), g in sub.groupby(
            ["encoder", "resize", "prompt_type"], sort=True, dropna=False
        ):
            c = correlate(g["value"], g[pair.truth])
            note = ""
            if c["n"] == 0:
                note = "no ground truth for these prompts"
            elif math.isnan(c["spearman"]):
                const = [n for n, col in (("metric", "value"), ("truth", pair.truth))
                         if g[col].nunique(dropna=True) < 2]  # fmt: skip
                note = f"{' and '.join(const)} constant" if const else "fewer than 3 points"
            holds = None if math.isnan(c["spearman"]) else bool(np.sign(c["spearman"]) == pair.sign)
            rows.append(
                {
                    "metric": pair.metric,
                    "encoder": encoder,
                    "resize": resize,
                    "prompt_type": prompt_type,
                    "ground_truth": pair.truth,
                    "expected_sign": "+" if pair.sign > 0 else "-",
                    **c,
                    "holds": holds,
                    "significant": None if holds is None else bool(c["spearman_p"] < 0.05),
                    "note": note,
                }
            )
    cols = ["metric", "encoder", "resize", "prompt_type", "ground_truth", "expected_sign", "n",
            "spearman", "spearman_p", "pearson", "pearson_p", "holds", "significant", "note"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


# --- the report -------------------------------------------------------------------------------------
def _write_text(path: Path, text: str) -> None:
    atomic_write(path, text)


def _fmt(v: object) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, float | np.floating):
        return f"{v:.3g}" if abs(v) < 1e-3 and v != 0 else f"{v:.3f}".rstrip("0").rstrip(".")
    return str(v)


def _html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>"
        for r in df.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_table(df: pd.DataFrame) -> str:
    from t2ibench.analysis.report import md_escape

    lines = ["| " + " | ".join(md_escape(str(c)) for c in df.columns) + " |"]
    lines.append("|" + "---|" * len(df.columns))
    for r in df.itertuples(index=False):
        lines.append("| " + " | ".join(md_escape(_fmt(v)) for v in r) + " |")
    return "\n".join(lines)


def _summary(outcomes: pd.DataFrame, joined: pd.DataFrame) -> pd.DataFrame:
    """Mean ground truth per epoch × prompt type (epoch 0 = the base model)."""
    epochs = joined[["run", "checkpoint", "epoch"]].drop_duplicates(["run", "checkpoint"])
    df = outcomes.merge(epochs, on=["run", "checkpoint"], how="left")
    df.loc[df["run"].str.startswith("base:"), "epoch"] = 0
    df = df[df["epoch"].notna()]
    cols = ["concept_rate", "attribute_follow_rate", "leak_rate", "base_change_rate",
            "distinct_outcomes"]  # fmt: skip
    out = df.groupby(["epoch", "prompt_type"], sort=True)[cols].mean().reset_index()
    out["epoch"] = out["epoch"].astype(int)
    return out


def _scatter(g: pd.DataFrame, row: pd.Series) -> str:
    """A small scatter plot (metric vs ground truth, one colour per category) as base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.4, 2.6), dpi=90)
    for cat, sub in g.groupby("category", sort=True):
        ax.scatter(sub[row["ground_truth"]], sub["value"], s=12, alpha=0.7, label=str(cat))
    ax.set_xlabel(str(row["ground_truth"]), fontsize=8)
    ax.set_ylabel(str(row["metric"]), fontsize=8)
    ax.set_title(
        f"{row['encoder']} · {row['prompt_type']} · ρ={_fmt(row['spearman']) or 'n/a'}", fontsize=8
    )
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


_CSS = (
    "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
    "font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}"
    "th{background:#eee}figure{display:inline-block;margin:4px}.ok{color:#070}.bad{color:#b00}"
)


def write_validity_report(
    sweep_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    probe_dir: str | os.PathLike | None = None,
    plots: bool = True,
) -> Path:
    """Write ``validity.csv``, ``probe_outcomes.csv``, ``validity.md`` and ``validity.html`` (one
    self-contained file) to ``out_dir`` (default ``<sweep>/validity``); returns ``out_dir``."""
    sweep_dir = Path(sweep_dir)
    out = Path(out_dir) if out_dir is not None else sweep_dir / "validity"
    outcomes = probe_outcomes(sweep_dir, probe_dir)
    joined = joined_table(sweep_dir, outcomes)
    table = validity_table(sweep_dir, joined=joined)
    summary = _summary(outcomes, joined)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_with(out / "validity.csv", lambda t: table.to_csv(t, index=False))
    atomic_write_with(out / "probe_outcomes.csv", lambda t: outcomes.to_csv(t, index=False))

    defined = table[table["holds"].notna()]
    n_hold = int(defined["holds"].astype(bool).sum())
    headline = (
        f"{n_hold} of {len(defined)} defined metric/ground-truth correlations have the expected "
        f"sign ({len(table) - len(defined)} undefined: too few points or a constant side); "
        f"{len(outcomes)} groups of images probed over {outcomes['run'].nunique()} folders."
    )
    intro = (
        "Each metric value (one per run, checkpoint, leaf and prompt type) against the probe's "
        "ground truth for the same images, pooled over the sweep. Spearman ρ is the headline "
        "(metrics and rates are not on linear scales); 'holds' = ρ has the expected sign."
    )
    pairs = [f"{p.metric} vs {p.truth} ({'+' if p.sign > 0 else '-'}): {p.why}" for p in PAIRS]

    md = ["# Metric validity on the toy world", "", intro, "", headline, ""]
    md += [f"- {line}" for line in pairs]
    md += ["", "## Correlations", "", _md_table(table), ""]
    md += ["## Ground truth by epoch (0 = base model)", "", _md_table(summary), ""]
    _write_text(out / "validity.md", "\n".join(md))

    figures = []
    if plots:
        for _, row in table[table["n"] >= 3].iterrows():
            g = joined[
                (joined["metric"] == row["metric"])
                & (joined["encoder"] == row["encoder"])
                & (joined["resize"] == row["resize"])
                & (joined["prompt_type"] == row["prompt_type"])
            ].dropna(subset=["value", row["ground_truth"]])
            cap = (
                f"{row['metric']} ({row['encoder']}, {row['prompt_type']}) vs {row['ground_truth']}"
            )
            figures.append(
                f'<figure><img alt="{html.escape(cap)}" src="data:image/png;base64,'
                f'{_scatter(g, row)}"><figcaption>{html.escape(cap)}</figcaption></figure>'
            )
    page = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Metric validity on the toy world</title><style>{_CSS}</style></head><body>",
        "<h1>Metric validity on the toy world</h1>",
        f"<p>{html.escape(intro)}</p><p><b>{html.escape(headline)}</b></p><ul>",
        *[f"<li>{html.escape(line)}</li>" for line in pairs],
        "</ul><h2>Correlations</h2>",
        _html_table(table),
        "<h2>Ground truth by epoch (0 = base model)</h2>",
        _html_table(summary),
    ]
    if figures:
        page += ["<h2>Scatter plots</h2>", *figures]
    page.append("</body></html>")
    _write_text(out / "validity.html", "\n".join(page))
    return out
