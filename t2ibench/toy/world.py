"""The procedural toy world: 32 px images of shapes on backgrounds, with captions and ground truth.

Everything is a pure function of a seed. A :class:`Scene` is the ground truth of one image (what
the probe must recover); :func:`render` draws it; :func:`sample_base_scene` and
:func:`sample_concept_scene` draw scenes from the base vocabulary and from the held-out concepts.

The base vocabulary (shapes, colours, backgrounds, styles below) is all the base model ever sees.
The held-out concepts copy the paper's organisation: characters with outfits (subclasses), stuffed
toys and scenes with few images each, and styles; they exist only in the fine-tuning dataset.
Rendering is done at 4x resolution and box-downsampled, so edges are anti-aliased and exact.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

SIZE = 32
_SS = 4  # supersampling factor
_BIG = SIZE * _SS

# --- vocabulary ---------------------------------------------------------------------------------
BASE_SHAPES = ("circle", "square", "triangle", "cross")
BASE_COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan")
BASE_BACKGROUNDS = ("black", "white", "grey", "striped")
BASE_STYLES = ("flat", "outline")

HELD_OUT_SHAPES = ("star", "crescent", "bear", "ring")
HELD_OUT_COLOURS = ("brown", "pink")
HELD_OUT_BACKGROUNDS = ("beach", "checker")
HELD_OUT_STYLES = ("hatched", "pastel")
OUTFITS = ("none", "hat", "belt")

#: Every value the probe can report, per attribute ("none" shape = an empty scene).
SHAPES = BASE_SHAPES + HELD_OUT_SHAPES + ("none",)
COLOURS = BASE_COLOURS + HELD_OUT_COLOURS
BACKGROUNDS = BASE_BACKGROUNDS + HELD_OUT_BACKGROUNDS
STYLES = BASE_STYLES + HELD_OUT_STYLES
ATTRIBUTES = {
    "shape": SHAPES,
    "colour": COLOURS,
    "background": BACKGROUNDS,
    "style": STYLES,
    "outfit": OUTFITS,
}

_RGB = {
    "red": (225, 40, 40),
    "green": (40, 180, 60),
    "blue": (45, 75, 235),
    "yellow": (245, 215, 35),
    "magenta": (215, 45, 205),
    "cyan": (35, 205, 215),
    "brown": (135, 80, 35),
    "pink": (255, 150, 190),
}
_HAT_RGB = (255, 140, 0)
_BELT_RGB = (25, 25, 25)
_STROKE_RGB = (55, 55, 55)

# Words the captions use for held-out things (the toy CLIP learns them; the base model never does).
DESCRIPTIVE = {
    "bear": "bear",
    "ring": "ring",
    "beach": "beach",
    "checker": "checkerboard",
    "hatched": "hatched",
    "pastel": "pastel",
}


@dataclass(frozen=True)
class Scene:
    """Ground truth of one image; geometry fields make the rendering exact."""

    shape: str  # one of SHAPES ("none": background only)
    colour: str  # one of COLOURS (ignored when shape is "none")
    background: str  # one of BACKGROUNDS
    style: str  # one of STYLES
    outfit: str = "none"  # one of OUTFITS
    cx: float = 16.0
    cy: float = 16.0
    radius: float = 9.5
    angle: float = 0.0  # degrees
    jitter: tuple[int, int, int] = (0, 0, 0)  # colour jitter, added to the shape colour
    bg_shift: int = 0  # background brightness / stripe phase jitter

    def labels(self) -> dict[str, str]:
        """The probe's targets."""
        return {
            "shape": self.shape,
            "colour": self.colour,
            "background": self.background,
            "style": self.style,
            "outfit": self.outfit,
        }


def rng_for(seed: int, *keys: object) -> np.random.Generator:
    """An independent generator per (seed, keys): order-free, so any subset renders identically."""
    digest = hashlib.sha256(repr((int(seed),) + keys).encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:8], "little")))


# --- geometry -----------------------------------------------------------------------------------
def _rot(points: list[tuple[float, float]], cx: float, cy: float, r: float, angle: float):
    a = math.radians(angle)
    ca, sa = math.cos(a), math.sin(a)
    return [
        ((cx + r * (x * ca - y * sa)) * _SS, (cy + r * (x * sa + y * ca)) * _SS) for x, y in points
    ]


def _regular(n: int, start: float, rad: float = 1.0) -> list[tuple[float, float]]:
    return [
        (rad * math.cos(start + 2 * math.pi * k / n), rad * math.sin(start + 2 * math.pi * k / n))
        for k in range(n)
    ]


def _star_points() -> list[tuple[float, float]]:
    pts = []
    for k in range(10):
        rad = 1.0 if k % 2 == 0 else 0.45
        a = -math.pi / 2 + math.pi * k / 5
        pts.append((rad * math.cos(a), rad * math.sin(a)))
    return pts


_CROSS = [
    (-0.33, -1.0),
    (0.33, -1.0),
    (0.33, -0.33),
    (1.0, -0.33),
    (1.0, 0.33),
    (0.33, 0.33),
    (0.33, 1.0),
    (-0.33, 1.0),
    (-0.33, 0.33),
    (-1.0, 0.33),
    (-1.0, -0.33),
    (-0.33, -0.33),
]
_SQUARE = [(-0.82, -0.82), (0.82, -0.82), (0.82, 0.82), (-0.82, 0.82)]
_TRIANGLE = [(0.0, -1.0), (0.95, 0.75), (-0.95, 0.75)]


def _circle(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: int) -> None:
    draw.ellipse([(x - r) * _SS, (y - r) * _SS, (x + r) * _SS, (y + r) * _SS], fill=fill)


def shape_mask(scene: Scene) -> np.ndarray:
    """The shape's coverage at 4x resolution, float in [0, 1], shape (128, 128)."""
    img = Image.new("L", (_BIG, _BIG), 0)
    draw = ImageDraw.Draw(img)
    s, cx, cy, r, a = scene.shape, scene.cx, scene.cy, scene.radius, scene.angle
    if s == "circle":
        _circle(draw, cx, cy, r * 0.95, 255)
    elif s == "square":
        draw.polygon(_rot(_SQUARE, cx, cy, r, a), fill=255)
    elif s == "triangle":
        draw.polygon(_rot(_TRIANGLE, cx, cy, r, a), fill=255)
    elif s == "cross":
        draw.polygon(_rot(_CROSS, cx, cy, r, a), fill=255)
    elif s == "star":
        draw.polygon(_rot(_star_points(), cx, cy, r * 1.1, a), fill=255)
    elif s == "crescent":
        _circle(draw, cx, cy, r, 255)
        ox, oy = _rot([(0.5, -0.25)], cx, cy, r, a)[0]
        _circle(draw, ox / _SS, oy / _SS, r * 0.78, 0)
    elif s == "bear":
        _circle(draw, cx, cy + 0.15 * r, 0.75 * r, 255)
        for side in (-1, 1):
            ex, ey = _rot([(side * 0.62, -0.62)], cx, cy, r, a)[0]
            _circle(draw, ex / _SS, ey / _SS, 0.36 * r, 255)
    elif s == "ring":
        _circle(draw, cx, cy, r, 255)
        _circle(draw, cx, cy, r * 0.5, 0)
    elif s != "none":
        raise ValueError(f"unknown shape {s!r}")
    return np.asarray(img, dtype=np.float32) / 255.0


def _erode(mask: np.ndarray, px: int) -> np.ndarray:
    """Binary-ish erosion by a square of half-width ``px`` (4x pixels), via cumulative sums."""
    m = (mask > 0.5).astype(np.int32)
    k = 2 * px + 1
    pad = np.pad(m, px, constant_values=0)
    c = np.pad(pad.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    win = c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]
    return (win == k * k).astype(np.float32) * mask


def _down(a: np.ndarray) -> np.ndarray:
    """Box-downsample a (128, 128[, C]) array to 32 px."""
    return a.reshape(SIZE, _SS, SIZE, _SS, *a.shape[2:]).mean(axis=(1, 3))


def _background(scene: Scene) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    b, j = scene.background, scene.bg_shift
    out = np.empty((SIZE, SIZE, 3), np.float32)
    if b == "black":
        out[:] = 12 + abs(j) % 10
    elif b == "white":
        out[:] = 243 - abs(j) % 10
    elif b == "grey":
        out[:] = 128 + j % 13 - 6
    elif b == "striped":
        band = ((y + j) // 4) % 2 == 0
        out[:] = np.where(band[..., None], 70.0, 190.0)
    elif b == "beach":
        horizon = 18 + j % 5 - 2
        out[:] = np.where((y < horizon)[..., None], (120, 195, 240), (230, 200, 135))
    elif b == "checker":
        cell = (((x + j) // 8) + ((y + j) // 8)) % 2 == 0
        out[:] = np.where(cell[..., None], (40, 130, 60), (200, 235, 150))
    else:
        raise ValueError(f"unknown background {b!r}")
    return out


def render_array(scene: Scene) -> np.ndarray:
    """Render to a float32 (32, 32, 3) array in [0, 255]."""
    img = _background(scene)
    if scene.shape == "none":
        return img
    mask = shape_mask(scene)
    colour = np.clip(np.array(_RGB[scene.colour], np.float32) + scene.jitter, 0, 255)
    big = np.zeros((_BIG, _BIG, 3), np.float32)
    alpha = mask.copy()
    stroke_px = 2 * _SS + 2  # ~2.5 px at 32 px: survives the VAE's 4x downsampling
    if scene.style == "flat":
        big[:] = colour
    elif scene.style == "outline":
        alpha = mask - _erode(mask, stroke_px)
        big[:] = colour
    elif scene.style == "hatched":
        yy, xx = np.mgrid[0:_BIG, 0:_BIG]
        lines = ((xx + yy) // (4 * _SS)) % 2 == 0
        inner = _erode(mask, 5)
        edge = mask - inner
        fill = np.where(lines[..., None], colour, np.float32(250.0))
        big[:] = fill
        big = (
            big * inner[..., None] / np.maximum(mask, 1e-6)[..., None]
            + colour * (edge / np.maximum(mask, 1e-6))[..., None]
        )
    elif scene.style == "pastel":
        pastel = 0.45 * colour + 0.55 * 255.0
        inner = _erode(mask, 5)
        big[:] = pastel
        w = (inner / np.maximum(mask, 1e-6))[..., None]
        big = big * w + np.array(_STROKE_RGB, np.float32) * (1 - w)
    else:
        raise ValueError(f"unknown style {scene.style!r}")
    if scene.outfit == "belt":
        yy = np.mgrid[0:_BIG, 0:_BIG][0] / _SS
        band = (np.abs(yy - (scene.cy + 0.2 * scene.radius)) < 0.2 * scene.radius + 0.6).astype(
            np.float32
        )
        belt = mask * band
        big = big * (1 - belt[..., None]) + np.array(_BELT_RGB, np.float32) * belt[..., None]
        alpha = np.maximum(alpha, belt)
    a32 = _down(alpha)[..., None]
    col32 = _down(big * alpha[..., None]) / np.maximum(a32, 1e-6)
    img = img * (1 - a32) + col32 * a32
    if scene.outfit == "hat":
        hat = Image.new("L", (_BIG, _BIG), 0)
        d = ImageDraw.Draw(hat)
        top = scene.cy - 1.1 * scene.radius + 1.0  # sits on the star's top tip
        r = scene.radius
        d.rectangle(
            [
                (scene.cx - 0.55 * r) * _SS,
                (top - 0.5) * _SS,
                (scene.cx + 0.55 * r) * _SS,
                (top + 1.5) * _SS,
            ],
            fill=255,
        )
        d.rectangle(
            [
                (scene.cx - 0.3 * r) * _SS,
                (top - 0.5 * r) * _SS,
                (scene.cx + 0.3 * r) * _SS,
                top * _SS,
            ],
            fill=255,
        )
        h = _down(np.asarray(hat, np.float32) / 255.0)[..., None]
        img = img * (1 - h) + np.array(_HAT_RGB, np.float32) * h
    return img


def render(scene: Scene) -> Image.Image:
    """Render a scene to a 32x32 RGB PIL image."""
    return Image.fromarray(np.clip(np.rint(render_array(scene)), 0, 255).astype(np.uint8), "RGB")


# --- generic images (for the VAE only) ------------------------------------------------------------
def render_generic(seed: int, index: int) -> Image.Image:
    """A random abstract image: colour fields, splits, stripes at any angle, checks or gradients,
    with 0–2 random polygons / ellipses / rings in random colours, filled, outlined or striped.

    None of the world's named things, but every kind of colour, edge and texture they are made of:
    the VAE is the model's image codec (SD's was trained on generic photos), so it learns these and
    can then represent concepts that neither it nor the base model has seen.
    """
    rng = rng_for(seed, "generic", index)
    y, x = np.mgrid[0:_BIG, 0:_BIG] / _SS

    def colour() -> np.ndarray:
        return rng.integers(0, 256, size=3).astype(np.float32)

    def pattern() -> np.ndarray:
        a, b = colour(), colour()
        kind = rng.integers(5)
        if kind == 0:
            return np.broadcast_to(a, (_BIG, _BIG, 3)).copy()
        if kind == 1:  # two-tone split
            t = np.where(rng.random() < 0.5, y, x) < rng.uniform(6, 26)
        elif kind == 2:  # stripes at a random angle
            ang = rng.uniform(0, np.pi)
            t = ((np.cos(ang) * x + np.sin(ang) * y) // rng.uniform(2, 7)) % 2 == 0
        elif kind == 3:  # checks
            cell = rng.uniform(3, 10)
            t = ((x // cell) + (y // cell)) % 2 == 0
        else:  # gradient
            ang = rng.uniform(0, 2 * np.pi)
            w = ((np.cos(ang) * (x - 16) + np.sin(ang) * (y - 16)) / 45 + 0.5).clip(0, 1)
            return a * w[..., None] + b * (1 - w[..., None])
        return np.where(t[..., None], a, b)

    img = pattern()
    for _ in range(int(rng.integers(0, 3))):
        m = Image.new("L", (_BIG, _BIG), 0)
        d = ImageDraw.Draw(m)
        cx, cy, r = rng.uniform(6, 26), rng.uniform(6, 26), rng.uniform(4, 13)
        kind = rng.integers(3)
        if kind == 0:  # irregular polygon
            n = int(rng.integers(3, 11))
            angs = np.sort(rng.uniform(0, 2 * np.pi, n))
            rads = r * rng.uniform(0.35, 1.0, n)
            d.polygon([((cx + q * np.cos(t)) * _SS, (cy + q * np.sin(t)) * _SS)
                       for q, t in zip(rads, angs, strict=True)], fill=255)  # fmt: skip
        else:
            e = r * rng.uniform(0.5, 1.0)
            d.ellipse([(cx - r) * _SS, (cy - e) * _SS, (cx + r) * _SS, (cy + e) * _SS], fill=255)
            if kind == 2:
                q = rng.uniform(0.3, 0.7)
                d.ellipse([(cx - q * r) * _SS, (cy - q * e) * _SS, (cx + q * r) * _SS,
                           (cy + q * e) * _SS], fill=0)  # fmt: skip
        mask = np.asarray(m, np.float32) / 255.0
        if rng.random() < 0.3:
            mask = mask - _erode(mask, int(rng.integers(4, 12)))
        fill = pattern() if rng.random() < 0.3 else np.broadcast_to(colour(), (_BIG, _BIG, 3))
        img = img * (1 - mask[..., None]) + fill * mask[..., None]
    out = _down(img)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")


# --- sampling -----------------------------------------------------------------------------------
def _geometry(rng: np.random.Generator, shape: str, outfit: str = "none") -> dict:
    radius = float(rng.uniform(8.0, 10.5))
    cx = 16.0 + float(rng.uniform(-2.5, 2.5))
    cy = 16.0 + float(rng.uniform(-2.5, 2.5))
    if outfit == "hat":  # leave headroom for the hat
        radius = float(rng.uniform(7.5, 9.0))
        cy = 18.5 + float(rng.uniform(-1.0, 1.5))
    rotatable = shape in ("square", "triangle", "cross", "star", "crescent", "bear")
    angle = float(rng.uniform(-12.0, 12.0)) if rotatable else 0.0
    return {
        "cx": cx,
        "cy": cy,
        "radius": radius,
        "angle": angle,
        "jitter": tuple(int(v) for v in rng.integers(-15, 16, size=3)),
        "bg_shift": int(rng.integers(0, 1000)),
    }


def sample_scene(
    rng: np.random.Generator,
    shapes: tuple[str, ...] = BASE_SHAPES,
    colours: tuple[str, ...] = BASE_COLOURS,
    backgrounds: tuple[str, ...] = BASE_BACKGROUNDS,
    styles: tuple[str, ...] = BASE_STYLES,
    outfits: tuple[str, ...] = ("none",),
) -> Scene:
    """A uniformly random scene over the given value sets."""
    shape = str(rng.choice(shapes))
    colour = str(rng.choice(colours))
    background = str(rng.choice(backgrounds))
    style = str(rng.choice(styles))
    outfit = str(rng.choice(outfits))
    return Scene(shape, colour, background, style, outfit, **_geometry(rng, shape, outfit))


def sample_base_scene(seed: int, index: int) -> Scene:
    """Scene ``index`` of the base-vocabulary stream of ``seed`` (what the base model learns)."""
    return sample_scene(rng_for(seed, "base", index))


def sample_any_scene(seed: int, index: int) -> Scene:
    """Scene ``index`` of the whole-world stream (base + held-out; for the probe and encoders).

    A third of the scenes come from the held-out concepts so every probe outcome is well covered.
    """
    rng = rng_for(seed, "any", index)
    if rng.random() < 0.4:
        return sample_scene(rng)
    concept = CONCEPTS[int(rng.integers(len(CONCEPTS)))]
    return concept.sample(rng)


def regeometry(scene: Scene, rng: np.random.Generator) -> Scene:
    """The same ground truth drawn again with new position, size, angle and jitter."""
    return replace(scene, **_geometry(rng, scene.shape, scene.outfit))


def with_attrs(scene: Scene, **changes: str) -> Scene:
    """A copy with some attributes changed (geometry kept)."""
    return replace(scene, **changes)


# --- captions -----------------------------------------------------------------------------------
def _style_words(style: str) -> str:
    return f"{style} style"


BASE_TEMPLATES = (
    "a {colour} {shape} on a {background} background, {style}",
    "{shape}, {colour}, {background} background, {style}",
    "a {style} drawing of a {colour} {shape} on a {background} background",
    "a {colour} {shape}",
    "a {shape} on a {background} background",
    "{colour} {shape}, {style}",
)


def base_caption(scene: Scene, template: int) -> str:
    """Caption a base-vocabulary scene with template ``template`` (index into BASE_TEMPLATES)."""
    t = BASE_TEMPLATES[template % len(BASE_TEMPLATES)]
    style = scene.style if "drawing" in t else _style_words(scene.style)
    text = t.format(
        colour=scene.colour, shape=scene.shape, background=scene.background, style=style
    )
    return text.replace("a outline", "an outline")


def base_prompt(shape: str, colour: str, background: str, style: str) -> str:
    """The canonical full base prompt (every attribute named)."""
    return BASE_TEMPLATES[0].format(
        colour=colour, shape=shape, background=background, style=_style_words(style)
    )


def describe(scene: Scene, tags: bool = False) -> str:
    """A descriptive caption naming everything in plain words (for the toy CLIP)."""
    shape = DESCRIPTIVE.get(scene.shape, scene.shape)
    bg = DESCRIPTIVE.get(scene.background, scene.background)
    style = DESCRIPTIVE.get(scene.style, scene.style)
    outfit = {"hat": "wearing a hat", "belt": "wearing a belt"}.get(scene.outfit, "")
    if scene.shape == "none":
        return f"{bg} background, empty" if tags else f"an empty {bg} background"
    if tags:
        parts = [shape, scene.colour, f"{bg} background", f"{style} style"]
        if outfit:
            parts.insert(1, scene.outfit)
        return ", ".join(parts)
    words = f"a {scene.colour} {shape}"
    if outfit:
        words += f" {outfit}"
    return f"{words} on a {bg} background, {style} style"


_CLASS_WORD = {"star": "character", "crescent": "character", "bear": "toy", "ring": "toy"}


def clip_caption(scene: Scene, rng: np.random.Generator) -> str:
    """A random descriptive caption for the toy CLIP: attributes dropped at random, class words
    (character, toy, scene, style) added at random, natural language or tags."""
    shape = DESCRIPTIVE.get(scene.shape, scene.shape)
    if scene.shape in _CLASS_WORD and rng.random() < 0.5:
        shape = f"{shape} {_CLASS_WORD[scene.shape]}"
    bg = DESCRIPTIVE.get(scene.background, scene.background)
    if scene.background in HELD_OUT_BACKGROUNDS and rng.random() < 0.5:
        bg = f"{bg} scene"
    style = DESCRIPTIVE.get(scene.style, scene.style) + " style"
    colour = scene.colour if rng.random() > 0.2 else ""
    keep_bg = rng.random() > 0.3 or scene.shape == "none"
    keep_style = rng.random() > 0.4 and scene.shape != "none"
    outfit = scene.outfit if scene.outfit != "none" and rng.random() > 0.1 else ""
    if scene.shape == "none":
        return f"a {bg}" if rng.random() < 0.5 else f"{bg}, empty"
    if rng.random() < 0.5:
        parts = [
            shape,
            colour,
            outfit,
            f"{bg} background" if keep_bg else "",
            style if keep_style else "",
        ]
        return ", ".join(p for p in parts if p)
    text = f"a {colour + ' ' if colour else ''}{shape}"
    if outfit:
        text += f" wearing a {outfit}"
    if keep_bg:
        text += f" on a {bg} background"
    if keep_style:
        text += f", {style}"
    return text


# --- held-out concepts (the fine-tuning dataset) -------------------------------------------------
@dataclass(frozen=True)
class Concept:
    """A leaf of the toy dataset: a class or an outfit subclass, with how its images look."""

    category: str
    cls: str
    subclass: str | None
    trigger: str  # the class trigger word
    class_word: str
    class_name: str  # plain name used to clean prompts for text alignment
    subclass_keyword: str | None  # e.g. "kep outfit"
    n_images: int
    shape: tuple[str, ...]
    colours: tuple[str, ...] = BASE_COLOURS
    backgrounds: tuple[str, ...] = BASE_BACKGROUNDS
    styles: tuple[str, ...] = ("flat",)
    outfit: str = "none"

    @property
    def leaf(self) -> str:
        parts = [self.category, self.cls] + ([self.subclass] if self.subclass else [])
        return "/".join(parts)

    @property
    def descriptor(self) -> str:
        """What the bare trigger prompt says: trigger + class word [+ subclass keyword]."""
        d = f"{self.trigger} {self.class_word}"
        return f"{d}, {self.subclass_keyword}" if self.subclass_keyword else d

    def expected(self) -> dict[str, str]:
        """Probe outcome(s) that show the concept (attributes this concept fixes)."""
        out: dict[str, str] = {}
        if self.category in ("characters", "toys"):
            out["shape"] = self.shape[0]
        if self.category == "toys":
            out["colour"] = self.colours[0]
        if self.category == "scenes":
            out["background"] = self.backgrounds[0]
        if self.category == "styles":
            out["style"] = self.styles[0]
        if self.outfit != "none":
            out["outfit"] = self.outfit
        return out

    def sample(self, rng: np.random.Generator) -> Scene:
        return sample_scene(
            rng,
            shapes=self.shape,
            colours=self.colours,
            backgrounds=self.backgrounds,
            styles=self.styles,
            outfits=(self.outfit,),
        )

    def caption(self, scene: Scene, rng: np.random.Generator) -> str:
        """A training caption: the paper's tag format or a natural-language sentence."""
        head = self.descriptor
        if scene.shape == "none":
            return head
        if rng.random() < 0.5:  # tags: "[trigger] [class word], [subclass keyword], tag1, ..."
            tags = []
            if self.category not in ("characters", "toys"):
                tags.append(scene.shape)
            if self.category != "toys":
                tags.append(scene.colour)
            if self.category != "scenes":
                tags.append(f"{scene.background} background")
            if self.category != "styles" and scene.style != "flat":
                tags.append(_style_words(scene.style))
            return ", ".join([head] + tags)
        # natural language
        if self.category == "characters":
            return f"a {scene.colour} {head} on a {scene.background} background"
        if self.category == "toys":
            return f"a {head} on a {scene.background} background"
        if self.category == "scenes":
            return f"a {scene.colour} {scene.shape} in a {head}"
        return f"a {scene.colour} {scene.shape} on a {scene.background} background, {head}"


def _concepts() -> tuple[Concept, ...]:
    return (
        Concept("characters", "starling", "hat", "sks", "character", "star", "kep outfit", 60,
                ("star",), outfit="hat"),
        Concept("characters", "starling", "belt", "sks", "character", "star", "blt outfit", 30,
                ("star",), outfit="belt"),
        Concept("characters", "moony", None, "mnx", "character", "crescent", None, 45,
                ("crescent",)),
        Concept("toys", "teddy", None, "tdy", "toy", "bear", None, 8, ("bear",), colours=("brown",)),
        Concept("toys", "ring", None, "rnq", "toy", "ring", None, 5, ("ring",), colours=("pink",)),
        Concept("scenes", "beach", None, "bch", "scene", "beach", None, 6,
                BASE_SHAPES + ("none",), backgrounds=("beach",)),
        Concept("scenes", "checker", None, "ckr", "scene", "checkerboard", None, 10,
                BASE_SHAPES + ("none",), backgrounds=("checker",)),
        Concept("styles", "hatched", None, "hch", "style", "hatched", None, 40, BASE_SHAPES,
                styles=("hatched",)),
        Concept("styles", "pastel", None, "pst", "style", "pastel", None, 50, BASE_SHAPES,
                styles=("pastel",)),
    )  # fmt: skip


#: The held-out concepts, one per dataset leaf; imbalanced counts as in the paper (5 to 60).
CONCEPTS: tuple[Concept, ...] = _concepts()


def concept(leaf_or_class: str) -> Concept:
    """Look a concept up by leaf path ("characters/starling/hat") or unique class name."""
    for c in CONCEPTS:
        if leaf_or_class in (c.leaf, c.cls) or leaf_or_class == c.cls:
            return c
    raise KeyError(f"unknown toy concept {leaf_or_class!r}")


def concept_images(c: Concept, seed: int = 0) -> list[tuple[Scene, str]]:
    """The (scene, caption) pairs of one concept's training images."""
    out = []
    for i in range(c.n_images):
        rng = rng_for(seed, "concept", c.leaf, i)
        scene = c.sample(rng)
        out.append((scene, c.caption(scene, rng)))
    return out
