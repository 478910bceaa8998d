"""The generate stage of ``t2ibench run``: the base model's images (shared by every run under the
same ``--out``) and each checkpoint's, seed-paired, made by :mod:`t2ibench.pipeline.generate`
(or shared by Ray workers: :mod:`t2ibench.pipeline.shard`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from t2ibench.pipeline.generate import (
    GenerationSettings,
    Job,
    checkpoint_on_base,
    generate_images,
    job_file,
    pending_jobs,
)
from t2ibench.pipeline.manifest import MANIFEST_NAME, read_manifest
from t2ibench.pipeline.stage import Run

log = logging.getLogger(__name__)


def images_done(
    jobs: Sequence[Job], folder: Path, checkpoint: str, settings: GenerationSettings
) -> bool:
    """Whether ``folder`` holds every job's image, each hashing to its manifest's sha256."""
    if not (folder / MANIFEST_NAME).is_file():
        return False
    todo, _ = pending_jobs(jobs, folder, checkpoint=checkpoint, settings=settings)
    made = {rec.file for rec in read_manifest(folder / MANIFEST_NAME)}
    lost = [j for j in todo if job_file(j) in made]  # recorded once: its file went or changed
    if lost:
        log.warning(
            "%s: %d image(s) missing or changed since generation (first: %s); making them again",
            folder,
            len(lost),
            f"{lost[0].leaf}/{lost[0].prompt_type} #{lost[0].index}",
        )
    if len(todo) > len(lost):
        log.info("%s: %d image(s) not made yet; making them", folder, len(todo) - len(lost))
    return not todo


class GenerateStage:
    """The base model's images (shared under ``--out``) and each checkpoint's, seed-paired.
    Finished folders are checked again (every image present, every hash as recorded): a deleted
    or replaced image is made again instead of failing or being scored."""

    name = "generate"
    kept = "every image is on disk as recorded"

    def done(self, run: Run) -> bool:
        base_todo, todo = self._todo(run)
        return not base_todo and not todo

    def run(self, run: Run) -> None:
        r = run.resolved
        base_todo, todo = self._todo(run)
        load_kwargs = {
            "device": r.options.device,
            "allow_pickle": r.options.allow_pickle,
            **r.generation.load_kwargs(),
        }
        targets = [("base", "base", run.base_images)] if base_todo else []
        targets += [(ck, run.names[ck], run.images / run.names[ck]) for ck in todo]
        if r.config.generate.workers > 1:  # the same images and manifests, made by Ray workers
            from t2ibench.pipeline.shard import Target, generate_sharded

            generate_sharded(
                r.base,
                [Target(*t) for t in targets],
                run.jobs,
                r.generation,
                workers=r.config.generate.workers,
                load_kwargs=load_kwargs,
                progress=r.options.progress,
            )
            for _, name, _ in targets:
                run.state.add("generated", name)
            return
        from t2ibench.models import load_base

        pipe = load_base(r.base, **load_kwargs)
        _eval_denoiser(pipe)
        for ck, name, folder in targets:
            # an adapter file goes on the base; a full checkpoint (a diffusers folder) is loaded
            tuned_pipe = (
                contextlib.nullcontext(pipe)
                if name == "base"
                else checkpoint_on_base(pipe, ck, fuse=r.generation.fuse_adapter, **load_kwargs)
            )
            with tuned_pipe as tuned:
                generate_images(
                    tuned,
                    run.jobs,
                    folder,
                    checkpoint=name,
                    settings=r.generation.of_checkpoint(ck),
                    progress=r.options.progress,
                    wanted=None if run.admitted is None else run.jobs_of(name),
                )
            run.state.add("generated", name)

    @staticmethod
    def _todo(run: Run) -> tuple[bool, list[Path]]:
        """(base images to make?, checkpoints with images to make), checked once per invocation."""

        def check() -> tuple[bool, list[Path]]:
            settings = run.resolved.generation
            base_todo = not images_done(
                run.jobs_of("base"), run.base_images, "base", settings.of_checkpoint("base")
            )
            todo = [
                ck
                for ck in run.checkpoints
                if not images_done(
                    run.jobs_of(run.names[ck]), run.images / run.names[ck], run.names[ck], settings
                )
            ]
            return base_todo, todo

        return run.once("generate", check)


def _eval_denoiser(pipe: Any) -> None:
    """A pipeline handed over from training may still have its denoiser in train mode."""
    from t2ibench.architectures import architecture_of_pipe

    denoiser = architecture_of_pipe(pipe).denoiser_of(pipe)
    if denoiser.training:
        denoiser.eval()
