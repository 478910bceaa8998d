"""The shipped toy FLUX-class base loads through the real loaders, is run by the FLUX plug-in
(``t2ibench.bases.flux``) from what its folder declares, generates deterministically, follows
prompts, and runs the protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2ibench.toy import flux, world
from t2ibench.toy.plugin import FLUX_DIR, flux_installed

pytestmark = pytest.mark.skipif(not flux_installed(), reason="toy-flux weights not built")


@pytest.fixture(scope="module")
def pipe():
    from t2ibench.models import load_base

    return load_base("toy-flux")  # the named base, as --base toy-flux


def test_a_stock_flux_pipeline_within_budget(pipe):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5EncoderModel

    from t2ibench.architectures import architecture_of_pipe

    assert isinstance(pipe, FluxPipeline)
    assert isinstance(pipe.transformer, FluxTransformer2DModel)
    assert isinstance(pipe.text_encoder, CLIPTextModel)
    assert isinstance(pipe.text_encoder_2, T5EncoderModel)
    assert isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler)
    assert pipe.scheduler.config.use_dynamic_shifting  # FLUX.1's resolution-dependent shift
    assert pipe.transformer.dtype == torch.float32  # fp16 files, loaded as float32 on CPU
    assert pipe.vae.config.shift_factor is not None  # FLUX's latent convention, measured
    assert architecture_of_pipe(pipe).name == "flux"
    assert not pipe.transformer.config.guidance_embeds  # true CFG, not FLUX.1-dev's distilled
    files = [p for p in FLUX_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 25 * 2**20
    weights = [p for p in files if p.suffix in (".safetensors", ".bin", ".pt", ".ckpt")]
    assert weights and all(p.suffix == ".safetensors" for p in weights)


def test_generates_deterministically(pipe):
    from tools.toy.evaluate import generate

    prompt = "a red circle on a white background, flat style"
    a = generate(pipe, [prompt] * 2, [5, 6], steps=4)
    again = generate(pipe, [prompt] * 2, [5, 6], steps=4)
    assert a[0].size == (world.SIZE, world.SIZE)
    for x, y in zip(a, again, strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert not np.array_equal(np.asarray(a[0]), np.asarray(a[1]))


def test_follows_prompts_by_the_probe(pipe):
    """Eight base prompts (every shape, colour and background), 12 flow steps: the probe sees
    what was asked (the full measurement: benchmarks/toy_flux_base.py)."""
    from t2ibench.toy.probe import Probe
    from tools.toy.evaluate import follow_rates, generate

    combos = list(
        zip(
            world.BASE_SHAPES * 2,
            world.BASE_COLOURS + world.BASE_COLOURS[:2],
            world.BASE_BACKGROUNDS * 2,
            world.BASE_STYLES * 4,
            strict=True,
        )
    )
    prompts = [world.base_prompt(*c) for c in combos]
    wants = [dict(zip(("shape", "colour", "background", "style"), c, strict=True)) for c in combos]
    preds = Probe.load().predict(generate(pipe, prompts, range(100, 108), steps=12))
    rates = follow_rates(preds, wants)
    assert rates["shape"] >= 0.75 and rates["colour"] >= 0.75 and rates["all"] >= 0.5, rates


def test_flow_shift_follows_the_scheduler_config(pipe):
    """Training's σ shift is the sampler's: FLUX.1's dynamic shift from the image-token count
    (kohya's 3.1582 at 1024 px), the static one without dynamic shifting."""
    import math

    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    from t2ibench.architectures import architecture_of_pipe

    arch = architecture_of_pipe(pipe)
    toy = torch.zeros(1, 4, 8, 8)  # 16 packed tokens
    assert arch.flow_shift(pipe.scheduler, toy) == pytest.approx(math.exp(calculate_shift(16)))
    assert arch.flow_shift(pipe.scheduler, torch.zeros(1, 16, 128, 128)) == pytest.approx(
        3.1582, abs=1e-4
    )
    static = FlowMatchEulerDiscreteScheduler(shift=3.0)
    assert arch.flow_shift(static, toy) == arch.objective.shift


def test_training_draws_sigma_with_the_samplers_shift(pipe, monkeypatch):
    """The flow-matching loss shifts σ by the architecture's ``flow_shift`` of these latents (the
    toy's 16 tokens: exp(mu) ≈ 1.58), not FLUX_SHIFT's static 3.1582."""
    import math

    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    from t2ibench.architectures import architecture_of_pipe
    from t2ibench.bases import objectives

    seen = []
    real = objectives.shifted_sigmas
    monkeypatch.setattr(
        objectives, "shifted_sigmas", lambda u, shift: seen.append(shift) or real(u, shift)
    )
    arch = architecture_of_pipe(pipe)
    with torch.no_grad():
        arch.training_loss(
            pipe, torch.zeros(2, 4, 8, 8), ["a", "b"], torch.Generator().manual_seed(0),
            arch.training_scheduler(pipe),
        )  # fmt: skip
    assert seen == [pytest.approx(math.exp(calculate_shift(16)))]


def test_generation_is_true_cfg_on_the_tokenizers_length(pipe):
    """No guidance embedding: the protocol's guidance is true CFG against the empty caption (or
    the negative prompt); the T5 length is the tokenizer's (24), as in training."""
    from t2ibench.architectures import pipeline_call_kwargs

    base = {"prompt": ["a", "b"], "guidance_scale": 4.0, "negative_prompt": None, "eta": 0.0}
    got = pipeline_call_kwargs(pipe, base)
    assert got["true_cfg_scale"] == 4.0 and "guidance_scale" not in got and "eta" not in got
    assert got["negative_prompt"] == ["", ""] and got["max_sequence_length"] == 24
    kept = pipeline_call_kwargs(pipe, {**base, "negative_prompt": ["blurry"] * 2})
    assert kept["negative_prompt"] == ["blurry"] * 2


def test_the_objective_is_what_the_base_was_trained_on(pipe):
    """The trained transformer's flow loss on base images is far below a fresh one's: latents,
    packing, σ and target agree with pretraining (a flipped target or a wrong latent shift would
    not)."""
    from t2ibench.architectures import architecture_of_pipe
    from t2ibench.toy.common import render_pool, to_unit

    arch = architecture_of_pipe(pipe)
    images, scenes = render_pool(world.sample_base_scene, 5, 8)
    captions = [world.base_caption(s, 0) for s in scenes]
    shift, scale = arch.latent_scale(pipe.vae)
    fresh_pipe = flux.pipeline(
        flux.build_transformer(), pipe.text_encoder, pipe.text_encoder_2, pipe.vae
    )
    with torch.no_grad():
        z = pipe.vae.encode(to_unit(images)).latent_dist.mean
        latents = (z - shift) * scale
        losses = [
            float(
                arch.training_loss(
                    p, latents, captions, torch.Generator().manual_seed(0), p.scheduler
                )
            )
            for p in (pipe, fresh_pipe)
        ]
    assert losses[0] < 0.5 * losses[1], losses


def test_presets_select_flux_blocks(pipe):
    """The FLUX plug-in's presets (what training wraps) on the toy transformer's blocks."""
    from t2ibench.adapters.presets import Preset, select_modules
    from t2ibench.architectures import architecture_of_pipe

    arch = architecture_of_pipe(pipe)
    tr = pipe.transformer

    def names(preset):
        p = Preset(preset, unet=arch.preset_patterns(preset, "unet"), te=(), description="")
        return [n for n, _ in select_modules(tr, "unet", p)]

    attn, blocks, full = names("attn-only"), names("attn-mlp"), names("full")
    n_double, n_single = tr.config.num_layers, tr.config.num_single_layers
    assert len(attn) == 8 * n_double + 3 * n_single
    assert "transformer_blocks.0.attn.add_q_proj" in attn
    assert "single_transformer_blocks.0.proj_mlp" in blocks and "proj_out" not in blocks
    assert len(blocks) == 12 * n_double + 5 * n_single
    assert set(full) - set(blocks) >= {"x_embedder", "context_embedder", "proj_out"}


@pytest.mark.parametrize("trainer", ["lora"])
def test_the_protocol_runs_on_toy_flux(trainer, tmp_path):
    """``t2ibench run --base toy-flux --trainer lora``, shrunk: one leaf, one epoch, two images per
    prompt type, two flow steps; trained, generated, evaluated and reported."""
    import json

    from t2ibench.pipeline.run import RunOptions, execute, resolve
    from t2ibench.toy.dataset import make_toy_dataset

    ds = make_toy_dataset(tmp_path / "ds", leaves=["toys/ring"])
    layer = {
        "base": "toy-flux",
        "dataset": str(ds),
        "trainer": trainer,
        "trainer.epochs": 1,
        "trainer.save_epochs": [1],
        "generate.images_per_leaf": 2,
        "generate.steps": 2,
        "generate.prompt_types": ["trigger", "alter"],
    }
    options = RunOptions(
        layers=[("test", layer)], profile="toy", out=str(tmp_path / "out"), progress=False
    )
    run_dir = execute(resolve(options))
    record = json.loads((run_dir / "run.json").read_text())
    assert record["base"]["id"].endswith("flux")
    assert (run_dir / "checkpoints" / f"{trainer}-e000001.safetensors").is_file()
    assert (run_dir / "report" / "report.html").is_file()


def test_style_weight_oversamples_a_style_and_refuses_bad_input():
    """``train_flux_base --style-weight outline=3``: outline scenes drawn 3× as often (3/4 of the
    draws on an even pool); no weights keep the uniform draws; a non-base style is one line."""
    from tools.toy.train_flux_base import _style_weights, scene_draw_weights

    scenes = [world.sample_base_scene(0, i) for i in range(400)]
    assert scene_draw_weights(scenes, _style_weights([])) is None
    w = scene_draw_weights(scenes, _style_weights(["outline=3"]))
    outline = torch.tensor([s.style == "outline" for s in scenes])
    assert set(w[outline].tolist()) == {3.0} and set(w[~outline].tolist()) == {1.0}
    idx = torch.multinomial(w, 4000, replacement=True, generator=torch.Generator().manual_seed(0))
    expected = 3 * outline.sum() / (3 * outline.sum() + (~outline).sum())
    assert abs(outline[idx].float().mean() - expected) < 0.03
    for bad in (["hatched=2"], ["outline"], ["outline=0"]):
        with pytest.raises(SystemExit, match="--style-weight"):
            _style_weights(bad)
