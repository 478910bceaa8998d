"""The base-architecture registry: which family a folder, a single file or an adapter's keys are,
and the one-line refusals."""

from __future__ import annotations

import json

import pytest


def test_every_builtin_base_registers_itself():
    from t2ibench.architectures import list_architectures

    assert {"sd15", "sdxl", "sd3", "flux", "flux2-klein"} <= set(list_architectures())


def test_import_t2ibench_stays_light():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", "import sys, t2ibench.architectures as a; a.list_architectures();"
         "print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("cls", "name"),
    [
        ("StableDiffusionPipeline", "sd15"),
        ("StableDiffusionXLPipeline", "sdxl"),
        ("StableDiffusion3Pipeline", "sd3"),
        ("FluxPipeline", "flux"),
        ("Flux2KleinPipeline", "flux2-klein"),
    ],
)
def test_folder_architecture_from_model_index(tmp_path, cls, name):
    from t2ibench.architectures import architecture_of_folder

    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": cls}))
    assert architecture_of_folder(tmp_path).name == name


def test_unknown_pipeline_class_is_one_line(tmp_path):
    from t2ibench.architectures import architecture_of_folder
    from t2ibench.errors import ConfigError

    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyPipeline"}))
    with pytest.raises(ConfigError, match="'KandinskyPipeline' is no known base") as err:
        architecture_of_folder(tmp_path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias", "sdxl"),
        ("model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale", "flux"),
        ("model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias", "sd3"),
        ("model.diffusion_model.input_blocks.0.0.weight", "sd15"),  # SD1.x: the fallback
    ],
)
def test_single_file_architecture_from_keys(key, name):
    from t2ibench.architectures import architecture_of_keys

    assert architecture_of_keys([key, "first_stage_model.decoder.conv_in.weight"]).name == name


@pytest.mark.parametrize(
    ("keys", "families"),
    [
        # kohya sd-scripts SDXL: SGM UNet names + both encoders
        (["lora_unet_output_blocks_0_1_transformer_blocks_1_attn2_to_k.alpha",
          "lora_te1_text_model_encoder_layers_0_mlp_fc1.alpha",
          "lora_te2_text_model_encoder_layers_0_mlp_fc1.alpha"], {"sdxl"}),
        # text encoders only: SDXL and SD3 name them alike
        (["lora_te1_text_model_encoder_layers_0_mlp_fc1.alpha",
          "lora_te2_text_model_encoder_layers_0_mlp_fc1.alpha"], {"sdxl", "sd3"}),
        # t2ibench on SDXL: diffusers UNet paths, 2-deep transformer level
        (["lora_unet_down_blocks_1_attentions_0_transformer_blocks_1_attn1_to_q.alpha"], {"sdxl"}),
        # FLUX.1 diffusers paths (as read in), kohya BFL names (shared with FLUX.2)
        (["lora_unet_single_transformer_blocks_3_proj_mlp.alpha"], {"flux"}),
        (["lora_unet_double_blocks_0_img_attn_qkv.alpha"], {"flux", "flux2-klein"}),
        (["lora_unet_single_transformer_blocks_0_attn_to_qkv_mlp_proj.alpha"], {"flux2-klein"}),
        (["lora_unet_joint_blocks_0_x_block_attn_qkv.alpha"], {"sd3"}),
        (["lora_unet_down_blocks_0_attentions_0_proj_in.alpha"], {"sd15"}),
        (["lora_te_text_model_encoder_layers_0_mlp_fc1.alpha"], set()),  # tells nothing
    ],
)  # fmt: skip
def test_adapter_family_from_keys(keys, families):
    from t2ibench.architectures import adapter_architectures

    assert {a.name for a, _ in adapter_architectures(keys)} == families


def test_mismatch_names_both_in_one_line():
    from t2ibench.architectures import BaseMismatchError, check_adapter_fits, get_architecture

    keys = ["lora_unet_single_transformer_blocks_3_proj_mlp.alpha"]
    with pytest.raises(BaseMismatchError) as err:
        check_adapter_fits(keys, get_architecture("sdxl"), "my.safetensors")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("my.safetensors: an adapter for FLUX.1 (flux)")
    assert "the base is SDXL (sdxl)" in msg
    check_adapter_fits(keys, get_architecture("flux"), "my.safetensors")  # fits: no error
