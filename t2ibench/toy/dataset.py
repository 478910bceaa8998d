"""The toy fine-tuning dataset, written in the t2ibench dataset spec (folders + ``dataset.toml``).

Nine leaves over the paper's four categories: a character with two outfit subclasses and a second
character (45–60 images each), two stuffed-toy-like objects (8 and 5 images), two scenes (6 and 10
images) and two styles (40 and 50 images). Captions are the paper's tag format
(``"[trigger] [class word], [subclass keyword], tag, ..."``) or natural-language sentences.
``toy_truth.json`` beside ``dataset.toml`` holds every image's ground-truth scene.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from t2ibench.errors import ConfigError
from t2ibench.fsutil import atomic_folder
from t2ibench.toy import world

MARKER = ".t2ibench-toy-dataset"
TRUTH_FILE = "toy_truth.json"
KIND = {"characters": "character", "toys": "object", "scenes": "scene", "styles": "style"}

# Alter prompts ("{}" = the leaf descriptor): base-vocabulary changes the probe can verify.
ALTER_TEMPLATES = {
    "character": [
        "a red {} on a striped background",
        "a blue {}",
        "{}, green, black background",
        "a yellow {} on a grey background",
        "{} on a white background, outline style",
        "a magenta {} on a black background",
        "{}, cyan, striped background",
        "a red {}, outline style",
        "a blue {} on a white background",
        "{}, green, grey background, outline style",
    ],
    "object": [
        "{} on a striped background",
        "{} on a black background",
        "{}, outline style",
        "{} on a white background",
        "{} on a grey background, outline style",
        "{}, striped background",
        "{} on a black background, outline style",
        "{}, grey background",
        "{} on a white background, flat style",
        "a {} on a striped background, outline style",
    ],
    "scene": [
        "a red circle in a {}",
        "a blue square in a {}",
        "a green triangle in a {}",
        "a yellow cross in a {}",
        "{}, magenta circle",
        "{}, cyan square, outline style",
        "a red cross in a {}, outline style",
        "{}, blue triangle",
        "a green circle in a {}, outline style",
        "{}, yellow square",
    ],
    "style": [
        "a red circle, {}",
        "a blue square on a black background, {}",
        "a green triangle on a white background, {}",
        "a yellow cross on a grey background, {}",
        "a magenta circle on a striped background, {}",
        "a cyan square, {}",
        "{}, red triangle, black background",
        "{}, blue cross, white background",
        "a green circle on a grey background, {}",
        "a yellow triangle on a striped background, {}",
    ],
}


def _select(leaves: list[str] | None) -> list[world.Concept]:
    if leaves is None:
        return list(world.CONCEPTS)
    known = {c.leaf for c in world.CONCEPTS}
    bad = [leaf for leaf in leaves if leaf not in known]
    if bad:
        raise ConfigError(f"toy dataset leaves: unknown {bad}; known: {sorted(known)}")
    return [c for c in world.CONCEPTS if c.leaf in leaves]


def dataset_toml(name: str = "t2ibench-toy", leaves: list[str] | None = None) -> str:
    """The ``dataset.toml`` text of the toy dataset (optionally only some leaves)."""
    lines = ["[dataset]", f'name = "{name}"', ""]
    done: set[str] = set()
    for c in _select(leaves):
        key = f"{c.category}/{c.cls}"
        if key not in done:
            done.add(key)
            kind = KIND[c.category]
            lines += [
                f'[classes."{key}"]',
                f'trigger = "{c.trigger}"',
                f'class_word = "{c.class_word}"',
                f'kind = "{kind}"',
                f'class_name = "{c.class_name}"',
                f'alter_templates = "alter_{kind}.txt"',
                'repeats = "auto"',
                "",
            ]
        if c.subclass:
            sub_trigger = c.subclass_keyword.split()[0]
            lines += [
                f'[classes."{key}".subclasses.{c.subclass}]',
                f'trigger = "{sub_trigger}"',
                f'keyword = "{c.subclass_keyword}"',
                "",
            ]
    return "\n".join(lines)


def _write(folder: Path, seed: int, name: str, leaves: list[str] | None) -> None:
    truth: dict[str, dict] = {}
    for c in _select(leaves):
        leaf_dir = folder / c.leaf
        leaf_dir.mkdir(parents=True, exist_ok=True)
        for i, (scene, caption) in enumerate(world.concept_images(c, seed=seed)):
            stem = f"{c.cls}_{c.subclass + '_' if c.subclass else ''}{i:03d}"
            world.render(scene).save(leaf_dir / f"{stem}.png", optimize=False)
            (leaf_dir / f"{stem}.txt").write_text(caption + "\n", encoding="utf-8")
            truth[f"{c.leaf}/{stem}.png"] = asdict(scene)
    (folder / "dataset.toml").write_text(dataset_toml(name, leaves), encoding="utf-8")
    for kind, templates in ALTER_TEMPLATES.items():
        (folder / f"alter_{kind}.txt").write_text("\n".join(templates) + "\n", encoding="utf-8")
    (folder / TRUTH_FILE).write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    (folder / MARKER).write_text(json.dumps({"seed": seed, "name": name}) + "\n")


def make_toy_dataset(
    root: str | Path, seed: int = 0, name: str = "t2ibench-toy", leaves: list[str] | None = None
) -> Path:
    """Write the toy dataset into ``root`` (deterministic from ``seed``); returns ``root``.

    ``leaves``: only these leaves (e.g. ``["characters/starling/hat"]``); default all nine.
    Built in a temporary sibling folder and renamed into place, so ``root`` is never half-written.
    An existing toy dataset at ``root`` is replaced; any other non-empty folder is refused.
    """
    root = Path(root).expanduser().absolute()
    if root.exists() and any(root.iterdir()) and not (root / MARKER).is_file():
        raise ConfigError(
            f"{root}: exists and is not a toy dataset (no {MARKER}); pick a new folder"
        )
    with atomic_folder(root, lambda _: False) as tmp:  # always replaces what is there
        _write(tmp, seed, name, leaves)
    return root


def load_truth(root: str | Path) -> dict[str, world.Scene]:
    """Ground-truth scenes of a toy dataset's images, keyed by path relative to ``root``."""
    data = json.loads((Path(root) / TRUTH_FILE).read_text())
    return {k: world.Scene(**{**v, "jitter": tuple(v["jitter"])}) for k, v in data.items()}
