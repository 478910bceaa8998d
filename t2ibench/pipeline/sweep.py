"""``t2ibench sweep``: a grid of configs × seeds, each a resumable run, then one joint analysis.

Grid files are TOML (shipped ones in ``t2ibench/grids/``: ``paper`` = the paper's 26 configs × 3
seeds, ``cpu`` = a small CPU grid)::

    [grid]
    name = "cpu"
    seeds = [23, 24]            # training seeds; seed_labels name them in results ("a", "b")
    seed_labels = ["a", "b"]
    set = ["epochs=2"]          # overrides for every config
    base = "tiny"               # optional; else --base or the offline default
    profile = "tiny"            # optional: toy | tiny | paper (see t2ibench.pipeline.defaults)
    dataset = "path"            # optional; else --dataset or the offline default
    [run]                       # optional RunOptions fields, e.g. images_per_leaf = 4

    [[config]]
    name = "lora-default"
    trainer = "lora"
    set = ["dim=8", "alpha=4"]
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from t2ibench.errors import ConfigError

_GRID_KEYS = {"name", "seeds", "seed_labels", "set", "base", "dataset", "profile"}
_CONFIG_KEYS = {"name", "trainer", "set"}
_RUN_KEYS = {
    "images_per_leaf",
    "encoders",
    "resize",
    "metrics",
    "prompt_types",
    "steps",
    "guidance_scale",
    "resolution",
    "batch_size",
}


@dataclass
class Grid:
    name: str
    seeds: list[int]
    seed_labels: list[str]
    configs: list[dict[str, Any]]
    common: list[str] = field(default_factory=list)
    base: str | None = None
    dataset: str | None = None
    profile: str | None = None
    run: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def run_options(self, *, out: Path, device: str, dataset=None, base=None, progress=True):
        from t2ibench.pipeline.run import RunOptions

        for cfg in self.configs:
            for seed, label in zip(self.seeds, self.seed_labels, strict=True):
                yield RunOptions(
                    trainer=cfg["trainer"],
                    profile=self.profile,
                    dataset=str(dataset or self.dataset) if (dataset or self.dataset) else None,
                    base=str(base or self.base) if (base or self.base) else None,
                    overrides=(*self.common, *cfg.get("set", [])),
                    seed=seed,
                    device=device,
                    out=str(Path(out) / "runs"),
                    name=f"{cfg['name']}-{label}",
                    analyze=False,
                    progress=progress,
                    checkpoint_columns={"config": cfg["name"], "seed": label},
                    **self.run,
                )


def _shipped(name: str) -> Path | None:
    res = resources.files("t2ibench").joinpath("grids", f"{name}.toml")
    return Path(str(res)) if res.is_file() else None


def load_grid(spec: str | Path) -> Grid:
    """A grid from a TOML path or a shipped grid name."""
    path = Path(spec)
    if not path.is_file():
        shipped = _shipped(str(spec))
        if shipped is None:
            raise ConfigError(f"--grid {spec}: no such file and no shipped grid of that name")
        path = shipped
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    unknown = set(data) - {"grid", "config", "run"}
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {sorted(unknown)}")
    g = data.get("grid", {})
    if set(g) - _GRID_KEYS:
        raise ConfigError(f"{path}: grid.{sorted(set(g) - _GRID_KEYS)[0]}: unknown key")
    run = data.get("run", {})
    if set(run) - _RUN_KEYS:
        raise ConfigError(f"{path}: run.{sorted(set(run) - _RUN_KEYS)[0]}: unknown key")
    configs = data.get("config", [])
    if not configs:
        raise ConfigError(f"{path}: no [[config]] entries")
    names = set()
    for i, c in enumerate(configs):
        if set(c) - _CONFIG_KEYS:
            raise ConfigError(
                f"{path}: config[{i}].{sorted(set(c) - _CONFIG_KEYS)[0]}: unknown key"
            )
        if "name" not in c or "trainer" not in c:
            raise ConfigError(f"{path}: config[{i}]: needs name and trainer")
        if c["name"] in names:
            raise ConfigError(f"{path}: config[{i}].name: {c['name']!r} repeats")
        names.add(c["name"])
    seeds = [int(s) for s in g.get("seeds", [23])]
    labels = [str(s) for s in g.get("seed_labels", seeds)]
    if len(labels) != len(seeds):
        raise ConfigError(f"{path}: grid.seed_labels: {len(labels)} labels for {len(seeds)} seeds")
    return Grid(
        name=str(g.get("name", path.stem)),
        seeds=seeds,
        seed_labels=labels,
        configs=configs,
        common=list(g.get("set", [])),
        base=g.get("base"),
        dataset=g.get("dataset"),
        profile=g.get("profile"),
        run=run,
        source=str(path),
    )


def run_sweep(
    grid: Grid, *, out: Path, device: str = "cpu", dataset=None, base=None, progress: bool = True
) -> Path:
    """Every run of the grid (resumable), then the joint results table and report under ``out``."""
    from t2ibench.analysis import analyze
    from t2ibench.pipeline.run import run
    from t2ibench.results import merge_results, read_results, write_results

    out = Path(out)
    merged = None
    toy = False
    for opts in grid.run_options(
        out=out, device=device, dataset=dataset, base=base, progress=progress
    ):
        run_dir = run(opts)
        # Checkpoint names repeat across runs (every LoRA run has a lora-e000010); in the joint
        # table a checkpoint is "<run>/<checkpoint>", or merging would keep one run per name.
        df = read_results(run_dir / "results")
        df["checkpoint"] = run_dir.name + "/" + df["checkpoint"].astype(str)
        merged = merge_results(merged, df)
        toy = toy or _is_toy_run(run_dir)
    write_results(merged, out / "results")
    report = out / "report"
    analyze(out / "results", report, title=f"t2ibench sweep: {grid.name}")
    if toy:
        # The toy world has ground truth: check every metric against the probe.
        from t2ibench.toy.validity import write_validity_report

        write_validity_report(out, report / "validity")
        _link(
            report,
            "validity/validity.html",
            "Validity: each metric against the probe's ground truth",
        )
    return report


def _is_toy_run(run_dir: Path) -> bool:
    import json

    try:
        from t2ibench.toy.dataset import MARKER
    except ImportError:
        return False
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    return (Path(record["dataset"]["root"]) / MARKER).is_file()


def _link(report: Path, target: str, text: str) -> None:
    """Add a link to a companion page at the end of report.html and summary.md."""
    import html

    page = report / "report.html"
    body = page.read_text(encoding="utf-8")
    link = f'<h2>{html.escape(text)}</h2><p><a href="{html.escape(target)}">{html.escape(target)}</a></p>'
    page.write_text(body.replace("</body>", link + "\n</body>", 1), encoding="utf-8")
    with open(report / "summary.md", "a", encoding="utf-8") as f:
        f.write(f"\n## {text}\n\n[{target}]({target})\n")
