"""Helpers for the layout tests (imported by name: pytest puts this folder on sys.path): noise images, the CLI run in-process, cosine arithmetic in NumPy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from typer.testing import CliRunner


def noise(path: Path, seed: int, size: tuple[int, int] = (72, 56)) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def evaluate_cli(*args: str) -> pd.DataFrame:
    """``t2ibench evaluate ARGS`` in this process; the results table it wrote (``--out``)."""
    from t2ibench.cli import app

    result = CliRunner().invoke(app, ["evaluate", *args], catch_exceptions=True)
    if result.exception is not None:
        raise result.exception
    assert result.exit_code == 0, result.output
    out = Path(args[list(args).index("--out") + 1])
    return pd.read_parquet(out / "results.parquet")


def unit(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def mean_cos_all_pairs(a, b) -> float:
    return float((unit(a) @ unit(b).T).mean())


def mean_cos_rows(a, b) -> float:
    return float((unit(a) * unit(b)).sum(axis=1).mean())


def open_images(paths) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in paths]


# The DreamBooth dataset's prompts_and_classes.txt, two subjects (its published format).
DREAMBOOTH_PROMPTS = """Classes

subject_name,class
backpack,backpack
dog,dog

Prompts

Object Prompts

prompt_list = [
'a {0} {1} in the jungle'.format(unique_token, class_token),
'a red {0} {1}'.format(unique_token, class_token)
]

Live Subject Prompts

prompt_list = [
'a {0} {1} in the snow'.format(unique_token, class_token),
'a {0} {1} wearing a red hat'.format(unique_token, class_token)
]
"""
