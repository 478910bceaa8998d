"""``generate.compile``: the denoiser under ``torch.compile`` for one generation call, the same
images, the module given back after. Marked slow: dynamo traces the tiny UNet for about 11 s on one
CPU thread (the eager backend; inductor would also compile C++). ``benchmarks/gpu.sh`` times the
real backend."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from t2ibench.pipeline import generate as gen_mod
from t2ibench.pipeline.generate import GenerationSettings, generate_batch
from t2ibench.prompts import GenerationJob

JOBS = [GenerationJob("toys/bear", "trigger", "a teddy bear", 1000, 0)]


@pytest.mark.slow
def test_compiled_denoiser_makes_the_same_images_and_is_undone(t2ibench_cache, monkeypatch):
    from t2ibench.models import load_base

    torch.set_num_threads(1)
    pipe = load_base("tiny")
    unet = pipe.unet
    plain = GenerationSettings(steps=2, height=64, width=64)
    compiled = GenerationSettings(steps=2, height=64, width=64, compile=True)
    monkeypatch.setattr(gen_mod, "COMPILE_KWARGS", {"backend": "eager"})
    seen = []
    real = type(pipe).__call__

    @functools.wraps(real)  # the call passes only the arguments __call__'s signature names
    def spy(self, *a, **kw):
        seen.append(type(self.unet).__name__)
        return real(self, *a, **kw)

    monkeypatch.setattr(type(pipe), "__call__", spy)
    with gen_mod.sampling_options(pipe, plain):
        before = np.asarray(generate_batch(pipe, JOBS, plain)[0])
    with gen_mod.sampling_options(pipe, compiled):
        after = np.asarray(generate_batch(pipe, JOBS, compiled)[0])
    assert seen == ["UNet2DConditionModel", "OptimizedModule"]
    assert np.abs(before.astype(int) - after.astype(int)).max() <= 1
    assert pipe.unet is unet
