"""A small procedural dataset in the t2ibench spec, for tests and quick demos.

Drawn with PIL from a seed (no licensing question): a character with two outfits (subclasses), a
stuffed toy with few images, a scene, and a style — the paper's categories in miniature.
"""

from __future__ import annotations

import random
from pathlib import Path

from t2ibench.fsutil import atomic_folder

_COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 70, 220),
    "yellow": (230, 210, 40),
    "purple": (150, 60, 190),
    "orange": (240, 140, 30),
}
_BACKGROUNDS = {"white": (245, 245, 245), "black": (15, 15, 15), "grey": (128, 128, 128)}

DEMO_TOML = """\
[dataset]
name = "t2ibench-demo"

[classes."characters/kiro"]
trigger = "kiro"
class_word = "robot"
kind = "character"
alter_templates = "person"
repeats = "auto"

[classes."characters/kiro".subclasses.vest]
trigger = "vstx"
keyword = "vstx outfit"

[classes."characters/kiro".subclasses.cape]
trigger = "cpqz"
keyword = "cpqz outfit"

[classes."stuffed_toy/blob"]
trigger = "blbo"
class_word = "stuffed toy"
kind = "object"
class_name = "blob"
alter_templates = "plushie"

[classes."scene/tower"]
trigger = "twrq"
class_word = "scene"
kind = "scene"
class_name = "tower"
alter_templates = "castle"

[classes."style/dots"]
trigger = "dtsy"
class_word = "style"
kind = "style"
alter_templates = "style"
"""


def _draw(kind: str, rng: random.Random, size: int, extra: str | None):
    from PIL import Image, ImageDraw

    bg_name = rng.choice(list(_BACKGROUNDS))
    colour_name = rng.choice(list(_COLOURS))
    img = Image.new("RGB", (size, size), _BACKGROUNDS[bg_name])
    d = ImageDraw.Draw(img)
    c = _COLOURS[colour_name]
    s = size
    j = rng.uniform(-0.06, 0.06) * s
    if kind == "character":  # a robot: square head on a body
        d.rectangle([0.35 * s + j, 0.15 * s, 0.65 * s + j, 0.4 * s], fill=c)
        d.rectangle([0.3 * s + j, 0.42 * s, 0.7 * s + j, 0.85 * s], fill=c)
        if extra == "vest":
            d.rectangle([0.38 * s + j, 0.45 * s, 0.62 * s + j, 0.7 * s], fill=(250, 250, 250))
        elif extra == "cape":
            d.polygon(
                [(0.2 * s + j, 0.45 * s), (0.3 * s + j, 0.42 * s), (0.3 * s + j, 0.9 * s)],
                fill=(20, 20, 120),
            )
    elif kind == "object":  # a round plush with ears
        d.ellipse([0.25 * s + j, 0.3 * s, 0.75 * s + j, 0.8 * s], fill=c)
        d.ellipse([0.25 * s + j, 0.18 * s, 0.4 * s + j, 0.36 * s], fill=c)
        d.ellipse([0.6 * s + j, 0.18 * s, 0.75 * s + j, 0.36 * s], fill=c)
    elif kind == "scene":  # a tower on a horizon
        d.rectangle([0, 0.7 * s, s, s], fill=(60, 120, 60))
        d.rectangle([0.42 * s + j, 0.2 * s, 0.58 * s + j, 0.7 * s], fill=(120, 110, 100))
    else:  # style: dotted rendering of a random shape
        for _ in range(40):
            x, y = rng.uniform(0, s), rng.uniform(0, s)
            d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=c)
    return img, colour_name, bg_name


def make_demo_dataset(root: str | Path, *, size: int = 64, seed: int = 0) -> Path:
    """Write the demo dataset to ``root`` (deterministic; rewritten atomically if it exists)."""
    root = Path(root)
    rng = random.Random(seed)
    plan = [
        ("characters/kiro", "character", None, 3, "kiro robot"),
        ("characters/kiro/vest", "character", "vest", 4, "kiro robot, vstx outfit"),
        ("characters/kiro/cape", "character", "cape", 4, "kiro robot, cpqz outfit"),
        ("stuffed_toy/blob", "object", None, 3, "blbo stuffed toy"),
        ("scene/tower", "scene", None, 3, "twrq scene"),
        ("style/dots", "style", None, 6, "dtsy style"),
    ]
    with atomic_folder(root, lambda _: False) as tmp:  # always replaces what is there
        (tmp / "dataset.toml").write_text(DEMO_TOML, encoding="utf-8")
        for leaf, kind, extra, count, head in plan:
            folder = tmp / leaf
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                img, colour, bg = _draw(kind, rng, size, extra)
                tags = [colour, f"{bg} background"]
                if kind == "style":
                    tags = [rng.choice(["circle", "square", "tree"]), f"{bg} background"]
                img.save(folder / f"{i:03d}.png")
                (folder / f"{i:03d}.txt").write_text(
                    ", ".join([head, *tags]) + "\n", encoding="utf-8"
                )
    return root
