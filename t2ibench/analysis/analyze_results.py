"""``analyze``: results table → scores, aggregates, SHAP, plots, HTML report and Markdown summary."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from t2ibench import csvsafe
from t2ibench.analysis.aggregate import aggregate, config_columns, interval_note
from t2ibench.analysis.anchors import read_anchors
from t2ibench.analysis.bases import bases_section
from t2ibench.analysis.captions import caption_sections
from t2ibench.analysis.cost import cost_section
from t2ibench.analysis.images import seed_paired_grids
from t2ibench.analysis.raw import (
    BASE_CHECKPOINT,
    constant_measures,
    drop_measures,
    normalise_base,
    raw_table,
    split_base,
)
from t2ibench.analysis.raw_sections import (
    copy_section,
    images_section,
    raw_section,
    recommendation_section,
)
from t2ibench.analysis.report import Section, render_html, render_markdown
from t2ibench.analysis.scores import (
    RANK_GROUP,
    bases_of,
    by_base,
    metric_directions,
    name_bases,
    rank_group,
    rank_normalise,
)
from t2ibench.analysis.shap_analysis import (
    DEFAULT_FEATURES,
    checkpoint_features,
    run_shap,
    shap_tables,
)
from t2ibench.analysis.shap_report import shap_section
from t2ibench.analysis.tables import (
    add_epoch_claims,
    check_epoch_claims,
    config_table,
    epoch_change,
    epoch_trends,
    rank_table,
    table1,
    table1_section,
    varied_hyperparameter,
)
from t2ibench.analysis.targets import DESCRIBED, DescribedMetric, Target, report_targets
from t2ibench.errors import ResultsError
from t2ibench.fsutil import atomic_write_with
from t2ibench.results import absent_plugins, read_description, read_results, validate_results

log = logging.getLogger(__name__)

#: Rank normalisation and every section built on it (epoch trends, Table 1, metric pairs, SHAP)
#: compare configs: with fewer the ranks are 0, ½ or 1 and say nothing.
MIN_CONFIGS_FOR_RANKS = 3
#: A SHAP model explains variation across checkpoints; below this it fits noise.
MIN_CHECKPOINTS_FOR_SHAP = 12

CATEGORY_LABELS = {
    "anime": "anime characters",
    "people": "movie characters",
    "scene": "scenes",
    "stuffed_toy": "stuffed toys",
    "style": "styles",
}


@dataclass
class AnalysisResult:
    """What :func:`analyze` computed and where it wrote it."""

    out_dir: Path
    scores: pd.DataFrame
    aggregates: dict[str, pd.DataFrame]
    epoch_trends: pd.DataFrame
    epoch_change: pd.DataFrame
    epoch_claims: pd.DataFrame
    rank_means: pd.DataFrame
    ranks: pd.DataFrame
    shap_values: pd.DataFrame
    shap_fit: pd.DataFrame
    files: list[Path] = field(default_factory=list)
    #: Why CatBoost + SHAP did not run although asked for ("" when it ran or was not asked for).
    shap_note: str = ""
    raw: pd.DataFrame = field(default_factory=pd.DataFrame)
    constant_measures: pd.DataFrame = field(default_factory=pd.DataFrame)


def _filter(df: pd.DataFrame, column: str, allowed: Iterable | None) -> pd.DataFrame:
    if allowed is None:
        return df
    allowed = list(allowed)
    if column == "epoch":
        allowed = [int(a) for a in allowed]
    unknown = sorted(set(map(str, allowed)) - set(map(str, df[column].dropna().unique())))
    if unknown:
        raise ResultsError(
            f"filter {column}={unknown}: not in the results (have "
            f"{sorted(map(str, df[column].dropna().unique()))[:12]})"
        )
    return df[df[column].isin(allowed)]


def _write_csv(df: pd.DataFrame, path: Path, files: list[Path], **kw) -> None:
    atomic_write_with(path, lambda tmp: csvsafe.to_csv(df, tmp, **kw))
    files.append(path)


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock
        yield
        return
    with open(out / ".analyze.lock", "a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("%s: another analysis is writing here; waiting for it to finish", out)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _one_at_a_time(fn):
    """One analysis at a time per report folder: a second waits, then replaces the first's files
    (two at once interleaved their files)."""

    @functools.wraps(fn)
    def wrapper(results, out_dir, **kwargs):
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResultsError(f"{out}: cannot create the report folder ({exc.strerror})") from None
        token = DESCRIBED.set({})  # what this analysis's table describes, for its duration
        try:
            with _exclusive(out):
                return fn(results, out_dir, **kwargs)
        finally:
            DESCRIBED.reset(token)

    return wrapper


@_one_at_a_time
def analyze(
    results: str | os.PathLike | pd.DataFrame,
    out_dir: str | os.PathLike,
    *,
    categories: Sequence[str] | None = None,
    epochs: Sequence[int] | None = None,
    prompt_types: Sequence[str] | None = None,
    configs: Sequence[str] | None = None,
    directions: Mapping[str, bool] | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    shap: bool = True,
    shap_targets: Sequence[Target] | None = None,
    shap_features: Sequence[str] = DEFAULT_FEATURES,
    shap_category_epochs: Mapping[str, Sequence[int]] | None = None,
    shap_iterations: int = 300,
    shap_learning_rate: float = 0.1,
    criteria: Mapping[str, Sequence[Target]] | None = None,
    plots: bool = True,
    title: str | None = None,
    extra_sections: Sequence[Section] = (),
) -> AnalysisResult:
    """Analyse a results table (folder, file or DataFrame) and write the report to ``out_dir``.

    Filters keep only the listed categories, epochs, prompt types and configs (an unknown value is
    an error). ``directions`` (metric → higher_is_better) overrides the registry for third-party
    metrics. ``shap_targets`` and ``criteria`` default to what the metrics present declare
    (``MetricSpec.report``), as do the epoch tables and metric-pair plots.

    Every report starts with the answer: the recommendation (``recommendation.csv``, and
    ``recommendation.json`` for the console, :mod:`t2ibench.analysis.answer`) with what its rule
    left out and why, and the checkpoint line; then the overview (with a warning per name whose
    plug-in is not installed), the raw-value view (``raw_values.csv``), the anchors (base model
    rows, real-image ceiling, copy detection and image grids from ``<results>/anchors/`` when
    present), and the cost of each config
    (``cost.csv``, from the run folders next to the results: :mod:`t2ibench.analysis.cost`); a
    sweep's anchors come from its runs. Results with a caption study (a ``caption`` column with
    two or more values) add its section (:mod:`t2ibench.analysis.captions`). With at least
    :data:`MIN_CONFIGS_FOR_RANKS` configs (the ``base`` rows never count) it adds the rank sections
    and writes ``scores.csv``, ``aggregate_{class,category,all}.csv``, ``epoch_trends.csv``,
    ``epoch_change.csv``, ``epoch_claims.csv``, ``rank_table.csv`` (Table 1 per epoch),
    ``table1_order.csv`` (the paper's order and its bootstrap probability), ``shap_values.csv``,
    ``shap_fit.csv`` (in-sample and out-of-sample R²); figures go to
    ``plots/*.png``, and ``report.html`` (self-contained) and ``summary.md`` hold it all.
    ``extra_sections`` are added before the file list (e.g. a sweep hook's links to companion pages).
    Raises :class:`ResultsError` when nothing usable is left, for an infinite value (naming its
    row), and for a folder whose ``results.csv`` differs from its ``results.parquet``.
    """
    source = results if not isinstance(results, pd.DataFrame) else "DataFrame"
    known = {"metric": list(directions or {})}  # third-party metrics given a direction
    df = (
        validate_results(results, "results", known=known)
        if isinstance(results, pd.DataFrame)
        else read_results(results, known=known, check_csv=True)
    )
    _refuse_infinite(df, source)
    notes = _absent_plugin_notes(results, df, directions)
    directions = {**notes.directions, **(directions or {})}
    DESCRIBED.set(notes.described)
    n_in = len(df)
    df = _filter(df, "category", categories)
    df = _filter(df, "epoch", epochs)
    df = _filter(df, "prompt_type", prompt_types)
    df = _filter(df, "config", configs)
    if df.empty or df["value"].notna().sum() == 0:
        raise ResultsError(
            f"{source}: no metric values left to analyse ({n_in} rows before filters)"
        )
    anchors = read_anchors(results)
    df = normalise_base(name_bases(df))  # an old table (no base column) is one base
    constants = constant_measures(df)
    df = drop_measures(df, constants)
    dirs = metric_directions(df, directions)
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    raw = raw_table(df, anchors["ceiling"], dirs)
    _write_csv(raw, out / "raw_values.csv", files, index=False)
    if not constants.empty:
        _write_csv(constants, out / "constant_measures.csv", files, index=False)
    configs_df, _base = split_base(df)
    n_configs = configs_df["config"].nunique()
    n_checkpoints = configs_df["checkpoint"].nunique()
    sections = [
        # The answer first (what a user runs this for), then what it rests on.
        recommendation_section(raw, anchors["ceiling"], dirs, out, plots, files, rows=df),
        _overview(
            source,
            df,
            dirs,
            n_configs,
            n_checkpoints,
            filters_of(categories, epochs, prompt_types, configs),
            notes.lines,
        ),
        raw_section(raw, constants, dirs, anchors["ceiling"], df["leaf"].nunique()),
        *filter(None, [bases_section(df, raw, dirs)]),  # several bases: side by side
        copy_section(anchors["copies"]),
        images_section(seed_paired_grids(anchors["images"], _checkpoint_configs(df))),
        cost_section(results, df, raw, dirs, out, plots, files),
    ]
    empty = pd.DataFrame()
    scores, aggs, trends, change, claims, means, ranks = (
        empty,
        {},
        empty,
        empty,
        empty,
        empty,
        empty,
    )
    shap_values, shap_fit = empty, empty
    shap_note = ""
    if n_configs < MIN_CONFIGS_FOR_RANKS:
        sections.append(
            Section("Comparisons across configs").text(
                f"Not shown: {n_configs} config(s) in the results. Rank normalisation, the "
                "epoch-trend tables, the Table-1 comparison with the paper, the metric-pair plots "
                f"and SHAP compare configs and need at least {MIN_CONFIGS_FOR_RANKS} configs "
                f"(SHAP also at least {MIN_CHECKPOINTS_FOR_SHAP} checkpoints); run a sweep "
                "(`t2ibench sweep`) for them."
            )
        )
    else:
        scores = rank_normalise(configs_df, dirs)
        if scores["score"].notna().sum() == 0:
            raise ResultsError(
                f"{source}: no score can be computed: each leaf × metric × encoder × resize × "
                "prompt type needs values from at least two checkpoints"
            )
        _write_csv(scores, out / "scores.csv", files, index=False)
        aggs = aggregate(scores, bootstrap=bootstrap, seed=seed)
        for level, table in aggs.items():
            _write_csv(table, out / f"aggregate_{level}.csv", files, index=False)
        # Order statistics within base: several bases' scores are ranked within base, and a
        # method's trend or Table-1 order on one base says nothing about another.
        per_base = by_base(scores)
        trends, change, t1s, means, ranks = _per_base_orders(per_base, aggs, criteria, seed)
        _write_csv(trends, out / "epoch_trends.csv", files, index=False)
        _write_csv(change, out / "epoch_change.csv", files, index=False)
        claims = check_epoch_claims(scores)
        _write_csv(claims, out / "epoch_claims.csv", files, index=False)
        _write_csv(_with_base(t1s, "table"), out / "rank_table.csv", files, index=False)
        _write_csv(_with_base(t1s, "order"), out / "table1_order.csv", files, index=False)
        if len(per_base) > 1 and "base" not in shap_features:
            shap_features = (*shap_features, "base")  # the base explains what it explains
        if shap:
            have = checkpoint_features(scores).columns
            missing = [f for f in shap_features if f not in have]
            if missing:
                # E.g. `t2ibench evaluate` of outside images: no hyperparameter columns to explain.
                shap = False
                shap_note = (
                    f"SHAP skipped: the results have no {', '.join(missing)} column(s) "
                    "(hyperparameters of each checkpoint); the rest of the analysis is complete"
                )
                log.info("%s", shap_note)
        shap_results = (
            run_shap(
                scores,
                targets=shap_targets,
                features=shap_features,
                category_epochs=shap_category_epochs,
                iterations=shap_iterations,
                learning_rate=shap_learning_rate,
                seed=seed,
            )
            if shap and n_checkpoints >= MIN_CHECKPOINTS_FOR_SHAP
            else []
        )
        shap_values, shap_fit = shap_tables(shap_results)
        _write_csv(shap_values, out / "shap_values.csv", files, index=False)
        _write_csv(shap_fit, out / "shap_fit.csv", files, index=False)
        sections += _sections(
            scores, aggs, trends, change, claims, t1s, shap_fit, shap_results, out,
            plots, files, shap_note, bootstrap=bootstrap,
        )  # fmt: skip
    sections += caption_sections(configs_df, dirs)  # only when the results carry a caption study
    sections += list(extra_sections)
    fl = Section("Files")
    fl.bullets(sorted({f.relative_to(out).as_posix() for f in files}))
    sections.append(fl)
    if title is None:
        name = Path(str(source))
        # A run's results folder is "<run>/results": the run name says more than "results".
        name = name.parent.name if name.name == "results" and name.parent.name else name.name
        title = f"t2ibench report: {name}"
    files.append(render_html(title, sections, out / "report.html", out))
    files.append(render_markdown(title, sections, out / "summary.md", out))
    return AnalysisResult(
        out, scores, aggs, trends, change, claims, means, ranks, shap_values, shap_fit, files,
        shap_note, raw, constants,
    )  # fmt: skip


def _per_base_orders(per_base, aggs, criteria, seed):
    """Epoch trends and changes, Table 1 and the rank table of each base (one ``(None, scores)``
    entry: the table's only base): the frames get a ``base`` column first when there are several;
    Table 1 is a list of ``(base, Table1)``."""
    trends, changes, t1s, means, ranks = [], [], [], {}, {}
    for base, sc in per_base:
        cat = aggs["category"]
        cat = cat[cat["config"].isin(sc["config"].unique())]
        tr = epoch_trends(cat, sc, report_targets("epochs", sc["metric"].unique()))
        ch = epoch_change(tr)
        if base is not None:
            tr, ch = tr.assign(base=base), ch.assign(base=base)
        trends.append(tr)
        changes.append(ch)
        t1s.append((base, table1(sc, criteria, seed=seed)))
        means[base], ranks[base] = rank_table(None, sc, criteria)
    if per_base[0][0] is None:
        return trends[0], changes[0], t1s, means[None], ranks[None]

    def joined(frames):
        frames = [f for f in frames if not f.empty] or frames[:1]
        t = pd.concat(frames, ignore_index=True)
        return t[["base", *(c for c in t.columns if c != "base")]] if "base" in t else t

    def keyed(tables):
        tables = {b: t for b, t in tables.items() if not t.empty}
        return pd.concat(tables, names=["base"]) if tables else pd.DataFrame()

    return joined(trends), joined(changes), t1s, keyed(means), keyed(ranks)


def _with_base(t1s, attr: str) -> pd.DataFrame:
    """Table 1's ``table`` or ``order`` of every base, a ``base`` column first when several."""
    if len(t1s) == 1 and t1s[0][0] is None:
        return getattr(t1s[0][1], attr)
    frames = [getattr(t, attr).assign(base=b) for b, t in t1s]
    t = pd.concat(frames, ignore_index=True)
    return t[["base", *(c for c in t.columns if c != "base")]]


def _checkpoint_configs(df: pd.DataFrame) -> dict[str, str]:
    """checkpoint → config (the image grids show one column per config in a sweep)."""
    ck = df.drop_duplicates("checkpoint")
    return dict(zip(ck["checkpoint"].astype(str), ck["config"].astype(str), strict=True))


def _label(cat: str) -> str:
    return CATEGORY_LABELS.get(cat, cat)


def filters_of(categories, epochs, prompt_types, configs) -> dict:
    f = {"categories": categories, "epochs": epochs, "prompt_types": prompt_types,
         "configs": configs}  # fmt: skip
    return {k: v for k, v in f.items() if v is not None}


def _refuse_infinite(df: pd.DataFrame, source) -> None:
    """An infinite value would become a headline and squash every other rank and rescale (a Vendi
    cell of inf did): refused with the first such row, by its key."""
    bad = df.index[df["value"].isin([math.inf, -math.inf])]
    if len(bad) == 0:
        return
    r = df.loc[bad[0]]
    key = ", ".join(f"{c}={r[c]!r}" for c in ("checkpoint", "leaf", "prompt_type", "metric",
                                               "encoder", "resize"))  # fmt: skip
    more = f" (and {len(bad) - 1} more row(s))" if len(bad) > 1 else ""
    raise ResultsError(
        f"{source}: value {r['value']} in row {bad[0]} ({key}){more}: a metric value must be "
        "finite (leave it empty, NaN, when it could not be computed)"
    )


@dataclass
class _PluginNotes:
    directions: dict[str, bool] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    described: dict[str, DescribedMetric] = field(default_factory=dict)


def _absent_plugin_notes(results, df: pd.DataFrame, given: Mapping[str, bool] | None):
    """Names in the table whose plug-in is not installed here: the directions the table's own
    description records for its metrics, and one warning per column (logged and in the report)."""
    notes = _PluginNotes()
    absent = absent_plugins(df)
    if not absent:
        return notes
    described = {} if isinstance(results, pd.DataFrame) else read_description(results)
    metrics = described.get("metrics", {})
    for col, names in absent.items():
        if col == "metric":
            recorded = []
            for name in names:
                d = metrics.get(name)
                if d is None:
                    continue  # given a direction (--direction) or a higher_is_better column
                notes.directions[name] = bool(d["higher_is_better"])
                notes.described[name] = DescribedMetric.from_description(name, d)
                lo, hi = d["range"]
                lo = "−∞" if lo is None else f"{lo:g}"
                hi = "∞" if hi is None else f"{hi:g}"
                way = "higher" if d["higher_is_better"] else "lower"
                recorded.append(f"{name} ({d['criterion']}, {way} is better, range [{lo}, {hi}])")
            text = (
                f"metric(s) {', '.join(names)} are not installed here (their plug-in is absent): "
                "analysed with what the results file records"
                + (f": {'; '.join(recorded)}" if recorded else "")
                + "; the report reads them as recorded (criterion, direction, headline encoder, "
                "report sections)"
            )
        else:
            text = (
                f"{col.replace('_', ' ')}(s) {', '.join(names)} are not installed here (their "
                "plug-in is absent): analysed by name, as the results file records them"
            )
        log.warning("%s", text)
        notes.lines.append(text)
    return notes


def _listed(values) -> str:
    """``[a, b]``, or "none recorded" (outside images evaluated by `t2ibench evaluate` carry no
    seed and no epoch; "seeds []" read as a bug)."""
    values = sorted(values)
    return f"{values}" if values else "none recorded"


def _base_models(df: pd.DataFrame) -> str:
    if not (df["checkpoint"] == BASE_CHECKPOINT).any():
        return ""
    bases = bases_of(df)
    return f" plus {len(bases)} base models" if len(bases) > 1 else " plus the base model"


def _overview(source, df, dirs, n_configs, n_checkpoints, active, warnings=()) -> Section:
    overview = Section("Overview")
    for line in warnings:
        overview.text(f"Warning: {line}.")
    overview.text(
        f"Source: {source}. {len(df)} result rows; {n_configs} config(s), {n_checkpoints} "
        f"checkpoint(s)"
        + _base_models(df)
        + f"; seeds {_listed(s for s in df['seed'].unique() if s)}, "
        f"epochs {_listed(int(e) for e in df['epoch'].dropna().unique())}, "
        f"categories {sorted(df['category'].unique())}, leaves {df['leaf'].nunique()}, "
        f"prompt types {sorted(df['prompt_type'].unique())}."
        + (f" Filters: {active}." if active else "")
    )
    cfg_df = df[df["checkpoint"] != BASE_CHECKPOINT]
    cfg_cols = config_columns(cfg_df)
    table = (
        cfg_df.groupby("config", dropna=False)[cfg_cols].first()
        if cfg_cols
        else pd.DataFrame(index=sorted(cfg_df["config"].unique()))
    )
    table = table.assign(
        varied=varied_hyperparameter(config_table(cfg_df)),
        checkpoints=cfg_df.groupby("config")["checkpoint"].nunique(),
    )
    table = table.loc[:, table.notna().any()]
    if "base" in table.columns:  # the base first: a config is a method on a base
        table = table[["base", *(c for c in table.columns if c != "base")]]
    table.index.name = "config"
    overview.table(table, "configs, their hyperparameters and what each varies", max_rows=500)
    return overview


def _sections(
    scores, aggs, trends, change, claims, t1s, shap_fit, shap_results,
    out, plots, files, shap_note, bootstrap,
) -> list[Section]:  # fmt: skip
    import t2ibench.analysis.plots as P

    sections = []
    within = rank_group(scores, RANK_GROUP)
    rs = Section("Rank scores (many configs)").text(
        "Scores: within each "
        + " × ".join(within)
        + " the checkpoints are ranked (ties: average rank) and score = (rank − 1)/(n − 1), "
        "1 = best; missing values stay missing and do not count in n. Leaves are averaged into "
        "classes, classes into categories (plain means); error bars are standard errors over "
        "seeds × classes. "
        + interval_note(bootstrap)
        + (
            f" The results hold {len(bases_of(scores))} bases: ranks never compare checkpoints "
            "of different bases (see Bases side by side for the raw values across bases)."
            if "base" in within
            else ""
        )
    )
    sections.append(rs)

    ep = Section("Epochs (paper §5.3.2)")
    add_epoch_claims(ep, claims)
    if change.empty:
        ep.text("Only one epoch in the results: no epoch trend to report.")
    else:
        several = "base" in change.columns
        ep.text(
            "Mean category score at the first and last epoch (over configs; scores ranked across all "
            "checkpoints of every epoch"
            + (
                " of the same base). Several bases: every trend and claim is computed within "
                "each base, the base named first)."
                if several
                else ")."
            )
        )
        findings = []
        for _, r in change.iterrows():
            verb = "rises" if r["change"] > 0 else "falls" if r["change"] < 0 else "stays"
            findings.append(
                (f"{r['base']} · " if several else "")
                + f"{_label(r['category'])}: {r['measure']} {verb} from {r['first']:.3f} "
                f"(epoch {r['first_epoch']}) to {r['last']:.3f} (epoch {r['last_epoch']})"
            )
        ep.bullets(findings)
        index = [*(["base"] if several else []), "measure", "category"]
        wide = trends.pivot_table(index=index, columns="epoch", values="mean")
        wide.columns = [f"epoch {int(c)}" for c in wide.columns]
        ep.table(wide.reset_index(), "mean score per epoch", max_rows=200)
    sections.append(ep)

    for base, t1 in t1s:  # several bases: Table 1 of each (ranks and orders within base)
        sections.append(
            table1_section(scores, result=t1, plots=plots, out=out, files=files, base=base)
        )

    if plots:
        sc = Section("Metric pairs")
        varied = varied_hyperparameter(config_table(scores))
        written = P.scatter_pairs(aggs["category"], scores, varied, out / "plots")
        sc.text(
            "Each point is a config (mean score ± SE over seeds × classes on both axes); colour = "
            "algorithm, marker shape = the hyperparameter varied from the algorithm's default, "
            "marker size = its value: small below the default, large above it (capacity: dim, "
            "or a smaller LoKr factor), medium for the default or a preset change."
            + (
                " One figure per base: scores are ranked within base."
                if len(bases_of(scores)) > 1
                else ""
            )
        )
        for label, p in written:
            files.append(p)
            sc.figure(p, label)
        if not written:
            sc.text("No metric pair present in the results.")
        sections.append(sc)

    sh = shap_section(
        shap_fit, shap_results, note=shap_note, plots=plots, out=out, files=files, label=_label,
        empty_text="No SHAP model (no target present, fewer than "
        f"{MIN_CHECKPOINTS_FOR_SHAP} checkpoints, or too few per category).",
    )  # fmt: skip
    sections.append(sh)

    return sections
