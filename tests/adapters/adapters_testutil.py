"""Helpers shared by the adapters tests."""

from __future__ import annotations


def unet_te_outputs(pipe, seed: int = 0):
    """Deterministic UNet noise prediction and text-encoder states for a fixed input."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = pipe.tokenizer(
        ["a photo of a sks stuffed toy", ""],
        padding="max_length",
        max_length=77,
        return_tensors="pt",
    ).input_ids
    with torch.no_grad():
        ehs = pipe.text_encoder(ids)[0]
        size = pipe.unet.config.sample_size
        x = torch.randn(2, 4, size, size, generator=g)
        out = pipe.unet(x, torch.tensor([10, 700]), ehs).sample
    return out, ehs
