"""Encoder ``mean-colour``: each image's per-channel mean and standard deviation (6 features)."""

from __future__ import annotations

import torch

from t2ibench.encoders import Encoder, EncoderSpec, register_encoder


class MeanColour(Encoder):
    kind = "image"

    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.cat([pixels.mean(dim=(2, 3)), pixels.std(dim=(2, 3))], dim=1)


def load(spec, weights, tiny, preprocess, device, dtype, batch_size, cache_dir) -> MeanColour:
    # No weights: the tiny variant is the encoder itself.
    return MeanColour(spec.name, torch.nn.Identity(), "none", preprocess, device, dtype, batch_size)


register_encoder(
    EncoderSpec(
        name="mean-colour",
        kind="image",
        default_weights="-",
        feature_desc="(n, 6): RGB mean and std",
        description="per-channel colour statistics (example plug-in)",
        load=load,
        default_resize="stretch",
        size=32,
        normalize=False,
    )
)
