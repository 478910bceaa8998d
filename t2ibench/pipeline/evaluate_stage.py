"""The evaluate stage of ``t2ibench run``: each checkpoint's images scored
(:func:`t2ibench.pipeline.evaluate.evaluate_images`) into ``results/parts/<checkpoint>/``, merged
into ``results/``, then the report's anchors (the base model as checkpoint ``base``, the
real-image ceiling, copy detection: :mod:`t2ibench.pipeline.anchors`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from t2ibench.fsutil import atomic_write
from t2ibench.pipeline.stage import Run

#: Next to each results part: digests of the images it scored (its manifest and the base's).
PART_INPUTS = "inputs.json"


class EvaluateStage:
    """A part counts only for the images it scored: regenerated images that differ (another
    device, a replaced file) are scored again. The stage is done when every part is current and
    the merged table and anchors were made from this set of parts."""

    name = "evaluate"
    kept = "every checkpoint is scored on its current images"

    def done(self, run: Run) -> bool:
        return (
            not self._todo(run)
            and run.state.info("evaluate").get("inputs") == self._inputs(run)
            and (run.results_dir / "results.parquet").is_file()
        )

    def run(self, run: Run) -> None:
        from t2ibench.pipeline.anchors import evaluate_anchors
        from t2ibench.results import BASE_COLUMN, append_results, read_results, write_results

        r = run.resolved
        base = self._base(run)
        if (run.results_dir / "results.parquet").is_file():
            # a table merged before results named their base: name it, or its rows and the
            # parts' (which do) would be two keys for one row
            merged = read_results(run.results_dir)
            if BASE_COLUMN not in merged.columns:
                write_results(merged.assign(**{BASE_COLUMN: base}), run.results_dir)
        todo = self._todo(run)
        if todo:
            encoders = self._encoders(run)
            if r.config.evaluate.workers > 1:
                self._encode_sharded(run, todo, encoders)
            for ck in todo:
                self._score(run, ck, encoders)
        for ck in run.checkpoints:
            # every row names the base its images came from (parts scored before parts did too)
            part = read_results(run.parts / run.names[ck])
            append_results(part.assign(**{BASE_COLUMN: base}), run.results_dir)
        # The report's anchors: the base model scored as checkpoint "base", the real-image
        # ceiling and copy detection (each skipped when already written).
        evaluate_anchors(
            run.results_dir,
            r.dataset,
            lambda: self._encoders(run),
            r.metrics,
            run.base_images,
            {run.names[ck]: run.images / run.names[ck] for ck in run.checkpoints},
            self._cache(run),
            progress=r.options.progress,
            plans=lambda encoders: self._plans(run, encoders),
            base=base,
        )
        run.state.mark("evaluate", inputs=self._inputs(run))

    # -- the units ---------------------------------------------------------------------------------

    def _score(self, run: Run, ck: Path, encoders: list) -> None:
        from t2ibench.pipeline.evaluate import evaluate_images
        from t2ibench.results import write_results

        r, name = run.resolved, run.names[ck]
        df = evaluate_images(
            run.images / name,
            r.dataset,
            encoders,
            metrics=r.metrics,
            base_images_dir=run.base_images,
            cache=self._cache(run),
            checkpoint_info=run.once("columns", lambda: self._columns(run)),
            plans=self._plans(run, encoders),
            progress=r.options.progress,
        )
        write_results(df, run.parts / name, formats=("parquet",))
        atomic_write(run.parts / name / PART_INPUTS, json.dumps(self._part_inputs(run, ck)))
        run.state.add("evaluated", name)

    def _encode_sharded(self, run: Run, todo: list[Path], encoders: list) -> None:
        """The same feature rows, encoded by Ray workers (the evaluations below, then the base
        model's, the anchors', are recorded and shared out)."""
        from functools import partial

        from t2ibench.pipeline.evaluate import evaluate_images
        from t2ibench.pipeline.load_encoders import create_encoders
        from t2ibench.pipeline.shard import encode_sharded

        r = run.resolved

        def record() -> None:
            folders = [run.images / run.names[ck] for ck in todo]
            if not (run.parts / "base" / "results.parquet").is_file():
                folders.append(run.base_images)
            for folder in folders:
                evaluate_images(
                    folder,
                    r.dataset,
                    encoders,
                    metrics=r.metrics,
                    base_images_dir=run.base_images,
                    cache=self._cache(run),
                    progress=False,
                )

        encode_sharded(
            record,
            encoders,
            make_encoders=partial(create_encoders, r.encoders, r.resize),
            device=r.options.device,
            workers=r.config.evaluate.workers,
            progress=r.options.progress,
        )

    # -- what the units share ----------------------------------------------------------------------

    def _todo(self, run: Run) -> list[Path]:
        return run.once(
            "evaluate", lambda: [ck for ck in run.checkpoints if not self._scored(run, ck)]
        )

    def _scored(self, run: Run, ck: Path) -> bool:
        part = run.parts / run.names[ck]
        if not (part / "results.parquet").is_file() or not (part / PART_INPUTS).is_file():
            return False
        try:
            return json.loads((part / PART_INPUTS).read_text(encoding="utf-8")) == (
                self._part_inputs(run, ck)
            )
        except json.JSONDecodeError:
            return False

    @staticmethod
    def _part_inputs(run: Run, ck: Path) -> dict[str, str]:
        from t2ibench.pipeline.manifest import MANIFEST_NAME, manifest_digest, read_manifest

        return {
            "images": manifest_digest(read_manifest(run.images / run.names[ck] / MANIFEST_NAME)),
            "base_images": manifest_digest(read_manifest(run.base_images / MANIFEST_NAME)),
        }

    def _inputs(self, run: Run) -> dict[str, dict[str, str]]:
        """What the merged table and the anchors were made from: each part's images."""
        return {run.names[ck]: self._part_inputs(run, ck) for ck in run.checkpoints}

    @staticmethod
    def _base(run: Run) -> str:
        """The results' ``base`` column: the base the run's config names (as a sweep's joint
        table names it), so results of several runs group by base alike."""
        from t2ibench.results import base_name

        cfg = run.resolved.config
        return base_name({"base": cfg.base, "base_path": cfg.base_path})

    def _columns(self, run: Run) -> dict[str, dict[str, Any]]:
        base = self._base(run)
        return {k: {**v, "base": base} for k, v in run.resolved.source.columns(run).items()}

    @staticmethod
    def _cache(run: Run) -> Any:
        from t2ibench.encoders import FeatureCache

        return run.once("cache", lambda: FeatureCache(Path(run.options.out) / ".feature-cache"))

    @staticmethod
    def _encoders(run: Run) -> list:
        """Loaded once per invocation: the checkpoints' scoring and the anchors share them
        (four full-size encoders take seconds to load and GiBs to hold twice)."""

        def load() -> list:
            r = run.resolved
            if r.loaded_metric_profile.defaults:
                from t2ibench.pipeline.load_encoders import create_encoders

                return create_encoders(r.encoders, r.resize, r.options.device)
            from t2ibench.metric_profiles.compile import run_encoders

            return run_encoders(r.loaded_metric_profile, r.encoders, r.options.device)

        return run.once("encoders", load)

    @staticmethod
    def _plans(run: Run, encoders: list) -> Any:
        """What the engine computes: the protocol's measures, bound to these encoders."""
        from t2ibench.metric_profiles.compile import profile_plans

        profile = run.resolved.loaded_metric_profile
        return profile_plans(profile, None if profile.defaults else encoders, run.resolved.metrics)
