"""The newer bases at full model size on CPU, random weights (issue 19, item 5).

Each base's published config tree built on the meta device, streamed to a diffusers folder with
random bf16 weights, loaded through ``load_base``; a LoRA and PEFT's IA3 trained 2 steps at
64 px, each saved file re-applied and one image generated with 1 step. Time and peak memory, and
the bases left out and why: ``benchmarks/results/real_size_bases_cpu_*.md``, docs/methods.md.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _scenario():
    spec = importlib.util.spec_from_file_location(
        "real_size_bases_cpu", ROOT / "benchmarks" / "real_size_bases_cpu.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("base", ["sdxl"])
def test_base_code_path_at_full_size(base, full_size_folder):
    # One thread (tests/conftest.py's pin): the other worker keeps the second core busy, and a
    # second thread here cost 15 % more CPU seconds (228 vs 199 s for the SD1.5 scenario) to
    # shorten only this test (benchmarks/results/real_size_cpu_2026-12-07_threads*.md).
    # 7 GiB of random weights: full_size_folder is removed when the test ends
    _check(base, full_size_folder)


def _check(base, tmp_path):
    from safetensors import safe_open

    from t2ibench.architectures import architecture_of_pipe

    module = _scenario()
    out = module.base_scenario(base, tmp_path)
    pipe = out["pipe"]
    arch = architecture_of_pipe(pipe)
    assert arch.name == {"sdxl": "sdxl", "sd3.5-medium": "sd3"}[base]
    denoiser = arch.denoiser_of(pipe)
    # the published architecture at its published size, loaded in bf16
    assert sum(p.numel() for p in denoiser.parameters()) == module.BASES[base][2]
    assert next(denoiser.parameters()).dtype.is_floating_point
    for trainer, result in out["trained"].items():
        (ckpt,) = result.checkpoints
        assert len(result.losses) == 2 and all(np.isfinite(result.losses)), trainer
        with safe_open(str(ckpt), framework="pt") as f:
            keys = list(f.keys())
        assert keys, trainer
    base_image = out["images"].pop("base").astype(np.int16)
    assert base_image.shape == (64, 64, 3)
    for trainer, image in out["images"].items():
        # the re-applied file reaches the image (LoRA's up matrices start at 0 and IA3's scales
        # at 1: only the 2 steps can have moved them)
        assert np.abs(image.astype(np.int16) - base_image).max() > 0, trainer
