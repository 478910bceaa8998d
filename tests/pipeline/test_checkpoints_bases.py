"""``evaluate-checkpoints`` tells the base family of each file from its keys (kohya SDXL, kohya /
diffusers FLUX, SD1.5) and refuses a folder made for another base in one line naming both. The
files are written here from the key names the tools document (no download):

* kohya sd-scripts SDXL (``sdxl_train_network.py``): the UNet on SGM module names
  (``lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q``,
  ``lora_unet_output_blocks_0_1_...``) and ``lora_te1_`` / ``lora_te2_`` for CLIP-L / bigG;
* diffusers / ai-toolkit FLUX: ``transformer.single_transformer_blocks.N.attn.to_q.lora_A.weight``;
* kohya sd-scripts FLUX (``flux_train_network.py``): BFL names,
  ``lora_unet_double_blocks_N_img_attn_qkv``, ``lora_unet_single_blocks_N_linear1``;
* kohya sd-scripts SD3 (``sd3_train_network.py``): SAI names, ``lora_unet_joint_blocks_N_x_block_attn_qkv``;
* ai-toolkit FLUX.2: BFL's dotted names, ``diffusion_model.double_blocks.N.img_attn.qkv.lora_A.weight``,
  the position in ``training_info``.

Two of them run end to end through the CLI (``--base sd3`` / ``--base flux2-klein`` with
``--base-path``) on the tiny folders of ``tests/bases``: two epochs found, ordered and scored.
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


# --- end to end on the tiny MMDiT bases ---------------------------------------------------------

_TINY_RUN = ["--profile", "tiny", "--no-progress", "--set", "generate.images_per_leaf=1",
             "--set", "generate.steps=1", "--set", "generate.resolution=64",
             "--set", 'generate.prompt_types=["train"]', "--set", 'evaluate.encoders=["dinov2-l@tiny"]']  # fmt: skip


def _kohya_sd3(path: Path, epoch: int) -> None:
    """sd-scripts' SD3 LoRA on the tiny SD3 (width 16): fused qkv, context stream, final layer."""
    gen = torch.Generator().manual_seed(epoch)
    tensors = {}
    for stem, rows in (
        ("lora_unet_joint_blocks_0_x_block_attn_qkv", 48),
        ("lora_unet_joint_blocks_0_context_block_attn_qkv", 48),
        ("lora_unet_final_layer_adaLN_modulation_1", 32),
    ):
        tensors[f"{stem}.lora_down.weight"] = torch.randn(R, 16, generator=gen) * 0.3
        tensors[f"{stem}.lora_up.weight"] = torch.randn(rows, R, generator=gen) * 0.3
        tensors[f"{stem}.alpha"] = torch.tensor(float(R))
    meta = {"ss_epoch": str(epoch), "ss_network_module": "networks.lora_sd3"}
    save_file(tensors, str(path), meta)


def _ai_toolkit_flux2(path: Path, epoch: int, lin1: int) -> None:
    """ai-toolkit's FLUX.2 LoRA on the tiny klein (width 16): BFL's dotted names."""
    gen = torch.Generator().manual_seed(epoch)
    tensors = {}
    for module, rows in (
        ("double_blocks.0.img_attn.qkv", 48),
        ("single_blocks.0.linear1", lin1),
        ("final_layer.adaLN_modulation.1", 32),
    ):
        stem = f"diffusion_model.{module}"
        tensors[f"{stem}.lora_A.weight"] = torch.randn(R, 16, generator=gen) * 0.3
        tensors[f"{stem}.lora_B.weight"] = torch.randn(rows, R, generator=gen) * 0.3
    info = json.dumps({"epoch": epoch, "step": 10 * epoch})
    save_file(tensors, str(path), {"training_info": info})


def _run_cli(folder: Path, base: str, base_path: Path, dataset: Path, out: Path) -> Path:
    from typer.testing import CliRunner

    from t2ibench.cli import app

    args = ["evaluate-checkpoints", str(folder), "--base", base, "--base-path", str(base_path),
            "--dataset", str(dataset), "--out", str(out), *_TINY_RUN]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
    (run_dir,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    return run_dir


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from t2ibench.data import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "demo")


@pytest.fixture(scope="module")
def sd3_run(tmp_path_factory, demo) -> tuple[Path, Path]:
    from tests.bases.bases_testutil import make_tiny_sd3

    base = make_tiny_sd3(tmp_path_factory.mktemp("sd3") / "tiny-sd3")
    folder = tmp_path_factory.mktemp("kohya-sd3")
    for epoch in (2, 1):  # written out of order: the metadata orders them
        _kohya_sd3(folder / f"mysd3-{epoch:06d}.safetensors", epoch)
    return folder, _run_cli(folder, "sd3", base, demo, tmp_path_factory.mktemp("out-sd3"))


@pytest.fixture(scope="module")
def klein_run(tmp_path_factory, demo) -> tuple[Path, Path]:
    from diffusers import Flux2Transformer2DModel

    from tests.bases.bases_testutil import make_tiny_flux2_klein

    base = make_tiny_flux2_klein(tmp_path_factory.mktemp("klein") / "tiny-klein")
    cfg = Flux2Transformer2DModel.load_config(base / "transformer")
    inner = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    lin1 = 3 * inner + 2 * int(inner * cfg["mlp_ratio"])  # q, k, v and the gated MLP's two halves
    folder = tmp_path_factory.mktemp("ai-toolkit-flux2")
    for epoch in (1, 2):  # ai-toolkit names files by step
        _ai_toolkit_flux2(folder / f"myklein_{10 * epoch:09d}.safetensors", epoch, lin1)
    return folder, _run_cli(folder, "flux2-klein", base, demo, tmp_path_factory.mktemp("out-k"))


@pytest.mark.parametrize(
    ("run", "base", "names", "fmt"),
    [
        ("sd3_run", "sd3", ["mysd3-000001", "mysd3-000002"], "kohya"),
        ("klein_run", "flux2-klein", ["myklein_000000010", "myklein_000000020"], "bfl"),
    ],
)
def test_mmdit_folder_end_to_end(run, base, names, fmt, request):
    """Both epochs found as this base's files, in training order, generated on the base's
    pipeline and scored beside the base model (paired seeds: each differs from the base)."""
    from t2ibench.pipeline.checkpoints import find_checkpoints
    from t2ibench.results import read_results

    folder, run_dir = request.getfixturevalue(run)
    found = find_checkpoints(folder)
    assert [f.name for f in found] == names and [f.epoch for f in found] == [1, 2]
    assert all(base in f.bases and f.source_format == fmt for f in found)
    df = read_results(run_dir / "results")
    per = df.drop_duplicates("checkpoint").set_index("checkpoint")
    assert sorted(per.index) == sorted(["base", *names])
    assert [int(per.loc[n, "epoch"]) for n in names] == [1, 2]
    assert df.loc[df.checkpoint != "base", "value"].notna().any()
    record = json.loads((run_dir / "run.json").read_text())
    assert [c["name"] for c in record["checkpoints"]] == names
    base_dir = Path(record["base_images"])
    for name in names:
        first = sorted((run_dir / "images" / name).rglob("*.png"))[0]
        assert (
            first.read_bytes()
            != (base_dir / first.relative_to(run_dir / "images" / name)).read_bytes()
        )
    assert (run_dir / "report" / "summary.md").is_file()


def test_comfyui_text_encoder_keys_are_one_line(tmp_path, monkeypatch, capsys):
    """ComfyUI's CLIP-L keys (``text_encoders.clip_l.transformer.…``) are not read: the file is
    refused in one line naming that key, before anything is made."""
    from t2ibench.cli import main

    tensors = {
        **_lora("diffusion_model.double_blocks.0.img_attn.qkv", out_dim=48),
        **_lora("text_encoders.clip_l.transformer.text_model.encoder.layers.0.self_attn.q_proj"),
    }
    save_file(tensors, str(tmp_path / "comfy-000001.safetensors"))
    argv = ["t2ibench", "evaluate-checkpoints", str(tmp_path), "--dry-run"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        main()
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert exc.value.code == 2 and len(err) == 1, err
    assert "comfy-000001.safetensors: key 'text_encoders.clip_l.transformer." in err[0]
    assert "in no known layout" in err[0]
