"""The results table: one tidy row per (checkpoint, leaf, prompt type, metric, encoder, resize).

Every producer (``t2ibench run``, the evaluation-code importer) writes through :func:`write_results`
or :func:`append_results`, and every consumer (``t2ibench analyze``) reads through
:func:`read_results`, so the schema is checked in one place. A results folder holds
``results.parquet`` (the authoritative copy) and ``results.csv`` (the same rows, for humans and
spreadsheets); both are written atomically. Columns beyond :data:`REQUIRED_COLUMNS` (the checkpoint's
hyperparameters: ``algorithm``, ``preset``, ``lr``, ``dim``, ``alpha``, ``factor``, ``caption``, or
anything a user adds) are kept as they are.

The table describes itself: each metric's criterion, direction (``higher_is_better``), range,
headline encoder and report uses, and the prompt types and encoders it names, as the registries held
them when it was written (:func:`describe_table`), go into the parquet file's schema metadata (key
``t2ibench``) and a sidecar ``results.csv.meta.json`` beside the CSV. A reader where a plug-in is no
longer installed still accepts the names the file describes (:func:`read_results`), and
:func:`absent_plugins` says which they are.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from t2ibench import csvsafe
from t2ibench.errors import ResultsError
from t2ibench.fsutil import atomic_write_with

RESULTS_PARQUET = "results.parquet"
RESULTS_CSV = "results.csv"
#: The CSV's description (the parquet file carries it in its schema metadata under this key).
METADATA_KEY = "t2ibench"
SIDECAR_SUFFIX = ".meta.json"

#: The columns every results table has, in this order (extra columns follow).
REQUIRED_COLUMNS: tuple[str, ...] = (
    "checkpoint",
    "config",
    "seed",
    "epoch",
    "category",
    "class",
    "leaf",
    "prompt_type",
    "metric",
    "encoder",
    "resize",
    "value",
)
#: A row is identified by these; :func:`merge_results` keeps the newest row per key.
KEY_COLUMNS: tuple[str, ...] = ("checkpoint", "leaf", "prompt_type", "metric", "encoder", "resize")
#: Part of a row's key when the table has them: the same metric under two metric profiles (e.g.
#: DINO similarity as ``lycoris2024`` and as ``dreambooth``) is two rows, not one overwriting the other.
#: And ``base`` (a sweep across bases): each base model's own images are checkpoint ``base`` too.
OPTIONAL_KEY_COLUMNS: tuple[str, ...] = ("metric_profile", "base")


def key_columns(df: pd.DataFrame) -> list[str]:
    """The columns that identify a row of ``df``: :data:`KEY_COLUMNS` + the optional ones present."""
    return list(KEY_COLUMNS) + [c for c in OPTIONAL_KEY_COLUMNS if c in df.columns]


#: The column naming the base model a row's images came from (the architecture or base id the run
#: used): ``run``, ``evaluate-checkpoints``, ``evaluate --base`` and ``sweep`` write it, so any
#: results (or several concatenated) are grouped by base alike. A table without it is one base.
BASE_COLUMN = "base"


def base_name(config: Mapping) -> str:
    """The results' ``base`` value for a run config: the base it names (``sdxl``, ``toy``, a hub
    id), else its files' folder or file name (``base_path``), else ``base``."""
    if config.get("base"):
        return str(config["base"])
    return Path(str(config.get("base_path") or "base")).name


def run_base(run_dir: str | os.PathLike) -> str:
    """:func:`base_name` of a run folder's ``run.json`` config (``base`` when it has none)."""
    try:
        record = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
        return base_name(record.get("config") or {})
    except (OSError, ValueError, AttributeError):
        return "base"


#: Hyperparameter columns the analysis understands (all optional).
HYPERPARAMETER_COLUMNS: tuple[str, ...] = (
    "algorithm",
    "preset",
    "lr",
    "dim",
    "alpha",
    "factor",
    "caption",
)

#: "" means the metric has no resize step (IQA scores, a third-party metric on raw images).
RESIZE_MODES: tuple[str, ...] = ("letterbox", "center-crop", "stretch", "scale", "")

_STRING_COLUMNS = (
    "checkpoint",
    "config",
    "seed",
    "category",
    "class",
    "leaf",
    "prompt_type",
    "metric",
    "encoder",
    "resize",
)
_NONEMPTY_COLUMNS = ("checkpoint", "config", "category", "class", "leaf", "metric")
# Metric and encoder names must be plain slugs, and registered (built-in or a plug-in).
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


def registered_names(column: str) -> list[str]:
    """The names a results column may hold: what the registry behind it holds right now
    (built-ins and installed plug-ins)."""
    if column == "prompt_type":
        from t2ibench.prompts import list_prompt_types

        return list_prompt_types()
    if column == "metric":
        from t2ibench.metrics import list_metrics

        return list_metrics()
    if column == "encoder":
        from t2ibench.encoders import list_encoders

        return list_encoders()
    raise KeyError(column)


_REGISTRY_HINT = {
    "prompt_type": "install the plug-in that registers it",
    "metric": "install the plug-in that registers it, or give its direction "
    "(analyze(directions=...), --direction NAME=higher|lower, or a 'higher_is_better' column)",
    "encoder": "install the plug-in that registers it",
}


def _where(source: str | os.PathLike | None) -> str:
    return f"{source}: " if source is not None else ""


def _bad_rows(mask: pd.Series) -> str:
    rows = list(mask[mask].index[:5])
    more = "" if int(mask.sum()) <= 5 else f" (and {int(mask.sum()) - 5} more)"
    return f"rows {rows}{more}"


def validate_results(
    df: pd.DataFrame,
    source: str | os.PathLike | None = None,
    *,
    known: Mapping[str, Iterable[str]] | None = None,
) -> pd.DataFrame:
    """Check ``df`` against the schema and return a normalised copy.

    ``prompt_type``, ``metric`` and ``encoder`` must name entries of their registries (whatever
    built-ins and installed plug-ins registered); ``known`` adds names per column (e.g. metrics the
    caller gives a direction for), and a metric the table gives a ``higher_is_better`` for is known.

    Normalisation: string columns become strings (missing → ""), ``epoch`` a nullable integer,
    ``value`` a float (missing values stay NaN: a metric that could not be computed), required
    columns first. Raises :class:`ResultsError` naming ``source`` and the offending column.
    """
    if not isinstance(df, pd.DataFrame):
        raise ResultsError(f"{_where(source)}results must be a pandas DataFrame, got {type(df)}")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        hint = ""
        if len(df.columns) <= 2 and any(";" in str(c) for c in df.columns):
            # Spreadsheets in many locales save CSV with ";": the header is one long column.
            hint = (
                "; the header reads as one column holding ';': the file looks ';'-separated, a "
                "results CSV is comma-separated (save it as CSV with ',' as the delimiter)"
            )
        raise ResultsError(f"{_where(source)}missing column(s) {missing}{hint}")
    dupes = df.columns[df.columns.duplicated()].tolist()
    if dupes:
        raise ResultsError(f"{_where(source)}duplicate column(s) {dupes}")
    out = df.copy()
    out.index = pd.RangeIndex(len(out))
    for col in _STRING_COLUMNS:
        s = out[col]
        # Integers written as seeds (23) and strings ("a") both become text.
        out[col] = s.where(s.notna(), "").astype(str).str.strip()
    for col in _NONEMPTY_COLUMNS:
        mask = out[col] == ""
        if mask.any():
            raise ResultsError(f"{_where(source)}column {col!r} is empty in {_bad_rows(mask)}")
    mask = ~out["resize"].isin(RESIZE_MODES)
    if mask.any():
        bad = sorted(set(out.loc[mask, "resize"]))[:5]
        raise ResultsError(
            f"{_where(source)}column 'resize' has unknown value(s) {bad} in {_bad_rows(mask)};"
            f" allowed: {', '.join(repr(a) for a in RESIZE_MODES)}"
        )
    for col in ("metric", "encoder"):
        vals = out[col]
        mask = ~vals.str.match(_SLUG.pattern)
        if col == "encoder":
            mask &= vals != ""  # metrics without an encoder
        if mask.any():
            bad = sorted(set(vals[mask]))[:5]
            raise ResultsError(
                f"{_where(source)}column {col!r} has malformed name(s) {bad} in {_bad_rows(mask)};"
                " names are lower-case slugs such as 'image_similarity' or 'dinov2-l'"
            )
    extra = {col: set(map(str, names)) for col, names in (known or {}).items()}
    if "higher_is_better" in out.columns:
        declared = out.loc[out["higher_is_better"].notna(), "metric"]
        extra.setdefault("metric", set()).update(declared)
    for col in ("prompt_type", "metric", "encoder"):
        allowed = set(registered_names(col)) | extra.get(col, set())
        mask = ~out[col].isin(allowed)
        if col == "encoder":
            mask &= out[col] != ""
        if mask.any():
            bad = sorted(set(out.loc[mask, col]))[:5]
            raise ResultsError(
                f"{_where(source)}column {col!r} has unregistered value(s) {bad} in "
                f"{_bad_rows(mask)}; registered: {', '.join(sorted(allowed))}. "
                f"{_REGISTRY_HINT[col].capitalize()}"
            )
    epoch = pd.to_numeric(out["epoch"], errors="coerce")
    mask = (epoch.isna() & out["epoch"].notna()) | (
        epoch.notna() & ((epoch < 0) | (epoch % 1 != 0))
    )
    if mask.any():
        raise ResultsError(
            f"{_where(source)}column 'epoch' must hold non-negative integers; bad {_bad_rows(mask)}"
        )
    out["epoch"] = epoch.astype("Int64")
    value = pd.to_numeric(out["value"], errors="coerce")
    mask = value.isna() & out["value"].notna() & (out["value"].astype(str).str.strip() != "")
    if mask.any():
        raise ResultsError(f"{_where(source)}column 'value' is not numeric in {_bad_rows(mask)}")
    out["value"] = value.astype("float64")
    key = key_columns(out)
    dup = out.duplicated(key, keep=False)
    if dup.any():
        raise ResultsError(
            f"{_where(source)}{int(dup.sum())} rows repeat a key {tuple(key)}, first at "
            f"{_bad_rows(dup)}; use merge_results() to de-duplicate"
        )
    extra = [c for c in out.columns if c not in REQUIRED_COLUMNS]
    return out[list(REQUIRED_COLUMNS) + extra]


def merge_results(
    existing: pd.DataFrame | None,
    new: pd.DataFrame,
    *,
    known: Mapping[str, Iterable[str]] | None = None,
) -> pd.DataFrame:
    """Combine two results tables; on a repeated key (:data:`KEY_COLUMNS`) the row from ``new``
    wins. Idempotent: ``merge_results(merge_results(a, b), b)`` equals ``merge_results(a, b)``.
    ``known``: see :func:`validate_results`."""
    new = validate_results(_dedupe(new), "new results", known=known)
    if existing is None or len(existing) == 0:
        return new
    existing = validate_results(_dedupe(existing), "existing results", known=known)
    both = pd.concat([existing, new], ignore_index=True, sort=False)
    both = both.drop_duplicates(key_columns(both), keep="last")
    return validate_results(both.reset_index(drop=True), known=known)


def _dedupe(df: pd.DataFrame) -> pd.DataFrame:
    # Within one table the last row of a repeated key wins too (a re-run appended twice).
    if not all(c in df.columns for c in KEY_COLUMNS):
        return df
    key = df[key_columns(df)].astype(str)
    return df.loc[~key.duplicated(keep="last")]


def write_results(
    df: pd.DataFrame,
    results_dir: str | os.PathLike,
    *,
    formats: Iterable[str] = ("parquet", "csv"),
    description: Mapping | None = None,
) -> Path:
    """Validate ``df`` and write it to ``results_dir/results.parquet`` and ``results.csv``.

    Each file is written to a temporary name in the same folder and renamed, so a crash never
    leaves a half-written table. The table's description (:func:`describe_table`; names the
    registries lack keep their entry in ``description``) goes into the parquet schema metadata and
    ``results.csv.meta.json``. Returns the folder.
    """
    out_dir = Path(results_dir)
    df = validate_results(df, out_dir, known=known_names(description))
    formats = tuple(formats)
    unknown = set(formats) - {"parquet", "csv"}
    if unknown or not formats:
        raise ValueError(f"formats must be a non-empty subset of ('parquet', 'csv'), got {formats}")
    meta = describe_table(df, description)
    if "parquet" in formats:
        atomic_write_with(out_dir / RESULTS_PARQUET, lambda p: _write_parquet(df, p, meta))
    if "csv" in formats:
        # Text cells a spreadsheet would run as a formula (a class named "=cmd|...") get a "'".
        atomic_write_with(out_dir / RESULTS_CSV, lambda p: csvsafe.to_csv(df, p, index=False))
        text = json.dumps(meta, indent=1, sort_keys=True)
        atomic_write_with(out_dir / (RESULTS_CSV + SIDECAR_SUFFIX), lambda p: p.write_text(text))
    return out_dir


def _write_parquet(df: pd.DataFrame, path: Path, meta: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    merged = {**(table.schema.metadata or {}), METADATA_KEY.encode(): json.dumps(meta).encode()}
    pq.write_table(table.replace_schema_metadata(merged), path)


def _bound(v: float) -> float | None:
    return None if math.isinf(v) else float(v)  # JSON has no infinity: null = unbounded


def describe_table(df: pd.DataFrame, previous: Mapping | None = None) -> dict:
    """What the table's names mean, from the registries now (built-ins and installed plug-ins),
    falling back to ``previous`` (a description read with the table) for names they lack:
    ``{"metrics": {name: {criterion, higher_is_better, range: [lo, hi] (null = unbounded),
    encoder, report: {section: [prompt types]}}}, "prompt_types": [...], "encoders": [...]}``."""
    from t2ibench.metrics import METRICS

    previous = previous or {}
    metrics = {}
    old = previous.get("metrics", {})
    for name in sorted(df["metric"].unique()):
        if name in METRICS:
            spec = METRICS.get(name)
            metrics[name] = {
                "criterion": spec.criterion,
                "higher_is_better": bool(spec.higher_is_better),
                "range": [_bound(spec.range[0]), _bound(spec.range[1])],
                "encoder": spec.encoder,
                "report": {"criterion": list(spec.report.criterion),
                           "shap": list(spec.report.shap), "epochs": list(spec.report.epochs)},
            }  # fmt: skip
        elif name in old:
            metrics[name] = old[name]
    described = {"metrics": metrics}
    for col, key in (("prompt_type", "prompt_types"), ("encoder", "encoders")):
        have = set(registered_names(col)) | set(previous.get(key, ()))
        described[key] = sorted(n for n in df[col].unique() if n and n in have)
    return described


def known_names(description: Mapping | None) -> dict[str, list[str]]:
    """The names a description vouches for, per results column (``known`` of validate_results)."""
    d = description or {}
    return {"metric": list(d.get("metrics", {})), "prompt_type": list(d.get("prompt_types", ())),
            "encoder": list(d.get("encoders", ()))}  # fmt: skip


def absent_plugins(df: pd.DataFrame) -> dict[str, list[str]]:
    """Per column, the names in ``df`` that no registry holds now (their plug-in is not
    installed): the table's own description is what the analysis knows of them."""
    out = {}
    for col in ("metric", "prompt_type", "encoder"):
        have = set(registered_names(col))
        gone = sorted(n for n in df[col].unique() if n and n not in have)
        if gone:
            out[col] = gone
    return out


def append_results(new: pd.DataFrame, results_dir: str | os.PathLike) -> pd.DataFrame:
    """Merge ``new`` into the table stored in ``results_dir`` (if any) and write it back.

    Re-appending the same rows changes nothing (see :func:`merge_results`). Returns the merged table.
    """
    existing, description = None, {}
    found = _find_table(Path(results_dir))
    if found is not None:
        description = read_description(found)
        existing = read_results(results_dir)
    merged = merge_results(existing, new, known=known_names(description))
    write_results(merged, results_dir, description=description)
    return merged


def _find_table(path: Path) -> Path | None:
    for name in (RESULTS_PARQUET, RESULTS_CSV):
        if (path / name).is_file():
            return path / name
    return None


def read_description(path: str | os.PathLike) -> dict:
    """The description written with a results file (``{}`` for a table written before tables
    described themselves, or by another tool): a folder, ``.parquet`` or ``.csv`` file."""
    p = Path(path)
    if p.is_dir():
        p = _find_table(p) or p / RESULTS_PARQUET
    try:
        if p.name.lower().endswith(".parquet"):
            import pyarrow.parquet as pq

            raw = (pq.read_schema(p).metadata or {}).get(METADATA_KEY.encode())
            return json.loads(raw) if raw else {}
        sidecar = p.with_name(p.name + SIDECAR_SUFFIX)
        return json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.is_file() else {}
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{p}: cannot read the table's description ({exc})") from None


def _read_file(p: Path) -> pd.DataFrame:
    name = p.name.lower()
    try:
        if name.endswith(".parquet"):
            return pd.read_parquet(p)
        if name.endswith((".csv", ".csv.gz")):
            # Text columns stay text ("a" seeds, "N/A" hyperparameters are not guessed at).
            df = pd.read_csv(p, dtype={c: str for c in _STRING_COLUMNS}, keep_default_na=True)
            for col in df.columns:  # undo write_results' formula escaping
                if df[col].dtype == object or pd.api.types.is_string_dtype(df[col].dtype):
                    df[col] = df[col].map(csvsafe.unescape_cell)
            return df
    except Exception as exc:  # pyarrow / parser errors: say which file
        raise ResultsError(f"{p}: cannot read results table ({exc})") from exc
    raise ResultsError(f"{p}: expected a .parquet or .csv results file")


def _difference(a: pd.DataFrame, b: pd.DataFrame) -> str | None:
    """How table ``b`` differs from ``a`` (both validated), in a few words; None when the same."""
    import numpy as np

    only_a = [c for c in a.columns if c not in b.columns]
    only_b = [c for c in b.columns if c not in a.columns]
    if only_a or only_b:
        return ", ".join(
            ([f"column(s) {only_a} missing"] if only_a else [])
            + ([f"extra column(s) {only_b}"] if only_b else [])
        )
    if len(a) != len(b):
        return f"{len(b)} rows instead of {len(a)}"
    key = key_columns(a)
    a = a.sort_values(key).reset_index(drop=True)
    b = b.sort_values(key).reset_index(drop=True)
    for col in a.columns:
        x, y = a[col], b[col]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            xf, yf = x.astype("float64").to_numpy(), y.astype("float64").to_numpy()
            same = np.isclose(xf, yf, rtol=1e-12, atol=0, equal_nan=True)
        else:
            same = (x.astype(object).where(x.notna(), "").astype(str)
                    == y.astype(object).where(y.notna(), "").astype(str)).to_numpy()  # fmt: skip
        if not same.all():
            return f"{int((~same).sum())} value(s) differ in column {col!r}"
    return None


def read_results(
    path: str | os.PathLike,
    *,
    known: Mapping[str, Iterable[str]] | None = None,
    check_csv: bool = False,
) -> pd.DataFrame:
    """Read and validate a results table: a folder (``results.parquet``, else ``results.csv``) or
    a ``.parquet`` / ``.csv`` / ``.csv.gz`` file. ``known``: see :func:`validate_results`; names
    the file's own description vouches for (a plug-in no longer installed) are known too.

    ``check_csv`` (what ``analyze`` does): a folder holding both files whose ``results.csv`` says
    something else than ``results.parquet`` (edited by hand, or a write cut short) is refused,
    naming the difference and which file is newer, rather than one of them silently winning."""
    p = Path(path)
    folder = p.is_dir()
    if folder:
        found = _find_table(p)
        if found is None:
            raise ResultsError(f"{p}: no {RESULTS_PARQUET} or {RESULTS_CSV} in this folder")
        p = found
    elif not p.exists():
        raise ResultsError(f"{p}: no such file or folder")
    names = {k: set(map(str, v)) for k, v in (known or {}).items()}
    for col, vouched in known_names(read_description(p)).items():
        names.setdefault(col, set()).update(vouched)
    df = validate_results(_read_file(p), p, known=names)
    csv = p.with_name(RESULTS_CSV)
    if check_csv and folder and p.name == RESULTS_PARQUET and csv.is_file():
        try:
            other = validate_results(_read_file(csv), csv, known=names)
            why = _difference(df, other)
        except ResultsError as exc:
            why = str(exc).removeprefix(f"{csv}: ")
        if why is not None:
            newer = RESULTS_CSV if csv.stat().st_mtime > p.stat().st_mtime else RESULTS_PARQUET
            raise ResultsError(
                f"{p.parent}: {RESULTS_CSV} differs from {RESULTS_PARQUET} ({why}; {newer} is "
                f"newer): analyse the one you mean by its file name, e.g. "
                f"{p.parent / RESULTS_CSV}, or remove the other"
            )
    return df
