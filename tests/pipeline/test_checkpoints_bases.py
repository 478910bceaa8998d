"""``evaluate-checkpoints`` tells the base family of each file from its keys (kohya SDXL, kohya /
diffusers FLUX, SD1.5) and refuses a folder made for another base in one line naming both. The
files are written here from the key names the tools document (no download):

* kohya sd-scripts SDXL (``sdxl_train_network.py``): the UNet on SGM module names
  (``lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q``,
  ``lora_unet_output_blocks_0_1_...``) and ``lora_te1_`` / ``lora_te2_`` for CLIP-L / bigG;
* diffusers / ai-toolkit FLUX: ``transformer.single_transformer_blocks.N.attn.to_q.lora_A.weight``;
* kohya sd-scripts FLUX (``flux_train_network.py``): BFL names,
  ``lora_unet_double_blocks_N_img_attn_qkv``, ``lora_unet_single_blocks_N_linear1``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

R = 4


def _lora(stem: str, out_dim: int = 16, in_dim: int = 16, peft: bool = False) -> dict:
    down, up = torch.randn(R, in_dim), torch.zeros(out_dim, R)
    if peft:
        return {f"{stem}.lora_A.weight": down, f"{stem}.lora_B.weight": up}
    return {
        f"{stem}.lora_down.weight": down,
        f"{stem}.lora_up.weight": up,
        f"{stem}.alpha": torch.tensor(float(R)),
    }


def _kohya_sdxl(path: Path, epoch: int) -> None:
    tensors = {}
    for stem in (
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q",
        "lora_unet_output_blocks_0_1_transformer_blocks_1_attn2_to_k",
        "lora_te1_text_model_encoder_layers_0_self_attn_q_proj",
        "lora_te2_text_model_encoder_layers_0_self_attn_q_proj",
    ):
        tensors.update(_lora(stem))
    save_file(tensors, str(path), {"ss_epoch": str(epoch), "ss_network_module": "networks.lora"})


@pytest.fixture(scope="module")
def sdxl_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("kohya-sdxl")
    for epoch in (1, 2):
        _kohya_sdxl(folder / f"mysdxl-{epoch:06d}.safetensors", epoch)
    return folder


@pytest.fixture(scope="module")
def sd15_base(tmp_path_factory) -> Path:
    """An SD1.5 base as the loaders see its architecture: a diffusers folder's model_index."""
    folder = tmp_path_factory.mktemp("sd15-base")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return folder


def test_kohya_sdxl_files_are_found_as_sdxl(sdxl_folder):
    from t2ibench.pipeline.checkpoints import find_checkpoints

    found = find_checkpoints(sdxl_folder)
    assert [f.epoch for f in found] == [1, 2]
    assert all(f.bases == ("sdxl",) and f.source_format == "kohya" for f in found)


@pytest.mark.parametrize(
    "tensors",
    [
        {
            **_lora("transformer.single_transformer_blocks.0.attn.to_q", peft=True),
            **_lora("transformer.transformer_blocks.0.attn.add_q_proj", peft=True),
        },
        {
            **_lora("lora_unet_double_blocks_0_img_attn_qkv", out_dim=48),
            **_lora("lora_unet_single_blocks_0_linear1", out_dim=80),
        },
    ],
    ids=["diffusers", "kohya"],
)
def test_flux_files_are_found_as_flux(tensors, tmp_path):
    from t2ibench.pipeline.checkpoints import find_checkpoints

    save_file(tensors, str(tmp_path / "myflux-000003.safetensors"), {"ss_epoch": "3"})
    (found,) = find_checkpoints(tmp_path)
    assert "flux" in found.bases and "sdxl" not in found.bases and "sd15" not in found.bases


def test_sd15_file_is_found_as_sd15(tmp_path):
    from t2ibench.pipeline.checkpoints import find_checkpoints

    stem = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    save_file(_lora(stem), str(tmp_path / "a-000001.safetensors"), {"ss_epoch": "1"})
    (found,) = find_checkpoints(tmp_path)
    assert found.bases == ("sd15",)


def test_sdxl_folder_against_sd15_base_is_one_line(sdxl_folder, sd15_base, monkeypatch, capsys):
    from t2ibench.cli import main

    argv = ["t2ibench", "evaluate-checkpoints", str(sdxl_folder), "--profile", "tiny",
            "--base-path", str(sd15_base), "--out", str(sd15_base.parent / "out")]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        main()
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert exc.value.code == 2 and len(err) == 1, err
    assert "mysdxl-000001.safetensors: an adapter for SDXL (sdxl) (key" in err[0]
    assert "the base is SD1.5 (sd15:" in err[0]
    assert not (sd15_base.parent / "out").exists()  # refused before anything was made


def test_dry_run_shows_the_base_column(sdxl_folder, monkeypatch, capsys):
    from t2ibench.cli import main

    monkeypatch.setattr(
        sys, "argv", ["t2ibench", "evaluate-checkpoints", str(sdxl_folder), "--dry-run"]
    )
    with pytest.raises(SystemExit) as exc:
        main()
    assert not exc.value.code
    out = capsys.readouterr().out
    assert "base" in out and out.count("│ sdxl ") == 2  # the base column of both files
