"""Import the CSVs written by the paper's public evaluation code (LyCORIS-evaluation, MIT).

Input: a wide table with a ``Folder`` column ``<checkpoint>[/<category>[/<class>[/<subclass>]]]``
and one column per measurement, e.g. ``Image Similarity (dinov2-l-fb-padding) (in)``. Output: the
tidy t2ibench results table (:mod:`t2ibench.results`), one row per folder leaf and measurement.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from t2ibench.errors import ResultsError

DEFAULT_FINAL_EPOCH = 50

#: Evaluation-code prompt suffixes → t2ibench prompt types. "base model" is the style loss against
#: the base model's images, which the protocol measures on ``style`` prompts.
PROMPT_MAP = {
    "in": "train",
    "out": "alter",
    "trigger": "trigger",
    "style": "style",
    "base model": "style",
}
ENCODER_MAP = {
    "dinov2-l-fb": "dinov2-l",
    "dinov2-l": "dinov2-l",
    "clip-L-14": "clip-l14",
    "clip-l-14": "clip-l14",
    "convnextv2-l": "convnextv2-l",
    "vgg19": "vgg19",
    "vgg19-gram": "vgg19",
}
RESIZE_MAP = {"padding": "letterbox", "crop": "center-crop", "resize": "stretch"}
#: Encoders that accept rectangular input: their "resize" mode kept the aspect ratio (paper,
#: appendix D.5: "scale" is used for ConvNeXt V2 and VGG-19, "stretch" for DINOv2 and CLIP).
SCALE_ENCODERS = {"convnextv2-l", "vgg19"}
#: Columns of the config mapping renamed to the schema's names (the rest are only lower-cased).
CONFIG_COLUMN_RENAMES = {"algo": "algorithm"}
#: The mapping calls native fine-tuning "full" (all weights); the schema calls it "native".
ALGORITHM_ALIASES = {"full": "native"}
NUMERIC_CONFIG_COLUMNS = ("lr", "dim", "alpha", "factor")
#: Configs the authors' analysis notebooks leave out (``keywords_to_exclude = ['1027', '1007',
#: '1017']`` in results/notebooks/shap and xy_plot): the learning rates outside the paper's three
#: levels (LoRA 5e-5, LoHa and LoKr 5e-3). ``exclude_configs=PAPER_EXCLUDED_CONFIGS`` gives the
#: paper's config set.
PAPER_EXCLUDED_CONFIGS: tuple[str, ...] = ("exp-1007", "exp-1017", "exp-1027")

_ENC = "|".join(sorted(map(re.escape, ENCODER_MAP), key=len, reverse=True))
_RES = "|".join(RESIZE_MAP)
_PT = "|".join(map(re.escape, PROMPT_MAP))
_COLUMN_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"^Image Similarity \((?P<enc>{_ENC})-(?P<res>{_RES})\) \((?P<pt>{_PT})\)$"),
     "image_similarity"),
    (re.compile(
        rf"^Squared Centroid Distance \((?P<enc>{_ENC})-(?P<res>{_RES})\) \((?P<pt>{_PT})\)$"),
     "centroid_distance"),
    (re.compile(rf"^Text Similarity \((?P<pt>{_PT})\)$"), "text_alignment"),
    (re.compile(rf"^Vendi \((?P<enc>{_ENC})\) \((?P<pt>{_PT})\)$"), "vendi"),
    (re.compile(rf"^Style Loss \((?P<pt>{_PT})\)$"), "style_loss"),
    (re.compile(rf"^FD \((?P<enc>{_ENC})-(?P<res>{_RES})\) \((?P<pt>{_PT})\)$"),
     "frechet_distance"),
]  # fmt: skip
# <prefix>-exp-<n>-<name>-<run>[-<epoch>]; the prefix (sampler, base model) stays in `checkpoint`.
_CHECKPOINT = re.compile(
    r"^(?:.*?-)?(?P<config>exp-\d+(?:-[A-Za-z0-9.]+)*?)-(?P<run>[a-z])(?:-(?P<epoch>\d+))?$"
)


@dataclass(frozen=True)
class ColumnSpec:
    """What one evaluation-code column measures, in schema names."""

    column: str
    metric: str
    prompt_type: str
    encoder: str
    resize: str


def parse_column(column: str) -> ColumnSpec | None:
    """Map an evaluation-code column name to a :class:`ColumnSpec`; None if not recognised."""
    for pattern, metric in _COLUMN_PATTERNS:
        m = pattern.match(column.strip())
        if not m:
            continue
        groups = m.groupdict()
        prompt_type = PROMPT_MAP[groups["pt"]]
        if metric == "text_alignment":
            # OpenCLIP ViT-L/14 on the square generated images (encoded with "resize").
            encoder, resize = "clip-l14", "stretch"
        elif metric == "style_loss":
            encoder, resize = "vgg19", "scale"
        else:
            encoder = ENCODER_MAP[groups["enc"]]
            mode = groups.get("res") or "resize"  # Vendi: generated squares, encoded with "resize"
            resize = "scale" if mode == "resize" and encoder in SCALE_ENCODERS else RESIZE_MAP[mode]
        return ColumnSpec(column, metric, prompt_type, encoder, resize)
    return None


@dataclass(frozen=True)
class CheckpointName:
    config: str
    seed: str
    epoch: int


def parse_checkpoint(name: str, final_epoch: int = DEFAULT_FINAL_EPOCH) -> CheckpointName | None:
    """``ddim-v1-5-pruned-emaonly-exp-1001-sd15-lora8a4-a-000010`` → (``exp-1001-sd15-lora8a4``,
    ``a``, 10); without an epoch suffix the checkpoint is the final one (``final_epoch``)."""
    m = _CHECKPOINT.match(name)
    if not m:
        return None
    epoch = int(m["epoch"]) if m["epoch"] is not None else final_epoch
    return CheckpointName(m["config"], m["run"], epoch)


def read_config_mapping(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``config_mapping.csv`` (``Config,Algo,Preset,Lr,...``): one row per config, columns
    lower-cased (``algo`` → ``algorithm``), ``N/A`` → missing, native's ``full`` → ``native``."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise ResultsError(f"{path}: cannot read config mapping ({exc})") from exc
    raw.columns = [c.strip().lower() for c in raw.columns]
    if "config" not in raw.columns:
        raise ResultsError(f"{path}: config mapping has no 'Config' column")
    raw = raw.rename(columns=CONFIG_COLUMN_RENAMES)
    reserved = {"checkpoint", "seed", "epoch", "category", "class", "leaf", "prompt_type",
                "metric", "encoder", "resize", "value"}  # fmt: skip
    clash = sorted(reserved & set(raw.columns))
    if clash:
        raise ResultsError(f"{path}: config mapping column(s) {clash} clash with results columns")
    out = raw.apply(lambda s: s.str.strip())
    out = out.replace({"N/A": np.nan, "n/a": np.nan, "NA": np.nan, "": np.nan})
    for col in out.columns:
        if col in NUMERIC_CONFIG_COLUMNS:
            num = pd.to_numeric(out[col], errors="coerce")
            bad = num.isna() & out[col].notna()
            if bad.any():
                raise ResultsError(
                    f"{path}: column {col!r} is not numeric for config(s) "
                    f"{out.loc[bad, 'config'].tolist()[:5]}"
                )
            out[col] = num
        elif col != "config":
            out[col] = out[col].str.lower()
    if "algorithm" in out.columns:
        out["algorithm"] = out["algorithm"].replace(ALGORITHM_ALIASES)
    dup = out["config"].duplicated()
    if dup.any():
        raise ResultsError(f"{path}: config(s) listed twice: {out.loc[dup, 'config'].tolist()}")
    return out


def _excluded(configs: pd.Series, exclude: Iterable[str]) -> pd.Series:
    """Whether each config is named in ``exclude`` (whole name, or its ``exp-<n>`` number)."""
    names = {str(e) for e in exclude}
    if not names:
        return pd.Series(False, index=configs.index)
    number = configs.astype(str).str.extract(r"^(exp-\d+)", expand=False)
    return configs.astype(str).isin(names) | number.isin(names)


def import_lycoris_eval(
    metrics_csv: str | os.PathLike,
    config_mapping: str | os.PathLike | pd.DataFrame | None = None,
    *,
    final_epoch: int = DEFAULT_FINAL_EPOCH,
    keep_means: bool = False,
    exclude_configs: Iterable[str] = (),
) -> pd.DataFrame:
    """Convert one evaluation-code CSV into results rows (not yet written; see
    :func:`t2ibench.results.write_results`).

    Folder rows that have descendants in the file are folder means and are dropped unless
    ``keep_means`` (then their ``leaf`` is the folder path). Configs named in ``exclude_configs``
    (a full name, or its ``exp-<n>`` prefix; :data:`PAPER_EXCLUDED_CONFIGS` for the paper's set)
    are left out. Unknown columns, unparseable folders, and configs missing from
    ``config_mapping`` raise :class:`ResultsError` naming them.
    """
    path = Path(metrics_csv)
    try:
        raw = pd.read_csv(path, dtype={"Folder": str})
    except Exception as exc:
        raise ResultsError(f"{path}: cannot read evaluation CSV ({exc})") from exc
    if "Folder" not in raw.columns:
        raise ResultsError(f"{path}: no 'Folder' column (columns: {list(raw.columns)[:8]})")
    specs, unknown = [], []
    for col in raw.columns:
        if col == "Folder":
            continue
        spec = parse_column(col)
        (specs.append(spec) if spec else unknown.append(col))
    if unknown:
        raise ResultsError(f"{path}: unknown metric column(s) {unknown}")
    if not specs:
        raise ResultsError(f"{path}: no metric columns")
    seen: dict[tuple, str] = {}
    for s in specs:
        k = (s.metric, s.prompt_type, s.encoder, s.resize)
        if k in seen:
            raise ResultsError(
                f"{path}: columns {seen[k]!r} and {s.column!r} measure the same thing"
            )
        seen[k] = s.column

    folders = raw["Folder"].fillna("").astype(str).str.strip().str.strip("/")
    dup = folders.duplicated()
    if dup.any():
        raise ResultsError(f"{path}: folder(s) listed twice: {folders[dup].tolist()[:5]}")
    parts = folders.str.split("/")
    bad = folders[(folders == "") | (parts.str.len() > 4) | parts.map(lambda p: "" in p)]
    if len(bad):
        raise ResultsError(
            f"{path}: unparseable Folder value(s) {bad.tolist()[:5]}; expected "
            "<checkpoint>[/<category>[/<class>[/<subclass>]]]"
        )
    ckpt_names = parts.str[0]
    parsed = {n: parse_checkpoint(n, final_epoch) for n in ckpt_names.unique()}
    unparsed = [n for n, p in parsed.items() if p is None]
    if unparsed:
        raise ResultsError(
            f"{path}: cannot read config, seed run and epoch from checkpoint name(s) "
            f"{unparsed[:5]}; expected '<prefix>-exp-<n>-<name>-<run letter>[-<epoch>]'"
        )

    # A folder is a leaf when no other folder lies below it.
    folder_set = set(folders)
    has_child = {f: False for f in folders}
    for f in folder_set:
        p = f.rsplit("/", 1)
        while len(p) == 2:
            if p[0] in has_child:
                has_child[p[0]] = True
            p = p[0].rsplit("/", 1)
    keep = folders.map(lambda f: keep_means or not has_child[f])

    meta = pd.DataFrame(
        {
            "checkpoint": ckpt_names,
            "config": ckpt_names.map(lambda n: parsed[n].config),
            "seed": ckpt_names.map(lambda n: parsed[n].seed),
            "epoch": ckpt_names.map(lambda n: parsed[n].epoch),
            "category": parts.map(lambda p: p[1] if len(p) > 1 else "all"),
            "class": parts.map(lambda p: p[2] if len(p) > 2 else (p[1] if len(p) > 1 else "all")),
            "leaf": parts.map(lambda p: "/".join(p[1:]) if len(p) > 1 else "all"),
        }
    )[keep.to_numpy()]
    values = raw.loc[keep.to_numpy(), [s.column for s in specs]]
    bad_values = []
    for s in specs:
        num = pd.to_numeric(values[s.column], errors="coerce")
        if (num.isna() & values[s.column].notna()).any():
            bad_values.append(s.column)
        values[s.column] = num
    if bad_values:
        raise ResultsError(f"{path}: non-numeric values in column(s) {bad_values}")

    frames = []
    for s in specs:
        block = meta.copy()
        block["prompt_type"] = s.prompt_type
        block["metric"] = s.metric
        block["encoder"] = s.encoder
        block["resize"] = s.resize
        block["value"] = values[s.column].to_numpy(dtype="float64")
        frames.append(block)
    out = pd.concat(frames, ignore_index=True)
    drop = _excluded(out["config"], exclude_configs)
    if drop.any():
        out = out[~drop].reset_index(drop=True)
        if out.empty:
            raise ResultsError(f"{path}: every config is excluded ({list(exclude_configs)})")

    if config_mapping is not None:
        mapping = (
            config_mapping
            if isinstance(config_mapping, pd.DataFrame)
            else read_config_mapping(config_mapping)
        )
        missing = sorted(set(out["config"]) - set(mapping["config"]))
        if missing:
            src = config_mapping if not isinstance(config_mapping, pd.DataFrame) else "mapping"
            raise ResultsError(f"{src}: no row for config(s) {missing[:5]} used in {path}")
        out = out.merge(mapping, on="config", how="left", validate="many_to_one")

    from t2ibench.results import validate_results

    return validate_results(out, path)
