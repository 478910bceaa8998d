"""The ``flux`` base plug-in on a tiny random FLUX.1-class folder saved here: loaded through the
plug-in, one LoRA epoch with the flow-matching objective (transformer + CLIP-L, T5 frozen), the
file re-applied, images generated through ``FluxPipeline``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.bases.bases_testutil import make_tiny_flux


@pytest.fixture(scope="module")
def flux_folder(tmp_path_factory) -> Path:
    return make_tiny_flux(tmp_path_factory.mktemp("flux") / "tiny-flux")


@pytest.fixture(scope="module")
def flux_pipe(flux_folder):
    from t2ibench.models import load_base

    return load_base(flux_folder)


@pytest.fixture(scope="module")
def trained(flux_folder, flux_pipe, tmp_path_factory):
    from t2ibench.adapters import load_trainer_config, train_run
    from t2ibench.data import make_demo_dataset

    demo = make_demo_dataset(tmp_path_factory.mktemp("demo") / "demo")
    cfg = load_trainer_config("lora").replace(
        resolution=64, min_bucket_reso=64, max_bucket_reso=64, batch_size=4, warmup_steps=0,
        preset="attn-mlp", lr=1e-2,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("flux-train")
    return train_run(
        "lora", demo, str(flux_folder), out, cfg, epochs=1, progress=False, pipe=flux_pipe
    )


def test_flow_matching_shift_is_the_schedulers():
    """σ' = sσ/(1+(s−1)σ) is FlowMatchEulerDiscreteScheduler's static shift."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from t2ibench.bases.objectives import shifted_sigmas

    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    u = torch.linspace(1000, 1, 1000) / 1000  # its unshifted training sigmas
    assert torch.allclose(shifted_sigmas(u, 3.0), sched.sigmas.float(), atol=1e-6)


def test_loads_through_the_flux_plugin(flux_pipe):
    from t2ibench.architectures import architecture_of_pipe

    arch = architecture_of_pipe(flux_pipe)
    assert type(flux_pipe).__name__ == "FluxPipeline" and arch.name == "flux"
    assert arch.objective.kind == "flow_matching"


def test_lora_on_transformer_and_clip_not_t5(trained):
    from safetensors import safe_open

    (ckpt,) = trained.checkpoints
    with safe_open(str(ckpt), framework="pt") as f:
        keys = list(f.keys())
    assert {k.split("_")[1] for k in keys} == {"unet", "te1"}
    stems = {k.split(".")[0] for k in keys}
    # joint attention of both streams, the single block's attention and MLP
    for stem in (
        "lora_unet_transformer_blocks_0_attn_add_q_proj",
        "lora_unet_transformer_blocks_0_ff_context_net_2",
        "lora_unet_single_transformer_blocks_0_proj_mlp",
    ):
        assert stem in stems
    assert np.isfinite(trained.losses).all()


def test_saved_file_applies_and_generates(trained, flux_pipe):
    from t2ibench.adapters import apply_adapter
    from t2ibench.pipeline.generate import GenerationSettings, generate_batch
    from t2ibench.prompts import GenerationJob

    job = GenerationJob(leaf="x", prompt_type="t", prompt="a photo of sks dog", seed=3, index=0)
    settings = GenerationSettings(steps=2, height=64, width=64, scheduler="flow-euler")
    base = np.asarray(generate_batch(flux_pipe, [job], settings)[0], dtype=np.int16)
    with apply_adapter(flux_pipe, trained.checkpoints[-1]):
        tuned = np.asarray(generate_batch(flux_pipe, [job], settings)[0], dtype=np.int16)
    assert base.shape == (64, 64, 3) and np.abs(tuned - base).max() > 0
    assert np.array_equal(np.asarray(generate_batch(flux_pipe, [job], settings)[0]), base)
