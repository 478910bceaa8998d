"""The engine on images held by the caller (``t2ibench.evaluate()``): the images, references,
prompts and base images become one leaf's records, and :func:`~t2ibench.evaluation.engine.
evaluate_records` scores them as it scores a folder.

Image files are read where they are, by the same decoder as every folder evaluation
(:mod:`t2ibench.images`, through the feature cache's reader), so a file gives the same features
through the API as through ``t2ibench evaluate``. Images given as ``PIL.Image`` objects are made
8-bit RGB (:func:`t2ibench.images.to_rgb`) and written as lossless PNG files to a temporary folder
first, so every input provider — a plug-in's too, which reads ``ctx.image_paths`` — sees files.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from t2ibench.data import Concept, Dataset, ImageRecord, Leaf, Subclass
from t2ibench.evaluation.engine import MetricPlan, evaluate_records
from t2ibench.metrics.inputs import paired_key

#: the one leaf an in-memory evaluation scores
LEAF = "images/images"


@dataclass(frozen=True)
class ImageJob:
    """One image of an in-memory evaluation: the fields of a manifest record the engine reads,
    plus ``reference``, the index of its own reference image (the ``paired`` pairing)."""

    checkpoint: str
    leaf: str
    prompt_type: str
    prompt: str | None
    seed: int
    file: str
    index: int
    reference: int | None = None

    def path(self, root: Path | None) -> Path:
        return Path(self.file)


def identifier_leaf(references: Sequence[Path], identifier: str | Sequence[str] | None) -> Leaf:
    """The leaf of an in-memory evaluation: its references, and text cleaning that removes the
    identifier token(s) as whole words — :func:`t2ibench.prompts.clean_prompt` on a character
    concept, exactly what the dreambooth and customconcept101 layouts build."""
    tokens = [identifier] if isinstance(identifier, str) else list(identifier or ())
    first, rest = (tokens[0], tokens[1:]) if tokens else ("", [])
    concept = Concept(
        key=LEAF, category="images", name="images", trigger=first, class_word="", kind="character",
        class_name="", alter_templates="", repeats=1, descriptor=first,
        # further tokens are removed as clean_prompt removes a subclass's trigger
        subclasses={t: Subclass(name=t, trigger=t, keyword=t) for t in rest},
    )  # fmt: skip
    images = tuple(ImageRecord(path=p, caption="", leaf=LEAF, concept=LEAF) for p in references)
    return Leaf(key=LEAF, concept=concept, subclass=None, images=images)


def evaluate_in_memory(
    images: Sequence[Path | Image.Image],
    encoders: Sequence[Any],
    plans: Sequence[MetricPlan],
    *,
    references: Sequence[Path | Image.Image] = (),
    prompts: Sequence[str] | None = None,
    base_images: Sequence[Path | Image.Image] = (),
    identifier: str | Sequence[str] | None = None,
    prompt_type: str = "alter",
    checkpoint: str = "images",
    cache: Any | None = None,
) -> pd.DataFrame:
    """Results rows for ``images`` (one leaf, prompt type ``prompt_type``): the engine's rows.

    ``references``: the leaf's reference images (image i's own reference is references[i] when
    there are as many). ``prompts``: one per image. ``base_images``: one per image, the base
    model's image for the same prompt and seed.
    """
    with tempfile.TemporaryDirectory(prefix="t2ibench-evaluate-") as tmp:
        folder = Path(tmp)

        def files(items, what: str) -> list[Path]:
            out = []
            for i, im in enumerate(items):
                if isinstance(im, Image.Image):
                    from t2ibench.images import to_rgb

                    path = folder / f"{what}-{i:06d}.png"
                    to_rgb(im).save(path, compress_level=1)
                    out.append(path)
                else:
                    out.append(Path(im))
            return out

        gen, refs, bases = (
            files(images, "image"),
            files(references, "ref"),
            files(base_images, "base"),
        )
        paired = len(refs) == len(gen)
        records = [
            ImageJob(checkpoint, LEAF, prompt_type, None if prompts is None else prompts[i], i,
                     str(p), i, i if paired else None)
            for i, p in enumerate(gen)
        ]  # fmt: skip
        leaf = identifier_leaf(refs, identifier)
        dataset = Dataset(root=folder, name="in-memory", concepts={LEAF: leaf.concept},
                          leaves={LEAF: leaf})  # fmt: skip
        base_map = {paired_key(r): b for r, b in zip(records, bases, strict=False)}
        return evaluate_records(None, records, dataset, encoders, plans, base_images=base_map,
                                cache=cache)  # fmt: skip
