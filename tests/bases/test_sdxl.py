"""The ``sdxl`` base plug-in on a tiny random SDXL-class diffusers folder saved here: loaded
through the plug-in, one LoRA epoch (UNet + both text encoders, kohya ``lora_te1_`` /
``lora_te2_`` keys), the file re-applied, images generated, and ``t2ibench run --base sdxl
--base-path DIR`` end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.bases.bases_testutil import make_tiny_sdxl


@pytest.fixture(scope="module")
def sdxl_folder(tmp_path_factory) -> Path:
    return make_tiny_sdxl(tmp_path_factory.mktemp("sdxl") / "tiny-sdxl")


@pytest.fixture(scope="module")
def sdxl_pipe(sdxl_folder):
    from t2ibench.models import load_base

    return load_base(sdxl_folder)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from t2ibench.data import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "demo")


@pytest.fixture(scope="module")
def trained(sdxl_folder, sdxl_pipe, demo, tmp_path_factory):
    from t2ibench.adapters import load_trainer_config, train_run

    cfg = load_trainer_config("lora").replace(
        resolution=64, min_bucket_reso=64, max_bucket_reso=64, batch_size=4, warmup_steps=0,
        preset="attn-only", lr=1e-2,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("sdxl-train")
    return train_run(
        "lora", demo, str(sdxl_folder), out, cfg, epochs=1, progress=False, pipe=sdxl_pipe
    )


def test_loads_through_the_sdxl_plugin(sdxl_folder, sdxl_pipe):
    from t2ibench.architectures import architecture_of_folder, architecture_of_pipe

    assert type(sdxl_pipe).__name__ == "StableDiffusionXLPipeline"
    assert architecture_of_folder(sdxl_folder).name == "sdxl"
    assert architecture_of_pipe(sdxl_pipe).name == "sdxl"


def test_named_architecture_must_match_the_files(sdxl_folder):
    from t2ibench.architectures import BaseMismatchError
    from t2ibench.models.loading import base_architecture, resolve_spec

    with pytest.raises(BaseMismatchError) as err:
        base_architecture(*resolve_spec(sdxl_folder), expected="sd15")
    msg = str(err.value)
    assert "\n" not in msg and "SD1.5" in msg and "SDXL" in msg


def test_lora_trains_unet_and_both_text_encoders(trained):
    from safetensors import safe_open

    (ckpt,) = trained.checkpoints
    with safe_open(str(ckpt), framework="pt") as f:
        keys = list(f.keys())
    prefixes = {k.split("_")[0] + "_" + k.split("_")[1] for k in keys}
    assert prefixes == {"lora_unet", "lora_te1", "lora_te2"}
    # kohya's SDXL text-encoder keys keep transformers-4's ``text_model_`` level
    assert all(
        k.startswith(("lora_unet_", "lora_te1_text_model_", "lora_te2_text_model_")) for k in keys
    )
    assert all(np.isfinite(trained.losses)) and len(trained.losses) >= 1


def test_saved_file_applies_and_generates(trained, sdxl_pipe):
    from t2ibench.adapters import apply_adapter
    from t2ibench.pipeline.generate import GenerationSettings, generate_batch
    from t2ibench.prompts import GenerationJob

    job = GenerationJob(leaf="x", prompt_type="t", prompt="a photo of sks dog", seed=3, index=0)
    settings = GenerationSettings(steps=2, height=64, width=64, scheduler="euler")
    base = np.asarray(generate_batch(sdxl_pipe, [job], settings)[0], dtype=np.int16)
    with apply_adapter(sdxl_pipe, trained.checkpoints[-1]):
        tuned = np.asarray(generate_batch(sdxl_pipe, [job], settings)[0], dtype=np.int16)
    again = np.asarray(generate_batch(sdxl_pipe, [job], settings)[0], dtype=np.int16)
    assert base.shape == (64, 64, 3)
    assert np.abs(tuned - base).max() > 0  # the adapter reaches the image
    assert np.array_equal(again, base)  # and comes off exactly


def test_sd15_adapter_is_refused_on_sdxl_in_one_line(sdxl_pipe, tmp_path):
    from safetensors.torch import save_file

    from t2ibench.adapters import apply_adapter
    from t2ibench.architectures import BaseMismatchError

    stem = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    path = tmp_path / "sd15-lora.safetensors"
    save_file(
        {
            f"{stem}.lora_down.weight": torch.zeros(4, 320),
            f"{stem}.lora_up.weight": torch.zeros(320, 4),
            f"{stem}.alpha": torch.tensor(4.0),
        },
        str(path),
    )
    with pytest.raises(BaseMismatchError) as err:
        apply_adapter(sdxl_pipe, path)
    msg = str(err.value)
    assert "\n" not in msg and "SD1.5 (sd15" in msg and "base is SDXL (sdxl)" in msg


def test_run_base_sdxl_end_to_end(sdxl_folder, demo, tmp_path):
    from typer.testing import CliRunner

    from t2ibench.cli import app
    from t2ibench.results import read_results

    out = tmp_path / "results"
    args = ["run", "--base", "sdxl", "--base-path", str(sdxl_folder), "--dataset", str(demo),
            "--profile", "tiny", "--trainer", "lora", "--no-progress", "--epochs", "1",
            "--save-epochs", "1", "--images-per-leaf", "1", "--steps", "2",
            "--prompt-types", "trigger", "--encoders", "dinov2-l@tiny",
            "--set", "generate.resolution=64", "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
    (run_dir,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    df = read_results(run_dir / "results")
    assert set(df["checkpoint"]) == {"base", "lora-e000001"}
    assert df.loc[df["checkpoint"] == "lora-e000001", "value"].notna().any()
    import json

    run = json.loads((run_dir / "run.json").read_text())
    assert run["config"]["generate"]["scheduler"] == "euler"  # the sdxl base's sampler


def test_base_architecture_without_path_is_one_line(demo, tmp_path):
    from typer.testing import CliRunner

    from t2ibench.cli import app

    res = CliRunner().invoke(
        app, ["run", "--base", "sdxl", "--dataset", str(demo), "--profile", "tiny",
              "--out", str(tmp_path)],
    )  # fmt: skip
    from t2ibench.errors import ConfigError

    assert isinstance(res.exception, ConfigError) and "\n" not in str(res.exception)
    assert str(res.exception).startswith("--base sdxl: names a base architecture; pass its files")


def test_kohya_sgm_named_file_applies_like_diffusers_names(sdxl_pipe, tmp_path):
    """sd-scripts' SDXL LoRAs name the UNet the SGM way; the sdxl plug-in maps them onto
    diffusers' modules (tiny UNet: 1 layer per level, so input block 3 is level 1's pair)."""
    from safetensors.torch import save_file

    from t2ibench.adapters import apply_adapter
    from t2ibench.adapters.network import layer_index

    pairs = {  # SGM path -> diffusers path on the tiny UNet (layers_per_block = 1)
        "input_blocks_3_1_transformer_blocks_1_attn1_to_q": "down_blocks_1_attentions_0_transformer_blocks_1_attn1_to_q",
        "output_blocks_1_1_proj_out": "up_blocks_0_attentions_1_proj_out",
        "middle_block_1_transformer_blocks_0_attn2_to_k": "mid_block_attentions_0_transformer_blocks_0_attn2_to_k",
        "input_blocks_1_0_in_layers_2": "down_blocks_0_resnets_0_conv1",
        "output_blocks_1_2_conv": "up_blocks_0_upsamplers_0_conv",
    }  # fmt: skip
    layers = layer_index({"unet": sdxl_pipe.unet})
    sgm, diffusers = {}, {}
    gen = torch.Generator().manual_seed(0)
    for old, new in pairs.items():
        layer = layers[f"lora_unet_{new}"]
        conv = isinstance(layer, torch.nn.Conv2d)
        shape_in = (2, layer.in_channels, *layer.kernel_size) if conv else (2, layer.in_features)
        shape_out = (layer.out_channels, 2, 1, 1) if conv else (layer.out_features, 2)
        t = {
            "lora_down.weight": torch.randn(shape_in, generator=gen),
            "lora_up.weight": torch.randn(shape_out, generator=gen),
            "alpha": torch.tensor(2.0),
        }
        sgm.update({f"lora_unet_{old}.{k}": v for k, v in t.items()})
        diffusers.update({f"lora_unet_{new}.{k}": v for k, v in t.items()})
    save_file(sgm, str(tmp_path / "sgm.safetensors"))
    save_file(diffusers, str(tmp_path / "diffusers.safetensors"))
    x = torch.randn(1, 4, 8, 8)
    outs = []
    for name in ("sgm", "diffusers"):
        with apply_adapter(sdxl_pipe, tmp_path / f"{name}.safetensors") as h, torch.no_grad():
            assert len(h.network) == len(pairs)
            ehs = torch.randn(1, 77, 64, generator=gen.manual_seed(1))
            added = {"text_embeds": torch.zeros(1, 32), "time_ids": torch.zeros(1, 6)}
            outs.append(sdxl_pipe.unet(x, 10, ehs, added_cond_kwargs=added).sample)
    assert torch.allclose(outs[0], outs[1], atol=1e-6)
