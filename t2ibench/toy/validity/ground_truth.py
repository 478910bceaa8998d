"""What each metric should track in the toy world: the metric / ground-truth pairs, and how a
prompt and a probe prediction give the ground truth (requested attributes, probe outcome, concept
shown)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from t2ibench.toy import world

ATTRS = tuple(world.ATTRIBUTES)  # shape, colour, background, style, outfit
PRESERVED = ("background", "colour", "style")  # what a base → tuned pair should keep
GROUP_KEYS = ("run", "checkpoint", "leaf", "prompt_type")


@dataclass(frozen=True)
class Pair:
    """A metric and the ground truth it should track, on the prompt types where that makes sense."""

    metric: str
    truth: str
    prompt_types: tuple[str, ...] | None  # None: every prompt type the metric has rows for
    sign: int  # expected sign of the correlation
    why: str


PAIRS: tuple[Pair, ...] = (
    Pair("image_similarity", "concept_rate", ("train", "trigger"), +1,
         "closer to the dataset images ↔ the concept is shown more often"),
    Pair("centroid_distance", "concept_rate", ("train", "trigger"), -1,
         "a distance: smaller when the concept is shown more often"),
    Pair("frechet_distance", "concept_rate", ("train", "trigger"), -1,
         "a distance: smaller when the concept is shown more often"),
    Pair("text_alignment", "attribute_follow_rate", ("alter", "style"), +1,
         "images match their prompt ↔ the probed attributes are the ones the prompt names"),
    Pair("vendi", "distinct_outcomes", None, +1,
         "more diverse features ↔ more distinct things shown"),
    Pair("style_loss", "base_change_rate", None, +1,
         "further from the base model's image ↔ its background, colour or style changed"),
)  # fmt: skip

_VOCAB = {
    **{w: "shape" for w in world.BASE_SHAPES},
    **{w: "colour" for w in world.BASE_COLOURS},
    **{w: "background" for w in world.BASE_BACKGROUNDS},
    **{w: "style" for w in world.BASE_STYLES},
}


def requested_attributes(prompt: str) -> dict[str, str]:
    """The base-vocabulary attributes a prompt names, matched by whole word.

    An attribute named with two different values ("a red circle and a blue square") is ambiguous
    and left out. Held-out words (triggers, "beach", "pastel") are not base vocabulary.
    """
    found: dict[str, set[str]] = {}
    for word in re.findall(r"[a-z]+", prompt.lower()):
        attr = _VOCAB.get(word)
        if attr:
            found.setdefault(attr, set()).add(word)
    return {a: next(iter(v)) for a, v in found.items() if len(v) == 1}


def outcome_tuple(pred: dict[str, str]) -> tuple[str, ...]:
    """The probe outcome as a tuple; colour means nothing on an empty scene, so it is blanked."""
    empty = pred.get("shape") == "none"
    return tuple("" if (a == "colour" and empty) else str(pred[a]) for a in ATTRS)


def shows_concept(pred: dict[str, str], leaf: str) -> bool:
    """Whether a probe prediction shows the leaf's held-out concept (every attribute it fixes)."""
    return all(pred.get(k) == v for k, v in world.concept(leaf).expected().items())
