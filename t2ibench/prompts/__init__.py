"""Prompt types: each turns one dataset leaf into generation jobs (prompt, seed, prompt type).

Counts and seeds follow PROTOCOL "Generation": ``n`` images per leaf (100 in the paper), image k uses
seed ``1000 + k`` for every checkpoint and for the base model, so images pair by seed.

- ``train``: the leaf's training captions spread over the n images.
- ``trigger``: the concept descriptor alone.
- ``alter``: the class's alter template set (10 templates × 10 images, paper Table 6).
- ``style``: 5 style prompts × 20 images; none for style classes.
- ``concept-agnostic``: training captions with the trigger words removed — the first half keeps
  the class word, the second half drops it too — to measure concept leak into plain prompts.

Templates live in files (``prompts/`` in the repository, ``t2ibench.prompt_files`` when installed).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from t2ibench.data import Dataset, Leaf, contains_word
from t2ibench.errors import DatasetError
from t2ibench.registry import Registry

SEED_OFFSET = 1000
IMAGES_PER_LEAF = 100


@dataclass(frozen=True)
class GenerationJob:
    """One image to generate. ``index`` is k in 0..n-1 within (leaf, prompt type)."""

    leaf: str
    prompt_type: str
    prompt: str
    seed: int
    index: int
    variant: str = ""

    @property
    def stem(self) -> str:
        """A file stem unique within ``<leaf>/<prompt_type>/``."""
        return f"{self.index:04d}-s{self.seed}"


@dataclass(frozen=True)
class PromptType:
    name: str
    description: str
    build: Callable[[Leaf, Dataset, int], list[GenerationJob]]

    def jobs(self, leaf: Leaf, dataset: Dataset, n: int = IMAGES_PER_LEAF) -> list[GenerationJob]:
        if n < 1:
            raise ValueError(f"images per leaf must be ≥ 1, got {n}")
        return self.build(leaf, dataset, n)


PROMPT_TYPES: Registry[PromptType] = Registry("prompt type", entry_point_group="t2ibench.prompts")


def register_prompt_type(name: str, description: str):
    """Decorator: ``@register_prompt_type("trigger", "...")`` on ``build(leaf, dataset, n)``."""

    def deco(fn: Callable[[Leaf, Dataset, int], list[GenerationJob]]):
        PROMPT_TYPES.register(name, PromptType(name, description, fn))
        return fn

    return deco


def get_prompt_type(name: str) -> PromptType:
    return PROMPT_TYPES.get(name)


def list_prompt_types() -> list[str]:
    return PROMPT_TYPES.names()


def jobs_for(
    dataset: Dataset, prompt_types: list[str] | None = None, n: int = IMAGES_PER_LEAF
) -> list[GenerationJob]:
    """Every job for every leaf × prompt type, in a stable order."""
    out = []
    for leaf in sorted(dataset.leaves.values(), key=lambda lf: lf.key):
        for pt in prompt_types or list_prompt_types():
            out.extend(get_prompt_type(pt).jobs(leaf, dataset, n))
    return out


# --- template files ------------------------------------------------------------------------------


def read_template_file(name: str) -> list[str]:
    """Lines of a shipped template file, e.g. ``"style.txt"`` or ``"alter/person.txt"``."""
    res = resources.files("t2ibench.prompt_files").joinpath(*name.split("/"))
    try:
        text = res.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"prompt template file {name!r} is not shipped with t2ibench") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def list_alter_sets() -> list[str]:
    folder = resources.files("t2ibench.prompt_files").joinpath("alter")
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".txt"))


def alter_templates(leaf: Leaf, dataset: Dataset) -> list[str]:
    """The class's alter templates: a shipped set name, or a ``.txt`` inside the dataset folder."""
    ref = leaf.concept.alter_templates
    if ref.endswith(".txt"):
        path = (dataset.root / ref).resolve()
        if not path.is_relative_to(dataset.root):
            raise DatasetError(
                f'{dataset.root / "dataset.toml"}: classes."{leaf.concept.key}".alter_templates: '
                f"{ref!r} points outside the dataset folder"
            )
        if not path.is_file():
            raise DatasetError(f"{path}: alter_templates: file not found")
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    else:
        if ref not in list_alter_sets():
            raise DatasetError(
                f'{dataset.root / "dataset.toml"}: classes."{leaf.concept.key}".alter_templates: '
                f"unknown set {ref!r} (shipped: {', '.join(list_alter_sets())})"
            )
        lines = read_template_file(f"alter/{ref}.txt")
    for ln in lines:
        # Exactly one "{}" (the descriptor): "{} and {}" or "{name}" would fail at generation.
        try:
            ok = ln.count("{}") == 1 and ln.format("x") is not None
        except (IndexError, KeyError, ValueError):
            ok = False
        if not ok:
            raise DatasetError(
                f"alter template set {ref!r}: line {ln!r} must hold exactly one '{{}}' "
                "(the concept descriptor) and no other braces"
            )
    return lines


def _spread(prompts: list[str], n: int) -> list[str]:
    """n prompts from a list: image k gets prompt ⌊k·P/n⌋ (10 × 10 for 10 prompts and n = 100);
    with more images than prompts each prompt gets a consecutive run of images."""
    p = len(prompts)
    return [prompts[k * p // n] for k in range(n)]


def _jobs(
    leaf: Leaf, prompt_type: str, prompts: list[str], variants: list[str] | None = None
) -> list[GenerationJob]:
    return [
        GenerationJob(
            leaf.key, prompt_type, prompt, SEED_OFFSET + k, k, variants[k] if variants else ""
        )
        for k, prompt in enumerate(prompts)
    ]


@register_prompt_type("train", "the leaf's training captions spread over the images")
def _train(leaf: Leaf, dataset: Dataset, n: int) -> list[GenerationJob]:
    return _jobs(leaf, "train", _spread(leaf.captions, n))


@register_prompt_type("trigger", "the concept descriptor alone (e.g. 'whoo anime girl')")
def _trigger(leaf: Leaf, dataset: Dataset, n: int) -> list[GenerationJob]:
    templates = read_template_file("trigger.txt")
    return _jobs(leaf, "trigger", _spread([t.format(leaf.descriptor) for t in templates], n))


@register_prompt_type("alter", "the class's Table 6 alter templates, 10 templates × 10 images")
def _alter(leaf: Leaf, dataset: Dataset, n: int) -> list[GenerationJob]:
    templates = alter_templates(leaf, dataset)
    return _jobs(leaf, "alter", _spread([t.format(leaf.descriptor) for t in templates], n))


@register_prompt_type("style", "5 style prompts × 20 images (none for style classes)")
def _style(leaf: Leaf, dataset: Dataset, n: int) -> list[GenerationJob]:
    if leaf.concept.kind == "style":
        return []
    templates = read_template_file("style.txt")
    return _jobs(leaf, "style", _spread([t.format(leaf.descriptor) for t in templates], n))


@register_prompt_type(
    "concept-agnostic",
    "training captions without trigger words; first half keeps the class word, second half drops it",
)
def _concept_agnostic(leaf: Leaf, dataset: Dataset, n: int) -> list[GenerationJob]:
    captions = _spread(leaf.captions, n)
    half = (n + 1) // 2
    prompts, variants = [], []
    for k, caption in enumerate(captions):
        keep = k < half
        prompts.append(strip_concept(caption, leaf, keep_class_word=keep))
        variants.append("class-word" if keep else "no-class-word")
    return _jobs(leaf, "concept-agnostic", prompts, variants)


# --- text cleaning -------------------------------------------------------------------------------


def _sub_word(text: str, word: str, repl: str) -> str:
    return re.sub(rf"(?<!\w){re.escape(word)}(?!\w)", repl, text, flags=re.IGNORECASE)


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+,", ",", text)
    text = re.sub(r",(\s*,)+", ",", text)
    return text.strip(" ,")


def strip_concept(prompt: str, leaf: Leaf, *, keep_class_word: bool) -> str:
    """Remove the class and subclass trigger words (whole words only), optionally the class word."""
    c = leaf.concept
    words = [c.trigger] + [s.trigger for s in c.subclasses.values()]
    if not keep_class_word:
        words.append(c.class_word)
    for w in sorted(words, key=len, reverse=True):
        prompt = _sub_word(prompt, w, "")
    return _tidy(prompt)


def clean_prompt(prompt: str, leaf: Leaf) -> str:
    """The text that image–text alignment compares against (PROTOCOL "Metrics").

    Characters: the trigger is removed and the class word kept ("whoo anime girl" → "anime girl").
    Scenes and objects: the trigger is replaced by the class name ("adl scene" → "castle scene").
    Styles and outfits: trigger and class word are removed ("pgs style of a city" → "of a city";
    "onex outfit" → ""). Matching is by whole word, so "waist" survives the trigger "wai".
    """
    c = leaf.concept
    for sub in c.subclasses.values():
        # "onex outfit" → "", then any stray "onex".
        prompt = _sub_word(prompt, sub.keyword, "")
        prompt = _sub_word(prompt, sub.trigger, "")
    if c.kind == "character":
        prompt = _sub_word(prompt, c.trigger, "")
    elif c.kind in ("scene", "object"):
        prompt = _sub_word(prompt, c.trigger, c.class_name)
    else:  # style
        prompt = _sub_word(prompt, f"{c.trigger} {c.class_word}", "")
        prompt = _sub_word(prompt, c.trigger, "")
    return _tidy(prompt)


def has_trigger(prompt: str, leaf: Leaf) -> bool:
    return contains_word(prompt, leaf.concept.trigger)


__all__ = [
    "IMAGES_PER_LEAF",
    "PROMPT_TYPES",
    "SEED_OFFSET",
    "GenerationJob",
    "PromptType",
    "alter_templates",
    "clean_prompt",
    "get_prompt_type",
    "jobs_for",
    "list_alter_sets",
    "list_prompt_types",
    "read_template_file",
    "register_prompt_type",
    "strip_concept",
]
