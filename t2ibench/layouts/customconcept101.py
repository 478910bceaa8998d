"""Layout ``customconcept101``: sample folders as CustomConcept101's ``evaluate.py`` reads them
(Kumari et al., CVPR 2023; adobe-research/custom-diffusion, ``customconcept101/``).

::

    DATASET/                          the benchmark's images (benchmark_dataset/)
      pet_cat1/*.jpg                  one folder per concept: the target (real) images
    IMAGES/                           one sample folder per concept, named as its concept folder
      pet_cat1/
        samples/*.png                 the generated images (.png, .jpg, .jpeg, .tiff, any case)
        prompts.json                  {"<image file stem>": "<prompt it was generated from>"}

IMAGES may also be one sample folder itself (``samples/`` + ``prompts.json``; its name is the
concept's). Conventions kept from the script: an image's prompt is ``prompts.json[stem]``; the
modifier token (``--identifier``, default ``<new1>``) is removed before CLIP-T; the targets are the
concept folder's images. Rows: leaf "<prefix>/<concept>" (prefix = the folder name up to its first
"_", e.g. "pet"), prompt type ``alter``; single-concept folders (one target folder) only.
The script scores one sample folder at a time (one row per measure and concept, as here); the
benchmark's table averages the concepts.
"""

from __future__ import annotations

import json
from pathlib import Path

from t2ibench.layouts import (
    Layout,
    LayoutError,
    LayoutScan,
    image_files,
    make_dataset,
    make_leaf,
    register_layout,
    relative,
    subfolders,
)

#: The suffixes the script lists images by (it matches them case-sensitively, so it would skip a
#: ".PNG"; t2ibench matches every layout's suffixes in any case and reads such a file).
SUFFIXES = (".png", ".jpg", ".jpeg", ".tiff")
SAMPLES, PROMPTS = "samples", "prompts.json"


def _is_sample_root(folder: Path) -> bool:
    return (folder / SAMPLES).is_dir()


def _prompts(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise LayoutError(f"{path}: missing (evaluate.py reads each sample's prompt from it)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LayoutError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise LayoutError(f"{path}: expected an object {{image stem: prompt}}")
    return data


def scan(
    images: Path, *, dataset: Path | None, checkpoint: str | None, identifier: str | None
) -> LayoutScan:
    from t2ibench.pipeline.manifest import ManifestRecord

    assert dataset is not None and identifier is not None
    roots = [images] if _is_sample_root(images) else subfolders(images, "sample")
    checkpoint = checkpoint or (images.parent.name if roots == [images] else images.name)
    records, leaves = [], []
    for root in roots:
        if not _is_sample_root(root):
            raise LayoutError(
                f"{root}: no {SAMPLES}/ folder (a sample folder: samples/ + {PROMPTS})"
            )
        concept = root.name
        targets = dataset / concept
        if not targets.is_dir():
            raise LayoutError(
                f"{root}: no concept folder {concept!r} in {dataset} (name each sample folder "
                "as its concept's folder in the benchmark)"
            )
        category = concept.split("_", 1)[0] if "_" in concept else "concept"
        leaf = make_leaf(category, concept,
                         image_files(targets, SUFFIXES, f"the target images of {concept!r}"), identifier, concept)  # fmt: skip
        leaves.append(leaf)
        prompts = _prompts(root / PROMPTS)
        for index, path in enumerate(
            image_files(root / SAMPLES, SUFFIXES, f"the samples of {concept!r}")
        ):
            stem = path.name.rsplit(".", 1)[0]
            if stem not in prompts:
                raise LayoutError(f"{path}: no prompt for {stem!r} in {root / PROMPTS}")
            seed = int(stem) if stem.isdigit() else index
            records.append(ManifestRecord(checkpoint, leaf.key, "alter", prompts[stem], seed,
                                          relative(images, path), index))  # fmt: skip
    return LayoutScan(
        layout="customconcept101",
        root=images,
        records=records,
        dataset=make_dataset(dataset, "customconcept101", leaves),
    )


register_layout(
    Layout(
        name="customconcept101",
        description="CustomConcept101: IMAGES/<concept>/samples/*.png + prompts.json; --dataset = "
        "the benchmark's concept folders",
        scan=scan,
        default_identifier="<new1>",
    )
)
