"""Prompt type ``closeup``: the concept descriptor in a close-up shot."""

from __future__ import annotations

from t2ibench.data import Dataset, Leaf
from t2ibench.prompts import SEED_OFFSET, GenerationJob, register_prompt_type


@register_prompt_type("closeup", "'a close-up photo of <descriptor>', one prompt for every image")
def closeup(leaf: Leaf, dataset: Dataset, n: int) -> list[GenerationJob]:
    prompt = f"a close-up photo of {leaf.descriptor}"
    return [GenerationJob(leaf.key, "closeup", prompt, SEED_OFFSET + k, k) for k in range(n)]
