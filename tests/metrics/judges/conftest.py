import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def judge_images():
    """Three images of different shapes (landscape, portrait, square) with structure."""
    rng = np.random.default_rng(0)
    out = []
    for h, w in ((96, 160), (200, 120), (230, 230)):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) % 64 * 4], -1)
        noisy = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        out.append(Image.fromarray(noisy))
    return out


PROMPTS = ["a photo of a dog on the beach", "a red cube", "an oil painting of a lighthouse at dusk"]
