"""In-process scoring: ``t2ibench.evaluate(images, references=..., prompts=..., metric_profile=...)``.

For notebooks and other papers' code: give images (a folder, paths or PIL images), get a tidy
DataFrame — one row per measure of the metric profile (see :mod:`t2ibench.metric_profiles`). No run
folder, no manifest, no CLI, and no diffusers (nothing is generated here). The numbers come from
the same evaluation engine as ``t2ibench evaluate`` (:mod:`t2ibench.evaluation`), with the same
image decoder, the same metrics (plug-ins included) and the same text cleaning, so the same files
give the same values through either door.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from PIL import Image

from t2ibench.errors import T2IBenchError
from t2ibench.metric_profiles import DEFAULT_METRIC_PROFILE, MetricProfile, get_metric_profile

ImageLike = str | Path | Image.Image
Images = ImageLike | Sequence[ImageLike]
# Files a folder may hold beside its images without being refused (what operating systems add).
_OS_FILES = {"thumbs.db", "desktop.ini", "icon\r"}
_COLUMNS = [
    "metric_profile", "measure", "metric", "encoder", "encoder_weights", "resize", "size",
    "resize_size", "pairing", "scale", "clamp", "value", "n_images", "n_pairs",
]  # fmt: skip


def _image_list(items: Images | None, what: str) -> list[Path | Image.Image]:
    """``items`` as a list: a folder (its image files, sorted by name), one path or image, or a
    sequence of them; files must exist. Errors are one line naming ``what``."""
    if items is None:
        return []
    if isinstance(items, (str, Path, Image.Image)):
        items = [items]
    elif not isinstance(items, Sequence) or isinstance(items, bytes):
        raise T2IBenchError(
            f"{what}: expected a folder, an image path, a PIL image or a list of them, got "
            f"{type(items).__name__}"
        )
    out: list[Path | Image.Image] = []
    for item in items:
        if isinstance(item, Image.Image):
            out.append(item)
            continue
        if not isinstance(item, (str, Path)):
            raise T2IBenchError(
                f"{what}: expected image paths or PIL images, got {type(item).__name__}"
            )
        path = Path(item).expanduser()
        if path.is_dir():
            out.extend(_folder_images(path, what))
        elif path.is_file():
            out.append(path)
        else:
            raise T2IBenchError(f"{what}: cannot read image {path} (no such file or folder)")
    return out


def _folder_images(folder: Path, what: str) -> list[Path]:
    suffixes = {s.lower() for s in Image.registered_extensions()}
    found = []
    for p in sorted(folder.iterdir(), key=lambda q: q.name):
        if p.name.startswith(".") or p.name.lower() in _OS_FILES:
            continue  # hidden and operating-system files (.DS_Store, Thumbs.db)
        if not p.is_file() or p.suffix.lower() not in suffixes:
            raise T2IBenchError(f"{what}: {p} is not an image file (folder {folder})")
        found.append(p)
    if not found:
        raise T2IBenchError(f"{what}: no image files in {folder}")
    return found


def default_identifier(profile: MetricProfile) -> str | None:
    """The identifier ``t2ibench evaluate --metric-profile NAME`` removes by default: that of the
    layout of the same name (dreambooth: "sks", customconcept101: "<new1>"), else none."""
    from t2ibench.layouts import LAYOUTS

    return LAYOUTS.get(profile.name).default_identifier if profile.name in LAYOUTS else None


def _encoders(profile, plans_for, weights, tiny, device, batch_size, prompt_type):
    """The profile's encoders (the default profile: the paper's encoders that feed a metric of
    ``prompt_type``)."""
    from t2ibench.encoders import create_encoder, get_encoder_spec
    from t2ibench.metric_profiles.compile import profile_encoders
    from t2ibench.runconfig import PAPER_ENCODERS

    if not profile.defaults:
        over = [f"{n}@{w}" for n, w in weights.items()]
        encs = profile_encoders(profile, over, device, all_tiny=tiny)
        for enc in encs:
            enc.batch_size = batch_size
        return encs
    names = list(dict.fromkeys([*PAPER_ENCODERS, *weights]))
    plans = plans_for(None)
    out = []
    for name in names:
        spec = get_encoder_spec(name)
        probe = type("Probe", (), {"name": name, "kind": spec.kind})()
        if not any(p.spec.applies_to(prompt_type) and p.feeds(probe) for p in plans):
            continue  # e.g. VGG-19 Grams: style loss scores style prompts only
        w = weights.get(name)
        out.append(create_encoder(name, weights=None if tiny and w is None else w,
                                  tiny=tiny and w is None, device=device, batch_size=batch_size))  # fmt: skip
    return out


def evaluate(
    images: Images,
    references: Images | None = None,
    prompts: Sequence[str] | None = None,
    *,
    metric_profile: str | MetricProfile = DEFAULT_METRIC_PROFILE,
    base_images: Images | None = None,
    identifier: str | Sequence[str] | None = None,
    weights: Mapping[str, str] | None = None,
    tiny: bool = False,
    device: str = "cpu",
    batch_size: int = 32,
    prompt_type: str = "alter",
) -> pd.DataFrame:
    """Score ``images`` as ``metric_profile`` defines its numbers; one row per measure.

    ``images``, ``references``, ``base_images``: a folder (its image files), one path or PIL image,
    or a list of them. ``references``: real images (all-pairs measures use them as a set; paired
    measures need one per image, in order). ``prompts``: one per image (text measures).
    ``base_images``: the base model's image for the same prompt and seed, one per image (drift).
    ``identifier``: the rare token(s) that ``remove-identifier`` text cleaning drops; default as
    ``t2ibench evaluate`` (dreambooth: "sks", customconcept101: "<new1>"; pass "" for none).
    ``weights``: encoder name → weights (hub id or local path) instead of the profile's; ``tiny``:
    random-weight tiny encoders (tests, demos). ``prompt_type``: the prompt type of the rows
    (``alter``, as the peer layouts: Vendi is then averaged per prompt).
    Columns: metric_profile, measure, metric, encoder, encoder_weights, resize, size, resize_size,
    pairing, scale, clamp, value, n_images, n_pairs.
    """
    from t2ibench.evaluation import evaluate_in_memory
    from t2ibench.metric_profiles.compile import profile_plans

    profile = get_metric_profile(metric_profile)
    gen = _image_list(images, "images")
    if not gen:
        raise T2IBenchError("images: nothing to score")
    refs = _image_list(references, "references")
    bases = _image_list(base_images, "base_images")
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts) if prompts is not None else None
    if prompts is not None and len(prompts) != len(gen):
        raise T2IBenchError(f"prompts: {len(prompts)} prompts for {len(gen)} images")
    if bases and len(bases) != len(gen):
        raise T2IBenchError(f"base_images: {len(bases)} base images for {len(gen)} images")
    if identifier is None:
        identifier = default_identifier(profile)
    given = {"references": bool(refs), "prompts": prompts is not None, "base images": bool(bases)}
    weights = dict(weights or {})

    def plans_for(encoders):
        plans = profile_plans(profile, encoders)
        if profile.defaults:  # every metric whose inputs were given
            return [
                p for p in plans if all(given.get(v.needs, True) for v in p.providers().values())
            ]
        for p in plans:
            _check_given(p, given, refs, gen)
        return plans

    if not plans_for(None):
        raise T2IBenchError(
            "nothing to compute: give references=..., prompts=... or base_images=..."
        )
    encoders = _encoders(profile, plans_for, weights, tiny, device, batch_size, prompt_type)
    plans = plans_for(None if profile.defaults else encoders)
    df = evaluate_in_memory(
        gen, encoders, plans, references=refs, prompts=prompts, base_images=bases,
        identifier=identifier, prompt_type=prompt_type,
    )  # fmt: skip
    return _tidy(df, profile, plans, len(refs), {e.name: e.preprocess.size for e in encoders})


def _check_given(plan, given: dict[str, bool], refs: list, gen: list) -> None:
    label = plan.columns.get("measure", plan.name)
    for provider in plan.providers().values():
        if provider.needs and not given[provider.needs]:
            arg = provider.needs.replace(" ", "_")
            hint = " (one per image)" if provider.per_image and arg != "prompts" else ""
            raise T2IBenchError(f"measure {label}: needs {arg}=...{hint}")
        if provider.name == "paired_ref" and len(refs) != len(gen):
            raise T2IBenchError(
                f"measure {label}: pairing each image with its own reference needs one "
                f"reference per image, got {len(refs)} for {len(gen)} images"
            )


def _tidy(df: pd.DataFrame, profile: MetricProfile, plans, n_refs: int, sizes) -> pd.DataFrame:
    """The engine's rows as the API's tidy frame, in the profile's measure order."""
    if df.empty:
        return pd.DataFrame(columns=_COLUMNS)
    measures = {m.label: m for m in profile.measures}
    out = []
    for row in df.to_dict("records"):
        m = measures.get(row.get("measure"))
        n = int(row["n_images"])
        pairing = m.pairing if m else _default_pairing(row["metric"], plans)
        enc_size = (m.size if m else None) or sizes.get(row["encoder"]) or ""  # HPSv3: none
        resize_size = (m.resize_size if m else None) or enc_size
        out.append({
            "metric_profile": profile.name,
            "measure": m.label if m else row["metric"],
            "metric": row["metric"],
            "encoder": row["encoder"],
            "encoder_weights": row["encoder_weights"],
            "resize": row["resize"],
            "size": enc_size,
            "resize_size": resize_size,
            "pairing": pairing,
            "scale": m.scale if m else 1.0,
            "clamp": m.clamp if m else "none",
            "value": row["value"],
            "n_images": n,
            "n_pairs": n * n_refs if pairing == "all-pairs" else n,
        })  # fmt: skip
    frame = pd.DataFrame(out, columns=_COLUMNS)
    if measures:
        order = {label: i for i, label in enumerate(measures)}
        frame = frame.sort_values("measure", key=lambda s: s.map(order), kind="stable")
    return frame.reset_index(drop=True)


def _default_pairing(metric: str, plans) -> str:
    """How the default profile paired a metric: by its inputs' providers."""
    plan = next(p for p in plans if p.name == metric)
    needs = {v.needs for v in plan.providers().values()}
    if "references" in needs:
        return "all-pairs"
    if "prompts" in needs:
        return "prompt"
    return "base-paired" if "base images" in needs else "none"


__all__ = ["default_identifier", "evaluate"]
