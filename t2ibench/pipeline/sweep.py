"""``t2ibench sweep``: a grid of configs × seeds, each a resumable run, then one joint analysis.

A grid file is TOML (shipped ones in ``t2ibench/grids/``: ``paper`` = the paper's 26 configs × 3
seeds, ``cpu`` = a small CPU grid, ``toy`` = the study in miniature on the toy world). Every table
other than ``[grid]`` holds run-config overrides, written exactly as ``--set`` keys
(:mod:`t2ibench.runconfig`: ``generate.steps``, ``trainer.dim`` or the shorthand ``dim``)::

    [grid]
    name = "cpu"
    seeds = [23, 24]            # training seeds; seed_labels name them in results ("a", "b")
    seed_labels = ["a", "b"]
    profile = "tiny"            # optional: a profile name or file (default: as t2ibench run)

    [common]                    # overrides for every config
    base = "tiny"
    epochs = 2
    generate.images_per_leaf = 4

    [[config]]
    name = "lora-default"       # the config's name (the trainer's own ``name`` is trainer.name)
    trainer = "lora"
    dim = 8
    alpha = 4

Each run is ``<config name>-<seed label>``; the order of precedence is profile < ``[common]`` <
``[bases]`` < ``[[config]]`` < the seed < ``t2ibench sweep --dataset/--base/--base-path``.

A grid may mix bases: each config names its ``base`` (or ``[common]`` does), and a ``[bases]``
table gives the files of each base named (a base architecture such as ``sdxl`` needs them)::

    [bases]
    sdxl = "/models/sdxl-base-1.0"     # base name → its base_path (folder or single file)
    flux = "/models/flux1-dev"

``t2ibench sweep --base-path sdxl=DIR`` replaces one entry, ``--base-path DIR`` gives every run
that DIR; a config's own ``base_path`` beats the table.

Where the runs execute is an executor (:mod:`t2ibench.pipeline.executors`: ``local``, one after
another here; ``ray``, in parallel on a Ray cluster). Whichever it is, a failed run is recorded
with its error in ``<out>/sweep-summary.json`` and the others go on, and the joint analysis runs
once, here, over the runs that finished.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from t2ibench.errors import ConfigError
from t2ibench.fsutil import atomic_write
from t2ibench.validation import read_toml

_GRID_KEYS = {"name", "seeds", "seed_labels", "profile"}
_TABLES = ("grid", "common", "bases", "config")


@dataclass
class Grid:
    name: str
    seeds: list[int]
    seed_labels: list[str]
    configs: list[dict[str, Any]]
    common: dict[str, Any] = field(default_factory=dict)
    profile: str | None = None
    source: str = ""
    #: the ``[bases]`` table: base name → its files (``base_path``) for the configs naming it
    base_paths: dict[str, str] = field(default_factory=dict)

    def base_of(self, cfg: dict[str, Any], cli_base: Any = None) -> str | None:
        """The base a config's runs use (``--base`` beats the config, the config ``[common]``)."""
        base = cli_base if cli_base is not None else cfg.get("base", self.common.get("base"))
        return None if base is None else str(base)

    def run_options(
        self,
        *,
        out: Path,
        device: str,
        dataset=None,
        base=None,
        base_path: str | dict[str, str] | None = None,
        progress=True,
        budget=None,
        generate=None,
    ) -> Iterator[Any]:
        """Every run's options. ``base_path``: a path for every run, or ``{base name: path}``
        (``""``: every run whose base has no entry), as ``t2ibench sweep --base-path`` gives."""
        from t2ibench.pipeline.run import RunOptions

        given = base_path if isinstance(base_path, dict) else {"": base_path}
        given = {k: str(v) for k, v in given.items() if v is not None}
        common: dict[str, Any] = {
            k: str(v) for k, v in (("dataset", dataset), ("base", base)) if v is not None
        }
        if budget:  # ``t2ibench sweep --budget adaptive`` (and its widths): budget.* keys
            common["budget"] = dict(budget)
        if generate:  # ``t2ibench sweep --dtype bf16 --fuse-adapter ...``: generate.* keys
            common["generate"] = dict(generate)
        for i, cfg in enumerate(self.configs):
            own = {k: v for k, v in cfg.items() if k != "name"}
            name = self.base_of(cfg, base)
            table = {"base_path": self.base_paths[name]} if name in self.base_paths else {}
            cli = dict(common)
            path = given.get(name or "", given.get(""))
            if path is not None:
                cli["base_path"] = path
            for seed, label in zip(self.seeds, self.seed_labels, strict=True):
                yield RunOptions(
                    layers=[
                        (f"{self.source} [common]", self.common),
                        (f"{self.source} [bases] {name}", table),
                        (f"{self.source} config[{i}] ({cfg['name']})", own),
                        (f"{self.source} grid.seeds", {"trainer.seed": seed}),
                        ("t2ibench sweep", cli),
                    ],
                    profile=self.profile,
                    device=device,
                    out=str(Path(out) / "runs"),
                    name=run_name(cfg["name"], label),
                    analyze=False,
                    progress=progress,
                    labels={"config": cfg["name"], "seed": label},
                )


def run_name(config: str, label: str) -> str:
    """A run's folder name under ``<out>/runs``: ``<config>-<seed label>`` as a leaf name (names
    such as ``../../x`` or ``/abs`` become a slug plus a hash, never a path; see
    :func:`t2ibench.pipeline.generate.folder_name`). The real names stay in the run's labels:
    the results' ``config`` and ``seed`` columns."""
    from t2ibench.pipeline.generate import folder_name

    return folder_name(f"{config}-{label}")


def _shipped(name: str) -> Path | None:
    res = resources.files("t2ibench").joinpath("grids", f"{name}.toml")
    return Path(str(res)) if res.is_file() else None


def load_grid(spec: str | Path) -> Grid:
    """A grid from a TOML path or a shipped grid name; every config's keys are checked here."""
    path = Path(spec)
    if not path.is_file():
        shipped = _shipped(str(spec))
        if shipped is None:
            raise ConfigError(f"--grid {spec}: no such file and no shipped grid of that name")
        path = shipped
    data = read_toml(path, "grid")
    unknown = set(data) - set(_TABLES)
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {sorted(unknown)} ({', '.join(_TABLES)})")
    bases = data.get("bases", {})
    for key, value in bases.items():
        if not isinstance(value, str) or not value:
            raise ConfigError(
                f"{path}: bases.{key}: expected the base's files (a folder or file path), "
                f"got {value!r}"
            )
    g = data.get("grid", {})
    if set(g) - _GRID_KEYS:
        key = sorted(set(g) - _GRID_KEYS)[0]
        hint = " (overrides go in the [common] table)" if key in ("set", "base", "dataset") else ""
        raise ConfigError(f"{path}: grid.{key}: unknown key{hint}")
    configs = data.get("config", [])
    if not configs:
        raise ConfigError(f"{path}: no [[config]] entries")
    names = set()
    for i, c in enumerate(configs):
        if "name" not in c or "trainer" not in c:
            raise ConfigError(f"{path}: config[{i}]: needs name and trainer")
        if c["name"] in names:
            raise ConfigError(f"{path}: config[{i}].name: {c['name']!r} repeats")
        names.add(c["name"])
    seeds = [int(s) for s in g.get("seeds", [23])]
    labels = [str(s) for s in g.get("seed_labels", seeds)]
    if len(labels) != len(seeds):
        raise ConfigError(f"{path}: grid.seed_labels: {len(labels)} labels for {len(seeds)} seeds")
    grid = Grid(
        name=str(g.get("name", path.stem)),
        seeds=seeds,
        seed_labels=labels,
        configs=configs,
        common=data.get("common", {}),
        profile=g.get("profile"),
        source=str(path),
        base_paths=dict(bases),
    )
    _check(grid)
    return grid


def _check(grid: Grid) -> None:
    """Every config's overrides against the run config and its trainer, before any run starts."""
    from t2ibench.adapters import get_trainer
    from t2ibench.runconfig import Layers

    for opts in grid.run_options(out=Path("."), device="cpu"):  # cheap: no model is loaded
        layers = Layers()
        for where, table in opts.layers[:3]:
            layers.add_table(where, table)
        cfg = layers.run_config()
        spec = get_trainer(cfg.trainer_name)
        spec.config(layers.trainer_sources(), prefix="trainer.")


def check_base_paths(grid: Grid, runs: list[Any]) -> None:
    """Every run whose base is an architecture (``sdxl``, ``flux``, ...) has its files, and they
    are that architecture, before any run starts (else each run would fail alike, one by one)."""
    from t2ibench.architectures import is_architecture
    from t2ibench.models.loading import base_architecture, resolve_spec
    from t2ibench.runconfig import Layers

    checked: set[tuple[str, str]] = set()
    for opts in runs:
        layers = Layers()
        for where, table in opts.layers:
            layers.add_table(where, table)
        base = layers.values.get("base")
        if is_architecture(base) and not layers.values.get("base_path"):
            raise ConfigError(
                f"{grid.source}: config {opts.labels['config']!r}: base {base!r} is an "
                f'architecture and needs its files: a [bases] entry {base} = "DIR", or '
                f"t2ibench sweep --base-path {base}=DIR"
            )
        if is_architecture(base) and (base, layers.values["base_path"]) not in checked:
            # one line naming the expected and the found architecture (reads no weights)
            base_architecture(*resolve_spec(layers.values["base_path"]), expected=base)
            checked.add((base, layers.values["base_path"]))


def parse_base_paths(items: list[str] | None, grid: Grid | None = None) -> dict[str, str]:
    """``--base-path`` values: ``NAME=DIR`` (the runs whose base is NAME) or ``DIR`` (every other
    run), as ``{name or "": DIR}``; a NAME no config of ``grid`` uses is refused (a typo)."""
    import re

    out: dict[str, str] = {}
    for item in items or []:
        name, sep, where = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            name, where = "", item
        if name in out:
            which = f"{name}=" if name else "DIR (no NAME=)"
            raise ConfigError(f"--base-path {which}: given twice")
        if not where:
            raise ConfigError(f"--base-path {item}: no path")
        out[name] = where
    if grid is not None:
        used = {grid.base_of(c) for c in grid.configs}
        for name in out:
            if name and name not in used:
                raise ConfigError(
                    f"--base-path {name}=...: no config of grid {grid.name!r} has base {name!r} "
                    f"(its bases: {', '.join(sorted(b for b in used if b)) or 'none'})"
                )
    return out


SUMMARY_NAME = "sweep-summary.json"


@dataclass
class SweepResult:
    """What a sweep left: the joint report (``None`` when no run finished), one outcome per run
    in grid order, and the summary file that records them."""

    report: Path | None
    outcomes: list[Any]
    summary: Path

    @property
    def failed(self) -> list[Any]:
        return [o for o in self.outcomes if o.status != "done"]


def run_sweep(
    grid: Grid,
    *,
    out: Path,
    device: str = "cpu",
    dataset=None,
    base=None,
    progress: bool = True,
    executor: str | Any = "local",
    budget: dict[str, Any] | None = None,
    base_path: str | dict[str, str] | None = None,
    generate: dict[str, Any] | None = None,
) -> SweepResult:
    """Every run of the grid (resumable) on ``executor`` (a name from
    :mod:`t2ibench.pipeline.executors` or an executor object), then, once all are over, the summary
    (``<out>/sweep-summary.json``) and the joint results table and report of the runs that
    finished. Registered sweep hooks (``t2ibench.profiles.SWEEP_HOOKS``) add their sections to the
    report. A failed run is in the summary with its error and does not stop the others; running
    the same sweep again retries it and redoes nothing finished."""
    from t2ibench.pipeline.executors import SweepProgress, get_executor

    # Absolute: workers on other machines (or in another folder) must find the same place.
    out = Path(out).absolute()
    runs = list(
        grid.run_options(
            out=out,
            device=device,
            dataset=dataset,
            base=base,
            base_path=base_path,
            progress=progress,
            budget=budget,
            generate=generate,
        )
    )
    check_base_paths(grid, runs)
    owned = isinstance(executor, str)
    ex = get_executor(executor) if owned else executor
    started = time.time()
    try:
        ex.check_runs(runs)  # what the executor cannot run: refused once, before scheduling
        ex.check_storage(out)
        view = SweepProgress(len(runs), out / "runs", enabled=progress)
        try:
            if is_adaptive(grid, budget):
                outcomes = _race(ex, runs, view)
            else:
                outcomes = ex.run_all(runs, view)
        finally:
            view.close()
    finally:
        if owned:
            ex.close()
    summary = out / SUMMARY_NAME
    done = [o for o in outcomes if o.status == "done"]
    atomic_write(
        summary,
        json.dumps(
            {
                "grid": grid.name,
                "source": grid.source,
                "executor": ex.name,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
                "seconds": round(time.time() - started, 3),
                "runs": len(outcomes),
                "done": len(done),
                "failed": len(outcomes) - len(done),
                "cpus_per_run": getattr(ex, "cpus_per_run", None),
                # runs whose worker or node was lost at least once (Ray retried them)
                "retried": [o.name for o in outcomes if o.retried_after],
                "outcomes": [o.to_dict() for o in outcomes],
            },
            indent=2,
        ),
    )
    report = _joint_analysis(grid, out, [Path(o.run_dir) for o in done]) if done else None
    return SweepResult(report=report, outcomes=outcomes, summary=summary)


def is_adaptive(grid: Grid, budget: dict[str, Any] | None) -> bool:
    """Whether the sweep's runs have ``budget.mode = "adaptive"`` (the command line's or the
    grid's ``[common]``)."""
    common = grid.common.get("budget", {})
    mode = (budget or {}).get("mode") or common.get("mode") or grid.common.get("budget.mode")
    return mode == "adaptive"


def _race(ex: Any, runs: list[Any], view: Any) -> list[Any]:
    """Adaptive sweep: every unfinished run goes one round further (``round_limit``), then the
    configs are raced on the runs' per-image values (:func:`t2ibench.pipeline.adaptive
    .race_entities`, look = the round); a settled config's runs get :data:`~t2ibench.pipeline
    .adaptive.STOP_NAME` and finish at their next call. Until every run has finished (or
    failed). Resumable: each call of a run starts from its own recorded rounds."""
    from dataclasses import replace

    import pandas as pd

    from t2ibench.pipeline.adaptive import (
        STATE_NAME,
        STOP_NAME,
        VALUES_NAME,
        AdaptiveState,
        race_entities,
    )

    def rounds(o: Any) -> int:
        path = Path(o.out) / o.name / STATE_NAME
        return AdaptiveState(path).round if path.is_file() else 0

    last: dict[str, Any] = {}
    look = 0
    while True:
        pending = [
            o
            for o in runs
            if not (
                (Path(o.out) / o.name / STATE_NAME).is_file()
                and AdaptiveState(Path(o.out) / o.name / STATE_NAME).finished
                and o.name in last
            )
            and getattr(last.get(o.name), "status", "done") == "done"
        ]
        if not pending:
            break
        # one round further than the least advanced run (a resumed sweep continues from there)
        look = max(look + 1, 1 + min(rounds(o) for o in pending))
        view.done = view.failed = 0  # the bar counts this round's runs
        view.bar.reset(total=len(pending))
        view.bar.set_description(f"sweep round {look}")
        for outcome in ex.run_all([replace(o, round_limit=look) for o in pending], view):
            last[outcome.name] = outcome
        parts, alpha = [], 0.05
        for o in runs:
            run_dir = Path(o.out) / o.name
            if (run_dir / VALUES_NAME).is_file() and last.get(o.name, None) is not None:
                parts.append(
                    pd.read_parquet(run_dir / VALUES_NAME).assign(config=o.labels["config"])
                )
                alpha = json.loads((run_dir / "run.json").read_text())["config"]["budget"]["alpha"]
        if parts:
            # the largest look any run has made: α_j falls with j, so this is the cautious one
            latest = max(look, *(rounds(o) for o in runs))
            settled = race_entities(pd.concat(parts, ignore_index=True), "config", latest, alpha)
            for o in runs:
                reason = settled.get(o.labels["config"])
                stop = Path(o.out) / o.name / STOP_NAME
                if reason and not stop.is_file() and stop.parent.is_dir():
                    atomic_write(stop, json.dumps({"reason": f"{reason} (round {latest})"}))
        if look > 10_000:  # a run that never finishes its rounds would loop forever
            break
    return [last[o.name] for o in runs]


def base_label(run_dir: Path) -> str:
    """The base a run used (:func:`t2ibench.results.run_base`): the results' ``base`` column."""
    from t2ibench.results import run_base

    return run_base(run_dir)


def _joint_analysis(grid: Grid, out: Path, run_dirs: list[Path]) -> Path:
    """The joint results table and report of ``run_dirs`` (grid order), on the driver."""
    import pandas as pd

    from t2ibench.analysis import analyze
    from t2ibench.profiles import SWEEP_HOOKS
    from t2ibench.results import merge_results, read_results, write_results

    merged = None
    for run_dir in run_dirs:
        # Checkpoint names repeat across runs (every LoRA run has a lora-e000010); in the joint
        # table a checkpoint is "<run>/<checkpoint>", or merging would keep one run per name.
        df = read_results(run_dir / "results")
        # The base model ("base", shared by every run) stays one checkpoint per base: the
        # ``base`` column (part of a row's key) keeps two bases' base-model rows apart, and the
        # analysis ranks within it (a FLUX checkpoint is never ranked against an SDXL one).
        ck = df["checkpoint"].astype(str)
        df["checkpoint"] = ck.where(ck == "base", run_dir.name + "/" + ck)
        df["base"] = base_label(run_dir)
        merged = merge_results(merged, df)
    write_results(merged, out / "results")
    report = out / "report"
    sections = []
    budgets = [
        pd.read_csv(d / "results" / "budget.csv", keep_default_na=False).assign(
            checkpoint=lambda t, d=d: d.name + "/" + t["checkpoint"].astype(str)
        )
        for d in run_dirs
        if (d / "results" / "budget.csv").is_file()
    ]
    if budgets:  # adaptive runs: which rule stopped what, over the sweep
        from t2ibench.analysis.sequential import budget_section

        atomic_write(out / "results" / "budget.csv", pd.concat(budgets).to_csv(index=False))
        sections.append(budget_section(out / "results" / "budget.csv"))
    for name in SWEEP_HOOKS.names():
        sections += SWEEP_HOOKS.get(name).run(out, report, run_dirs) or []
    analyze(out / "results", report, title=f"t2ibench sweep: {grid.name}", extra_sections=sections)
    return report
