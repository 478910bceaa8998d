"""What every judge shares: the encoder base, the ``judge_scores`` input, weight reading, errors.

A judge is an encoder of kind ``score`` whose ``score(images, prompts)`` returns one number per
(image, prompt). ``judge_scores`` is the metric input that feeds it the group's generated images and
their prompts after :func:`t2ibench.prompts.clean_prompt` (the identifier removed, as CLIP-T reads
them), from the judge the metric names only. Scores are cached by sha256(image bytes, prompt), so
a rerun recomputes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from t2ibench.encoders.base import (
    Encoder,
    EncoderSpec,
    check_local_path,
    local_weights_id,
    tiny_folder,
)
from t2ibench.errors import T2IBenchError
from t2ibench.metrics.inputs import EvalContext, InputProvider, register_input_provider
from t2ibench.metrics.quality import MeanScore, mean_score
from t2ibench.metrics.registry import MetricSpec, register_metric


class JudgeEncoder(Encoder):
    """A loaded judge: ``_score_batch(pixels, texts)`` → (n,) scores, one per (image, text)."""

    kind = "score"
    needs_prompt = True

    def _score_batch(self, pixels: torch.Tensor, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor:
        raise T2IBenchError(f"judge {self.name} scores an image with its prompt: use score()")

    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        """Scores (n,) float32 of ``images[i]`` with ``prompts[i]``, ``batch_size`` at a time."""
        if len(images) != len(prompts):
            raise T2IBenchError(f"judge {self.name}: {len(images)} images, {len(prompts)} prompts")
        out = []
        for s in range(0, len(images), self.batch_size):
            pixels = torch.stack([self.preprocess(im) for im in images[s : s + self.batch_size]])
            texts = list(prompts[s : s + self.batch_size])
            out.append(
                self._run(lambda p, t=texts: self._score_batch(p.to(self.device), t), pixels)
            )
        return torch.cat(out).reshape(-1) if out else torch.empty(0)


class JudgePreprocess:
    """A judge's own image preprocessing (a callable PIL → float (3, H, W)), its cache id and the
    side length it feeds the model (``size``; None where it varies with the image, e.g. HPSv3)."""

    def __init__(self, fn: Callable[[Image.Image], Any], id: str, size: int | None = None) -> None:
        self.fn = fn
        self.id = id
        self.size = size
        self.resize = ""  # no t2ibench resize mode: the judge's own convention

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.fn(image)


def read_state_dict(file: Path, *, unwrap: Sequence[str] = ("state_dict",)) -> dict[str, Any]:
    """Tensors from ``.safetensors``, or from a ``torch.load(weights_only=True)`` checkpoint
    (unwrapped from ``unwrap`` keys and a ``module.`` prefix). Never unpickles code."""
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(file))
    else:
        state = torch.load(file, map_location="cpu", weights_only=True)
    for key in unwrap:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{file}: not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def linked_folder(judge: str, files: dict[str, Path]) -> Path:
    """One folder of symbolic links ``name → file`` (files from several hub repos, read as one
    local folder), under the t2ibench cache, named by its targets: built once, atomically."""
    from t2ibench.fsutil import atomic_folder, cache_root

    targets = {name: Path(p).resolve() for name, p in files.items()}
    key = "\0".join(f"{n}={p}" for n, p in sorted(targets.items()))
    final = (
        cache_root() / "judge-links" / f"{judge}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    )

    def complete(folder: Path) -> bool:
        return all((folder / n).exists() for n in targets)

    if not complete(final):
        with atomic_folder(final, complete) as tmp:
            for name, target in targets.items():
                (tmp / name).symlink_to(target)
    return final


def missing_judge_weights(
    judge: str, where: str, exc: BaseException | None = None
) -> T2IBenchError:
    """The one line for a judge without weights: which file(s) to put where."""
    why = f" ({type(exc).__name__}: {str(exc).splitlines()[0]})" if exc and str(exc) else ""
    return T2IBenchError(
        f"judge {judge}: no weights{why}; {where}, then pass --encoders {judge}@/that/path "
        f"(or weights= in the metric profile)"
    )


# --- the judge_scores input -----------------------------------------------------------------------


def _pair_hash(image_hash: str, prompt: str) -> str:
    return hashlib.sha256(f"{image_hash}\0{prompt}".encode()).hexdigest()


def judge_pair_scores(
    judge: JudgeEncoder, paths: Sequence[Path], prompts: Sequence[str], cache: Any | None
) -> torch.Tensor:
    """(n, 1) scores of image file ``paths[i]`` with ``prompts[i]``, through the feature cache."""
    from t2ibench.encoders.cache import _decode, _read_bytes, sha256_bytes

    keys = [
        _pair_hash(sha256_bytes(_read_bytes(p)), t) for p, t in zip(paths, prompts, strict=True)
    ]
    rows: dict[str, torch.Tensor] = {}
    todo: dict[str, tuple[Path, str]] = {}
    for key, p, t in zip(keys, paths, prompts, strict=True):
        if key in rows or key in todo:
            continue
        hit = cache.get(judge, key) if cache is not None else None
        if hit is not None:
            rows[key] = hit
        else:
            todo[key] = (Path(p), t)
    items = list(todo.items())
    for s in range(0, len(items), judge.batch_size):
        chunk = items[s : s + judge.batch_size]
        images = [_decode(p, _read_bytes(p)) for _, (p, _) in chunk]
        scores = judge.score(images, [t for _, (_, t) in chunk])
        for j, (key, _) in enumerate(chunk):
            rows[key] = scores[j : j + 1]
            if cache is not None:
                cache.put(judge, key, rows[key])
    return torch.stack([rows[k] for k in keys]) if keys else torch.empty(0, 1)


def _provide_judge_scores(ctx: EvalContext) -> torch.Tensor:
    from t2ibench.prompts import clean_prompt

    texts = [clean_prompt(r.prompt, ctx.leaf) for r in ctx.records]
    return ctx.once(
        "judge_scores",
        lambda: judge_pair_scores(ctx.encoder, list(ctx.image_paths), texts, ctx.cache),
    )


register_input_provider(
    InputProvider(
        "judge_scores",
        _provide_judge_scores,
        ("score",),
        own_encoder_only=True,
        description="the judge's score of each generated image with its cleaned prompt",
        pairs="prompt",
    )
)


def judge_mean(judge_scores: torch.Tensor) -> float:
    """The metric of a prompt-reading judge: the mean of its per-image scores."""
    return mean_score(judge_scores)


class JudgeMean(MeanScore):
    """Streaming :func:`judge_mean`."""

    def update(self, judge_scores: torch.Tensor) -> None:  # type: ignore[override]
        super().update(judge_scores)


# --- registration ---------------------------------------------------------------------------------


def register_judge(
    *,
    name: str,
    criterion: str,
    description: str,
    load: Callable[..., Encoder],
    default_weights: str,
    value_range: tuple[float, float],
    higher_is_better: bool = True,
    inputs: tuple[str, ...] = ("judge_scores",),
    size: int = 224,
) -> None:
    """Register judge ``name``: its encoder (kind ``score``) and its metric (the mean score)."""
    from t2ibench.encoders.registry import register_encoder

    register_encoder(
        EncoderSpec(
            name=name,
            kind="score",
            default_weights=default_weights,
            feature_desc="(n, 1) score",
            description=description,
            load=load,
            family="judge",
            size=size,
        )
    )
    register_metric(
        MetricSpec(
            name=name,
            criterion=criterion,
            encoder=name,
            references=(),
            higher_is_better=higher_is_better,
            range=value_range,
            function=judge_mean if inputs == ("judge_scores",) else mean_score,
            stream=JudgeMean if inputs == ("judge_scores",) else MeanScore,
            inputs=inputs,
            description=description,
        )
    )


__all__ = [
    "JudgeEncoder",
    "JudgePreprocess",
    "judge_pair_scores",
    "linked_folder",
    "local_weights_id",
    "missing_judge_weights",
    "read_state_dict",
    "register_judge",
]


def judge_source(
    spec: EncoderSpec,
    weights: str | None,
    tiny: bool,
    tiny_config: Any,
    build_random: Callable[..., Any],
    cache_dir: Path | None,
    default: str | None = None,
) -> str | None:
    """Where a judge loads from: its tiny random-weight folder (built once into the cache), else
    the user's weights or ``default``; a local path is checked before anything loads."""
    if tiny:
        source: str | None = str(tiny_folder(spec.name, tiny_config, build_random, cache_dir))
    else:
        source = weights or default
    if source is not None:
        check_local_path(spec.name, source)
    return source
