"""``--budget adaptive``: generate and score in rounds, stop what is known well enough.

**The image order.** Every run, full or adaptive, generates its jobs in one fixed, seeded order
(:mod:`t2ibench.pipeline.order`), its batches cut from it at fixed positions: the first ``k``
images of a prompt type in an adaptive run are, byte for byte, the full run's first ``k``, and a
random sample of its images spread evenly over the leaves.

**Rounds.** Round ``r`` admits, for every checkpoint × prompt type still running, the first
``r · round_images`` images per leaf (rounded up to a whole generation batch, at most all of them),
generates them (:class:`~t2ibench.pipeline.generate_stage.GenerateStage` with the admitted jobs; a batch that
straddles the admitted end is made whole and only its admitted images written),
scores each image on the criteria's per-image headline measurements (the evaluation engine, through
:func:`t2ibench.pipeline.per_image.per_image_scores`) and decides with the sequential rule of
:mod:`t2ibench.analysis.sequential` (look ``r``):

- ``width``: every headline measurement of the prompt type has half-width ≤ ``budget.width``;
- ``settled`` (checkpoint folders: checkpoints raced; sweeps: configs raced by the sweep, which
  writes :data:`STOP_NAME` into the run folder): the entity's place is settled on every criterion;
- ``all images``: the full run's count is reached;
- ``not judged``: no criterion's per-image headline measurement uses the prompt type (it keeps its
  first round's images).

The decisions are written to ``adaptive.json`` after every round (atomically). A run killed in the
middle of a round redoes that round from the last decisions: the admitted jobs are the same, the
generate stage keeps every image already made, scoring is deterministic, so the results are those
of an uninterrupted run and no image or manifest line is made twice. Once everything has stopped
the evaluate stage scores the admitted images as in a full run (``n_images`` per row says how
many) and ``results/budget.csv`` records per checkpoint × prompt type the images used, the full
count, the rule that stopped it and why.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from t2ibench.errors import ConfigError, T2IBenchError
from t2ibench.fsutil import atomic_write
from t2ibench.pipeline.order import ORDER_SEED, blocks, ordered_jobs, round_end

log = logging.getLogger("t2ibench.run")
__all__ = ["ORDER_SEED", "AdaptiveStage", "blocks", "ordered_jobs", "round_end"]

#: the adaptive record of a run folder
STATE_NAME = "adaptive.json"
#: written by a sweep into a run folder whose config's place is settled: ``{"reason": ...}``
STOP_NAME = "adaptive-stop.json"
#: the per-image headline values of the last round (a sweep races its configs on them)
VALUES_NAME = "adaptive-values.parquet"
#: the results table of images used and stopping reasons
BUDGET_TABLE = "budget.csv"
BUDGET_COLUMNS = ["checkpoint", "prompt_type", "images", "images_full", "rounds", "rule", "reason"]


class AdaptiveState:
    """``adaptive.json``: the last finished round and, per checkpoint × prompt type, the end of
    its admitted prefix and, once stopped, the rule and the reason."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.round = 0
        self.units: dict[str, dict[str, dict[str, Any]]] = {}
        self.finished = False
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise T2IBenchError(f"{path}: corrupt adaptive record ({exc.msg})") from None
            self.round, self.units = data["round"], data["units"]
            self.finished = data.get("finished", False)

    def active(self) -> list[tuple[str, str]]:
        return [(ck, pt) for ck, u in self.units.items() for pt, v in u.items() if not v["rule"]]

    def stop(self, ck: str, pt: str, rule: str, reason: str) -> None:
        unit = self.units[ck][pt]
        if not unit["rule"]:
            unit.update(rule=rule, reason=reason, rounds=self.round)

    def save(self) -> None:
        data = {"round": self.round, "finished": self.finished, "units": self.units}
        atomic_write(self.path, json.dumps(data, indent=2, sort_keys=True))


class AdaptiveStage:
    """Generate and score in rounds (module doc), then the evaluate stage on what was admitted.
    In place of the generate and evaluate stages when ``budget.mode`` is ``adaptive``."""

    name = "adaptive"
    kept = "every checkpoint x prompt type stopped, its admitted images scored"

    def done(self, run: Any) -> bool:
        from t2ibench.pipeline.evaluate_stage import EvaluateStage

        st = AdaptiveState(run.run_dir / STATE_NAME)
        if not st.finished:
            return False
        self._admit(run, st)
        return EvaluateStage().done(run) and (run.results_dir / BUDGET_TABLE).is_file()

    def run(self, run: Any) -> None:
        from t2ibench.pipeline.evaluate_stage import EvaluateStage
        from t2ibench.pipeline.generate_stage import GenerateStage

        budget = run.resolved.config.budget
        st = AdaptiveState(run.run_dir / STATE_NAME)
        names = [run.names[ck] for ck in run.checkpoints]
        spans = blocks(run.jobs)
        for name in names:
            st.units.setdefault(name, {})
            for pt, (s, _, _) in spans.items():
                st.units[name].setdefault(pt, {"end": s, "rule": "", "reason": "", "rounds": 0})
        limit = getattr(run.options, "round_limit", None)
        while not st.finished:
            self._outside_stop(run, st)
            if not st.active():
                st.finished = True
                break
            if limit is not None and st.round >= limit:
                st.save()
                log.info("adaptive: paused after round %d (the sweep decides next)", st.round)
                return
            look = st.round + 1
            batch = run.resolved.generation.batch_size
            for ck, pt in st.active():
                s, e, leaves = spans[pt]
                images = look * budget.round_images
                st.units[ck][pt]["end"] = round_end(s, e, leaves, images, batch)
            self._admit(run, st)
            run.forget("generate")
            stage = GenerateStage()
            if not stage.done(run):
                stage.run(run)
            st.round = look
            self._decide(run, st, spans)
            st.save()
            log.info("adaptive: round %d done, %d still running", look, len(st.active()))
        st.save()
        self._admit(run, st)
        for key in ("generate", "evaluate"):
            run.forget(key)
        stage = GenerateStage()
        if not stage.done(run):  # images lost since their round: made again
            stage.run(run)
        EvaluateStage().run(run)
        self._write_table(run, st, spans)

    # -- admission ---------------------------------------------------------------------------------

    @staticmethod
    def _admit(run: Any, st: AdaptiveState) -> None:
        """``run.admitted`` from the recorded prefix ends; the base model gets the longest."""
        spans = blocks(run.jobs)
        admitted: dict[str, list[Any]] = {}
        longest: dict[str, int] = {}
        for name, units in st.units.items():
            jobs = []
            for pt, unit in units.items():
                jobs += run.jobs[spans[pt][0] : unit["end"]]
                longest[pt] = max(longest.get(pt, 0), unit["end"])
            admitted[name] = jobs
        admitted["base"] = [j for pt, end in longest.items() for j in run.jobs[spans[pt][0] : end]]
        run.admitted = admitted

    # -- decisions ---------------------------------------------------------------------------------

    @staticmethod
    def _outside_stop(run: Any, st: AdaptiveState) -> None:
        """A sweep's racing decision for this run's config: every unit still running stops."""
        path = run.run_dir / STOP_NAME
        if path.is_file():
            reason = json.loads(path.read_text(encoding="utf-8")).get("reason", "settled")
            for ck, pt in st.active():
                st.stop(ck, pt, "settled", reason)

    def _decide(self, run: Any, st: AdaptiveState, spans: dict) -> None:
        from t2ibench.analysis.sequential import interval, width_met

        budget = run.resolved.config.budget
        active = st.active()
        df = per_image_values(run, list(st.units))  # every checkpoint: racing compares them all
        _write_parquet(df, run.run_dir / VALUES_NAME)
        judged = set(df["prompt_type"]) if not df.empty else set()
        for ck, pt in active:
            full = st.units[ck][pt]["end"] == spans[pt][1]
            if pt not in judged:
                if st.round == 1 or full:
                    st.stop(ck, pt, "not judged", "no per-image headline measurement uses it")
                continue
            rows = df[(df["checkpoint"] == ck) & (df["prompt_type"] == pt)]
            ivs = [
                interval(g["value"], st.round, budget.alpha)
                for _, g in rows.groupby(["metric", "encoder"], dropna=False)
            ]
            if width_met(ivs, budget.width):
                worst = max(iv.half_width for iv in ivs)
                st.stop(ck, pt, "width", f"half-width {worst:.4g} <= {budget.width:g}")
            elif full:
                worst = max((iv.half_width for iv in ivs), default=math.inf)
                st.stop(ck, pt, "all images", f"half-width {worst:.4g} at the full count")
        if getattr(run.resolved.source, "name", "") == "checkpoints" and not df.empty:
            for ck, reason in race_entities(df, "checkpoint", st.round, budget.alpha).items():
                for pt in st.units.get(ck, {}):
                    st.stop(ck, pt, "settled", reason)

    # -- the record --------------------------------------------------------------------------------

    @staticmethod
    def _write_table(run: Any, st: AdaptiveState, spans: dict) -> None:
        rows = []
        for ck, units in st.units.items():
            for pt, u in units.items():
                s, e, _ = spans[pt]
                rows.append(
                    dict(checkpoint=ck, prompt_type=pt, images=u["end"] - s, images_full=e - s,
                         rounds=u["rounds"], rule=u["rule"], reason=u["reason"])
                )  # fmt: skip
        table = pd.DataFrame(rows, columns=BUDGET_COLUMNS)
        run.results_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run.results_dir / BUDGET_TABLE, table.to_csv(index=False))
        used, full = int(table["images"].sum()), int(table["images_full"].sum())
        run.record.update({"budget": {"mode": "adaptive", "images": used, "images_full": full}})
        run.state.mark("adaptive", images=used, images_full=full)
        log.info("adaptive: %d of the full run's %d images", used, full)


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    df.astype({"resize": "string"}).to_parquet(buffer, index=False)
    atomic_write(path, buffer.getvalue())


def per_image_values(run: Any, names: Sequence[str]) -> pd.DataFrame:
    """Per-image values of the criteria's per-image headline measurements for checkpoints
    ``names`` (their admitted images): the engine's, through ``per_image_scores``. Columns
    checkpoint, criterion, metric, prompt_type, encoder, resize, image, value."""
    from t2ibench.analysis.checkpoints import headline_measures
    from t2ibench.analysis.targets import criteria_targets
    from t2ibench.metrics import get_metric
    from t2ibench.pipeline.evaluate_stage import EvaluateStage
    from t2ibench.pipeline.per_image import per_image_scores

    r = run.resolved
    encoders = run.once("encoders", lambda: EvaluateStage._encoders(run))
    wanted = {t.metric for ts in criteria_targets(r.metrics).values() for t in ts}
    plans = [
        p
        for p in EvaluateStage._plans(run, encoders)
        if p.name in wanted and get_metric(p.name).per_image
    ]
    cols = ["checkpoint", "criterion", "metric", "prompt_type", "encoder", "resize", "image"]
    if not plans:
        return pd.DataFrame(columns=[*cols, "value"])
    parts = []
    for name in names:
        df = per_image_scores(
            run.images / name,
            r.dataset,
            encoders,
            plans=plans,
            cache=EvaluateStage._cache(run),
            base_images_dir=run.base_images,
        )
        if not df.empty:
            parts.append(df.assign(checkpoint=name))
    if not parts:
        return pd.DataFrame(columns=[*cols, "value"])
    df = pd.concat(parts, ignore_index=True)
    if "resize" not in df:
        df["resize"] = None
    heads = headline_measures(df)
    keys = ["metric", "prompt_type", "encoder", "resize"]
    return df.merge(heads, on=keys, how="inner")[[*cols, "value"]]


def race_entities(
    df: pd.DataFrame, by: str, look: int, alpha: float, unit: Sequence[str] = ("image",)
) -> dict[str, str]:
    """The entities (``by``: checkpoint or config) of per-image headline values ``df`` whose place
    is settled on every criterion at ``look``: :func:`t2ibench.analysis.sequential.paired_race` on
    values paired by ``unit`` (an image file is the same job, seed and prompt, in every
    checkpoint; an entity's several checkpoints or seeds are averaged per unit)."""
    from t2ibench.analysis.sequential import paired_race, stopped_entities
    from t2ibench.metrics import get_metric

    if df[by].nunique() < 2:
        return {}
    tables: dict[str, dict[str, Any]] = {}
    direction = {}
    for (criterion, *m), g in df.groupby(["criterion", "metric", "prompt_type", "encoder"]):
        name = "/".join(map(str, m))
        direction[name] = get_metric(m[0]).higher_is_better
        tables.setdefault(criterion, {})[name] = g.pivot_table(
            index=list(unit), columns=by, values="value", aggfunc="mean"
        )
    settled = paired_race(tables, direction, look, alpha)
    return stopped_entities(settled, sorted(tables))


def check_budget(r: Any) -> None:
    """What ``--budget adaptive`` cannot do yet, refused before any work."""
    if r.config.budget.mode != "adaptive":
        return
    if r.config.generate.workers > 1 or r.config.evaluate.workers > 1:
        raise ConfigError(
            "--budget adaptive: generate.workers / evaluate.workers > 1 (Ray) are not supported "
            "with rounds yet; use 1"
        )
