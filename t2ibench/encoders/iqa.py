"""IQA probes LIQE and MANIQA (KonIQ) through pyiqa: one quality score per image, (n, 1).

Needs the ``iqa`` extra (``pip install "t2ibench[iqa]"``); pyiqa's code and weights are under a
non-commercial licence (see the README). As in the paper's appendix H.2, images are resized so the
short side is 512 px (``scale``, bicubic, values in [0, 1]; pyiqa normalises inside) and 10 patches
are scored per image. MANIQA samples its patches at random: every image is scored on its own with the
torch RNG reset to a fixed seed (in a forked RNG state), so a score depends only on the image — not on
the batch, the order, or what the cache already held.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from t2ibench.encoders.base import (
    Encoder,
    EncoderSpec,
    check_local_path,
    local_weights_id,
    stack_rows,
)
from t2ibench.errors import ConfigError, MissingExtraError

PATCH_SEED = 0
NUM_PATCHES = 10
# registry name → (pyiqa metric name, pyiqa option that sets the number of patches)
PYIQA_METRICS = {"liqe": ("liqe", "num_patch"), "maniqa": ("maniqa-koniq", "test_sample")}


def import_pyiqa() -> Any:
    """Import pyiqa, or say which extra provides it."""
    try:
        import pyiqa
    except ImportError as exc:
        raise MissingExtraError(
            'the IQA probes (liqe, maniqa) need pyiqa: pip install "t2ibench[iqa]" '
            "(pyiqa is under a non-commercial licence)"
        ) from exc
    return pyiqa


class IqaProbe(Encoder):
    kind = "score"

    def __init__(
        self, *args: Any, seed: int = PATCH_SEED, num_patches: int = NUM_PATCHES, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.seed = seed
        self.num_patches = num_patches

    @property
    def preprocess_id(self) -> str:
        # Patch count and seed change the scores, so they belong in the cache key.
        return f"{self.preprocess.id}-patches{self.num_patches}-seed{self.seed}"

    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor:
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            return torch.as_tensor(self.model(pixels)).reshape(pixels.shape[0], 1)

    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Scores (n, 1); one image per forward pass so each sees the same seeded patch draw."""
        rows = []
        for image in images:
            x = self.preprocess(image).unsqueeze(0).to(self.device)
            rows.append(self._run(self._forward_images, x)[0])
        return stack_rows(rows, self.kind)  # type: ignore[return-value]


def load(
    spec: EncoderSpec,
    weights: str | None,
    tiny: bool,
    preprocess: Any,
    device: Any,
    dtype: Any,
    batch_size: int,
    cache_dir: Path | None,
) -> IqaProbe:
    if tiny:
        raise ConfigError(
            f"tiny: the IQA probe {spec.name} has no tiny variant (pyiqa builds its own networks)"
        )
    pyiqa = import_pyiqa()
    metric, patch_option = PYIQA_METRICS[spec.name]
    kwargs: dict[str, Any] = {patch_option: NUM_PATCHES}
    if weights is not None:
        check_local_path(spec.name, weights)
        kwargs["pretrained_model_path"] = weights
        wid = local_weights_id(Path(weights))
    else:
        wid = f"pyiqa-{getattr(pyiqa, '__version__', 'unknown')}:{metric}"
    model = pyiqa.create_metric(metric, as_loss=False, device=torch.device(device), **kwargs)
    return IqaProbe(
        spec.name,
        model,
        wid,
        preprocess,
        device,
        dtype,
        batch_size,
        weights or spec.default_weights,
    )


def _register() -> None:
    from t2ibench.encoders.registry import register_encoder

    for name, desc in (
        ("liqe", "LIQE (CLIP-based blind IQA), pyiqa, 10 patches"),
        ("maniqa", "MANIQA trained on KonIQ-10k, pyiqa, 10 seeded random patches"),
    ):
        register_encoder(
            EncoderSpec(
                name=name,
                kind="score",
                default_weights=f"pyiqa:{PYIQA_METRICS[name][0]}",
                feature_desc="(n, 1) score",
                description=f"{desc} (iqa extra; pyiqa is non-commercial)",
                load=load,
                interpolation="bicubic",
                default_resize="scale",
                size=512,
                normalize=False,
            )
        )


_register()
