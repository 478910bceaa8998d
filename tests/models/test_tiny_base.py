"""The tiny base: deterministic, cached, SD1.5-shaped, and reloadable through load_base."""

from __future__ import annotations

import json

import pytest
import torch

from t2ibench.errors import ConfigError
from t2ibench.models import base_fingerprint, load_base, make_tiny_base
from t2ibench.models.tiny import MARKER, _folder_digest


def _files(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_same_seed_gives_identical_files(tmp_path, tiny_folder):
    other = make_tiny_base(tmp_path / "again", seed=0)
    assert _files(other) == _files(tiny_folder)
    different = make_tiny_base(tmp_path / "seed1", seed=1)
    a = (tiny_folder / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    b = (different / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert a != b


def test_cached_folder_is_reused_and_damage_rebuilds(tmp_path):
    folder = make_tiny_base(tmp_path / "tb")
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert make_tiny_base(tmp_path / "tb") == folder
    assert weights.stat().st_mtime_ns == mtime  # reused, not rewritten
    weights.write_bytes(b"broken")  # a damaged cache fails the hash check and is rebuilt
    make_tiny_base(tmp_path / "tb")
    assert json.loads((folder / MARKER).read_text())["sha256"] == _folder_digest(folder)
    assert weights.read_bytes() != b"broken"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a t2ibench tiny base"):
        make_tiny_base(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_structure_matches_sd15_module_names(tiny_folder):
    pipe = load_base(tiny_folder)
    unet = dict(pipe.unet.named_modules())
    for name in [
        "conv_in",
        "conv_out",
        "time_embedding.linear_1",
        "time_embedding.linear_2",
        "down_blocks.0.attentions.0.proj_in",
        "down_blocks.0.attentions.0.proj_out",
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k",
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v",
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0",
        "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj",
        "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2",
        "down_blocks.0.resnets.0.conv1",
        "down_blocks.0.resnets.0.conv2",
        "down_blocks.0.resnets.0.time_emb_proj",
        "down_blocks.1.resnets.0.conv_shortcut",
        "down_blocks.0.downsamplers.0.conv",
        "up_blocks.0.upsamplers.0.conv",
        "mid_block.attentions.0.transformer_blocks.0.attn2.to_q",
    ]:
        assert name in unet, name
    assert type(unet["down_blocks.0.attentions.0"]).__name__ == "Transformer2DModel"
    assert type(unet["down_blocks.0.attentions.0.proj_in"]).__name__ == "Conv2d"  # SD1.5: 1×1 conv
    assert pipe.vae_scale_factor == 8
    assert pipe.text_encoder.config.vocab_size == 49408
    assert pipe.tokenizer.model_max_length == 77
    assert pipe.safety_checker is None
    sched = pipe.scheduler.config
    assert (sched.beta_start, sched.beta_end, sched.beta_schedule) == (
        0.00085,
        0.012,
        "scaled_linear",
    )
    assert sched.num_train_timesteps == 1000
    n_params = sum(p.numel() for p in pipe.unet.parameters())
    assert n_params < 5_000_000
    procs = {type(p).__name__ for p in pipe.unet.attn_processors.values()}
    assert procs == {"AttnProcessor"}


def test_reload_gives_identical_images(tiny_folder):
    def run(pipe):
        g = torch.Generator("cpu").manual_seed(1234)
        return pipe(
            "a photo of a stuffed toy",
            num_inference_steps=2,
            height=64,
            width=64,
            generator=g,
            output_type="np",
        ).images

    first = load_base(tiny_folder)
    second = load_base("tiny")  # the cache spec resolves to the same folder
    out1, out2 = run(first), run(second)
    assert out1.shape == (1, 64, 64, 3)
    assert (out1 == out2).all()


def test_fingerprint(tiny_folder, tmp_path):
    fp = base_fingerprint("tiny")
    assert fp["id"] == "tiny" and len(fp["sha256"]) == 64
    assert base_fingerprint(tiny_folder)["sha256"] == fp["sha256"]
    other = base_fingerprint(make_tiny_base(tmp_path / "s1", seed=1))
    assert other["sha256"] != fp["sha256"]
