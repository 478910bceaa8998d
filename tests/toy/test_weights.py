"""The shipped toy weights load through the same code paths as real models, and work."""

import json

import numpy as np
import pytest
import torch

from t2ibench.toy import world
from t2ibench.toy.common import BASE_DIR, WEIGHTS, render_pool, to_unit
from t2ibench.toy.probe import Probe

pytestmark = pytest.mark.skipif(
    not (BASE_DIR / "model_index.json").is_file(), reason="toy weights not built"
)


@pytest.fixture(scope="module")
def pipe():
    from t2ibench.models import load_base

    return load_base(BASE_DIR)


def test_shipped_size_within_budget():
    """The UNet world; the FLUX-class base (``weights/flux``) has its own 25 MiB (test_toy_flux.py)."""
    flux = WEIGHTS / "flux"
    total = sum(
        p.stat().st_size for p in WEIGHTS.rglob("*") if p.is_file() and flux not in p.parents
    )
    assert total <= 40 * 2**20, f"{total / 2**20:.1f} MiB"


def test_base_is_a_stock_sd_pipeline(pipe):
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    assert isinstance(pipe, StableDiffusionPipeline)
    assert isinstance(pipe.unet, UNet2DConditionModel)
    assert isinstance(pipe.vae, AutoencoderKL)
    assert isinstance(pipe.text_encoder, CLIPTextModel)
    assert len(pipe.tokenizer) == 49408  # the real CLIP vocabulary
    assert pipe.tokenizer("a red circle").input_ids == [49406, 320, 736, 7117, 49407]
    assert pipe.unet.dtype == torch.float32  # fp16 files, loaded as float32 on CPU
    # the VAE config carries the measured latent scaling
    cfg = json.loads((BASE_DIR / "vae" / "config.json").read_text())
    assert 0.2 < cfg["scaling_factor"] < 5 and cfg["scaling_factor"] != 0.18215


def test_base_generates_deterministically(pipe):
    from tools.toy.evaluate import generate

    prompt = "a red circle on a white background, flat style"
    a = generate(pipe, [prompt] * 2, [5, 6], steps=4)
    again = generate(pipe, [prompt] * 2, [5, 6], steps=4)
    b = generate(pipe, [prompt], [5], steps=4)
    assert a[0].size == (32, 32)
    # Same batch, same seeds: the same bytes.
    for x, y in zip(a, again, strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    # Another batch size changes the summation order of CPU kernels (pipeline/generate.py's
    # docstring): at most one 8-bit level on a few pixels, never another image.
    diff = np.abs(np.asarray(a[0], np.int16) - np.asarray(b[0], np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())
    assert not np.array_equal(np.asarray(a[0]), np.asarray(a[1]))


def test_probe_on_heldout_reconstructions(pipe):
    """≥ 95 % per attribute on held-out world images passed through the shipped VAE."""
    from tools.toy.train_probe import accuracy

    images, scenes = render_pool(world.sample_any_scene, 777, 300)
    with torch.no_grad():
        z = pipe.vae.encode(to_unit(images)).latent_dist.mode()
        recon = pipe.vae.decode(z).sample.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    acc = accuracy(Probe.load(), recon, scenes)
    for attr in world.ATTRIBUTES:
        assert acc[attr] >= 0.95, (attr, acc)


def test_toy_encoders_through_the_registry():
    from t2ibench.encoders import create_encoder, list_encoders

    assert {"toy-clip", "toy-dino", "toy-gram"} <= set(list_encoders())
    scenes = [
        world.Scene(s, c, "white", "flat") for s in ("circle", "star") for c in ("red", "blue")
    ]
    images = [world.render(s) for s in scenes]
    clip = create_encoder("toy-clip")
    assert clip.kind == "image-text" and clip.weights_id.startswith("sha256:")
    img = clip.encode_images(images)
    txt = clip.encode_texts([world.describe(s) for s in scenes])
    assert img.shape == (4, 128) and torch.allclose(img.norm(dim=1), torch.ones(4), atol=1e-4)
    sim = img @ txt.T
    assert (sim.argmax(1) == torch.arange(4)).all(), sim  # each image picks its own caption
    dino = create_encoder("toy-dino")
    f = torch.nn.functional.normalize(dino.encode_images(images), dim=-1)
    # a re-drawn red circle is closer to the red circle than the blue star is
    again = world.render(world.regeometry(scenes[0], world.rng_for(1, "t")))
    g = torch.nn.functional.normalize(dino.encode_images([again]), dim=-1)[0]
    assert g @ f[0] > g @ f[3]
    grams = create_encoder("toy-gram").encode_images(images)
    assert [tuple(t.shape) for t in grams] == [(4, 32, 32), (4, 64, 64), (4, 128, 128)]


def test_base_follows_base_prompts_by_the_probe(pipe):
    """A 12-prompt slice of the 192-prompt measurement (full run: tools/toy/evaluate.py)."""
    from tools.toy.evaluate import base_prompt_set, follow_rates, generate

    chosen = base_prompt_set()[::16]
    images = generate(
        pipe, [p for p, _ in chosen], [1000 + 16 * k for k in range(len(chosen))], guidance=7.0
    )
    rates = follow_rates(Probe.load().predict(images), [w for _, w in chosen])
    assert rates["all"] >= 0.75, rates
