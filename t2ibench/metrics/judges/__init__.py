"""Open judges as metric plug-ins: learned scorers of an image (and its prompt) beside the paper's
metrics, e.g. PickScore and HPSv2.1 (human preference).

Each judge is one file here that registers its encoder (kind ``score``: the model, its own
preprocessing, its weights) and its metric (criterion, direction, inputs), like any plug-in. A
judge that reads the prompt takes the input ``judge_scores`` (:mod:`._common`): one score per
(image, cleaned prompt), cached by image content and prompt. Light: the model libraries load inside
each judge's loader. ``docs/judges.md`` says what each measures, its licence and its cost.
"""

from __future__ import annotations

import importlib
import pkgutil

from t2ibench.metrics.judges._common import JudgeEncoder, register_judge

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["JudgeEncoder", "register_judge"]
