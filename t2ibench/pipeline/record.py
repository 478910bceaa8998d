"""A run's record on disk: ``state.json`` (what is done), ``run.json`` (what ran, with which
versions, commit, timings and cost) and ``run.log`` (every invocation's log).

The stages (:mod:`t2ibench.pipeline.stage`) write here; nothing here knows what a stage does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from t2ibench.errors import T2IBenchError
from t2ibench.fsutil import atomic_write

T = TypeVar("T")

#: the packages whose versions ``run.json`` records
RECORDED_PACKAGES = (
    "t2ibench",
    "torch",
    "diffusers",
    "transformers",
    "open-clip-torch",
    "timm",
    "lycoris-lora",
    "safetensors",
    "pandas",
    "catboost",
    "shap",
)


class RunState:
    """``state.json``: which stages and checkpoints are done. Written atomically after each unit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"done": {}, "generated": [], "evaluated": []}
        if path.is_file():
            try:
                self.data.update(json.loads(path.read_text(encoding="utf-8")))
            except json.JSONDecodeError as exc:
                raise T2IBenchError(
                    f"{path}: corrupt run state ({exc.msg}); delete it to redo checks"
                ) from None

    def done(self, key: str) -> bool:
        return key in self.data["done"]

    def info(self, key: str) -> dict[str, Any]:
        """What :meth:`mark` recorded for ``key`` (empty when not done)."""
        return self.data["done"].get(key, {})

    def mark(self, key: str, **info: Any) -> None:
        self.data["done"][key] = {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
        self.save()

    def add(self, listname: str, item: str) -> None:
        if item not in self.data[listname]:
            self.data[listname].append(item)
        self.save()

    def has(self, listname: str, item: str) -> bool:
        return item in self.data[listname]

    def save(self) -> None:
        atomic_write(self.path, json.dumps(self.data, indent=2, sort_keys=True))


class RunRecord:
    """``run.json``: the resolved config, versions, commit, seeds, stage timings and cost. A folder
    that holds another config's run (a reused ``--name``) is refused, never mixed."""

    def __init__(self, path: Path, run_hash: str) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
        if self.data.get("run_hash") not in (None, run_hash):
            raise T2IBenchError(
                f"{path}: this run folder holds a run with a different config "
                f"(hash {self.data['run_hash'][:10]} ≠ {run_hash[:10]}); use another --name/--out"
            )

    def update(self, fields: Mapping[str, Any]) -> None:
        self.data.update(fields)
        self.save()

    def save(self) -> None:
        atomic_write(self.path, json.dumps(self.data, indent=2, default=str))

    def timed(self, stage: str, fn: Callable[[], T]) -> T:
        """Run ``fn``, adding its wall time to ``timings[stage]`` (a resumed stage adds up)."""
        timings: dict[str, float] = self.data.get("timings", {})
        t0 = time.perf_counter()
        out = fn()
        timings[stage] = round(timings.get(stage, 0.0) + time.perf_counter() - t0, 3)
        self.data["timings"] = timings
        self.save()
        return out

    def add_train_segment(self, segment: Mapping[str, Any]) -> None:
        """Cost: each invocation that trains is one segment (time, peak memory, epochs)."""
        self.data.setdefault("cost", {}).setdefault("train_segments", []).append(dict(segment))
        self.save()


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in RECORDED_PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = ""
    return out


def setup_log(run_dir: Path) -> logging.Handler:
    """Append this invocation's ``t2ibench`` log to ``run_dir/run.log`` (the folder is made)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
    except OSError as exc:
        raise T2IBenchError(
            f"{run_dir}: cannot create the run folder ({exc.strerror or exc}); check --out"
        ) from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("t2ibench")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def quiet_libraries() -> None:
    """The libraries' own loading bars ("Loading pipeline components", "Loading weights") would
    bury the stage bars; their warnings still go to the log."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def kept(run_dir: Path) -> str:
    """One line for Ctrl-C: what is on disk and how to go on."""
    ckpts = [p for p in (run_dir / "checkpoints").glob("*-e*") if p.suffix in ("", ".safetensors")]
    manifests = list((run_dir / "images").glob("*/manifest.jsonl"))
    images = 0
    for m in manifests:
        with contextlib.suppress(OSError):
            images += sum(1 for line in m.read_text(encoding="utf-8").splitlines() if line.strip())
    parts = list((run_dir / "results" / "parts").glob("*/results.parquet"))
    return (
        f"kept {len(ckpts)} checkpoint(s), {images} image(s) of {len(manifests)} checkpoint(s) "
        f"and {len(parts)} evaluated checkpoint(s) in {run_dir} (only work in flight is lost); "
        "rerun the same command to resume"
    )
