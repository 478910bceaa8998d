"""Layout ``dreambooth``: images generated for the DreamBooth dataset (Ruiz et al., CVPR 2023;
github.com/google/dreambooth).

::

    DATASET/                                the DreamBooth dataset as published
      prompts_and_classes.txt               "subject_name,class" lines, then the object and the
                                            live-subject prompt lists ('a {0} {1} in the snow', ...)
      dog/00.jpg ...                        each subject's real images (the references)
    IMAGES/
      dog/<p>_<k>.png                       image k for prompt p (0-based, the list's order) of
                                            subject "dog"; .png, .jpg, .jpeg or .webp (any
                                            case; Thumbs.db, .DS_Store and the like skipped)

Prompt p is the subject's list entry with {0} = the identifier (``--identifier``, default "sks")
and {1} = its class; cats and dogs use the live-subject list (the paper's 9 live subjects), the
rest the object list. Rows: leaf "live/<subject>" or "object/<subject>", prompt type ``alter``,
seed k; the identifier is removed for CLIP-T ("a sks dog in the snow" → "a dog in the snow").
"""

from __future__ import annotations

import re
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

PROMPTS_FILE = "prompts_and_classes.txt"
LIVE_CLASSES = ("cat", "dog")
GENERATED_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
REFERENCE_SUFFIXES = (".jpg", ".jpeg", ".png")
_NAME = re.compile(r"^(\d+)_(\d+)\.[A-Za-z]+$")
_TEMPLATE = re.compile(r"""^'(.*)'\.format\(\s*unique_token\s*,\s*class_token\s*\),?$""")


def read_prompts_and_classes(path: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """``({subject: class}, {"object": templates, "live": templates})`` from the dataset's file."""
    if not path.is_file():
        raise LayoutError(f"{path}: missing (the DreamBooth dataset's subject and prompt list)")
    classes: dict[str, str] = {}
    prompts: dict[str, list[str]] = {"object": [], "live": []}
    section = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        low = line.lower()
        if low == "subject_name,class":
            section = "classes"
        elif low == "object prompts":
            section = "object"
        elif low == "live subject prompts":
            section = "live"
        elif section == "classes" and "," in line:
            subject, _, cls = line.partition(",")
            classes[subject.strip()] = cls.strip()
        elif section in ("object", "live"):
            m = _TEMPLATE.match(line)
            if m:
                prompts[section].append(m.group(1))
            elif line not in ("", "prompt_list = [", "]"):
                raise LayoutError(f"{path} line {number}: not a prompt template: {line[:60]!r}")
    for what, found in (("subject_name,class", classes), ("Object Prompts", prompts["object"]),
                        ("Live Subject Prompts", prompts["live"])):  # fmt: skip
        if not found:
            raise LayoutError(f"{path}: no {what!r} section")
    return classes, prompts


def scan(
    images: Path, *, dataset: Path | None, checkpoint: str | None, identifier: str | None
) -> LayoutScan:
    from t2ibench.pipeline.manifest import ManifestRecord

    assert dataset is not None and identifier is not None
    classes, prompt_lists = read_prompts_and_classes(dataset / PROMPTS_FILE)
    checkpoint = checkpoint or images.name
    records, leaves = [], []
    for folder in subfolders(images, "subject"):
        subject = folder.name
        if subject not in classes:
            raise LayoutError(
                f"{folder}: {subject!r} is not a subject of {dataset / PROMPTS_FILE} "
                f"(subjects: {', '.join(sorted(classes)[:6])}, ...)"
            )
        cls = classes[subject]
        kind = "live" if cls in LIVE_CLASSES else "object"
        templates = prompt_lists[kind]
        ref_folder = dataset / subject
        if not ref_folder.is_dir():
            raise LayoutError(f"{ref_folder}: missing (the real images of subject {subject!r})")
        leaf = make_leaf(
            kind, subject, image_files(ref_folder, REFERENCE_SUFFIXES, f"the real images of {subject!r}"),
            identifier, cls,
        )  # fmt: skip
        leaves.append(leaf)
        found = []
        for path in image_files(folder, GENERATED_SUFFIXES, f"the generated images of {subject!r}"):
            m = _NAME.match(path.name)
            if not m:
                raise LayoutError(
                    f"{path}: expected <prompt index>_<image index>.png (e.g. 0_0.png)"
                )
            p, k = int(m.group(1)), int(m.group(2))
            if p >= len(templates):
                raise LayoutError(
                    f"{path}: prompt index {p}, but the {kind} prompt list has {len(templates)}"
                )
            found.append((p, k, path))
        for index, (p, k, path) in enumerate(sorted(found)):
            prompt = templates[p].format(identifier, cls)
            records.append(ManifestRecord(checkpoint, leaf.key, "alter", prompt, k,
                                          relative(images, path), index))  # fmt: skip
    return LayoutScan(
        layout="dreambooth",
        root=images,
        records=records,
        dataset=make_dataset(dataset, "dreambooth", leaves),
    )


register_layout(
    Layout(
        name="dreambooth",
        description="DreamBooth: IMAGES/<subject>/<prompt>_<k>.png; --dataset = the DreamBooth "
        "dataset (prompts_and_classes.txt + subject folders)",
        scan=scan,
        default_identifier="sks",
    )
)
