"""Layout ``t2ibench``: what ``t2ibench run`` writes and ``t2ibench evaluate`` always read.

::

    IMAGES/
      manifest.jsonl                       one JSON line per image: checkpoint, leaf, prompt_type,
                                           prompt, seed, file (+ index, sha256)
      <category>/<class>/<prompt_type>/0000-s1000.png
    DATASET/                               a t2ibench dataset (dataset.toml + captioned images)

Checkpoints, leaves, prompt types and prompts come from the manifest; references from the dataset.
"""

from __future__ import annotations

from pathlib import Path

from t2ibench.layouts import Layout, LayoutError, LayoutScan, register_layout


def scan(
    images: Path, *, dataset: Path | None, checkpoint: str | None, identifier: str | None
) -> LayoutScan:
    from dataclasses import replace

    from t2ibench.data import load_dataset
    from t2ibench.pipeline.manifest import MANIFEST_NAME, read_manifest

    if not (images / MANIFEST_NAME).is_file():
        raise LayoutError(
            f"{images / MANIFEST_NAME}: missing (layout t2ibench needs the manifest that "
            "t2ibench run writes; other tools' folders: --layout dreambooth|customconcept101|...)"
        )
    records = read_manifest(images / MANIFEST_NAME)
    if not records:
        raise LayoutError(f"{images / MANIFEST_NAME}: no images")
    if checkpoint is not None:
        records = [replace(r, checkpoint=checkpoint) for r in records]
    ds = load_dataset(dataset)
    return LayoutScan(layout="t2ibench", root=images, records=records, dataset=ds)


register_layout(
    Layout(
        name="t2ibench",
        description="t2ibench's own: IMAGES/manifest.jsonl + a t2ibench dataset (--dataset)",
        scan=scan,
    )
)
