"""``t2ibench evaluate-checkpoints`` on DoRA and OFT checkpoints as their owners write them —
lycoris-lora's ``save_weights`` (DoRA ``dora_scale``, Diag-OFT ``oft_blocks``) and PEFT's
``save_pretrained`` folders (``use_dora``, OFT) — on the tiny base: found, ordered, applied,
generated and scored, where they used to be refused as unknown keys."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
from methods_testutil import lycoris_preset, perturb

QUICK = {
    "generate.images_per_leaf": 1,
    "generate.steps": 2,
    "generate.prompt_types": ["train"],
    "evaluate.encoders": ["dinov2-l@tiny", "clip-l14@tiny"],
}
NAMES = ["lyco-dora-000001", "lyco-oft-000002", "peft-dora-epoch3", "peft-oft-epoch4"]


@pytest.fixture(scope="module")
def pipe(tiny_base):
    return tiny_base()


def _lycoris_file(unet, algo: str, path: Path, **kw) -> None:
    from lycoris import LycorisNetwork

    preset = {"target_module": ["Transformer2DModel"], "target_name": [], "lora_prefix": "lycoris"}
    with lycoris_preset(preset):
        net = LycorisNetwork(unet, 1.0, lora_dim=4, alpha=2, network_module=algo, **kw)
    net.apply_to()
    perturb(net, std=0.2)
    net.save_weights(str(path), torch.float32, None)
    net.restore()


def _peft_folder(unet, config, path: Path) -> None:
    from peft import get_peft_model

    pm = get_peft_model(copy.deepcopy(unet), config)
    perturb(pm, std=0.2)
    pm.save_pretrained(str(path))


@pytest.fixture(scope="module")
def folder(pipe, tmp_path_factory) -> Path:
    from peft import LoraConfig, OFTConfig

    out = tmp_path_factory.mktemp("methods") / "my-dora-run"
    out.mkdir()
    _lycoris_file(pipe.unet, "lora", out / f"{NAMES[0]}.safetensors", weight_decompose=True)
    _lycoris_file(pipe.unet, "diag-oft", out / f"{NAMES[1]}.safetensors")
    targets = ["to_q", "to_v", "proj_in"]
    _peft_folder(pipe.unet, LoraConfig(r=4, lora_alpha=4, use_dora=True, target_modules=targets),
                 out / NAMES[2])  # fmt: skip
    _peft_folder(pipe.unet, OFTConfig(oft_block_size=4, target_modules=targets), out / NAMES[3])
    return out


def test_found_and_ordered(folder, monkeypatch, capsys):
    from t2ibench.cli import main
    from t2ibench.pipeline.checkpoints import find_checkpoints

    found = find_checkpoints(folder)
    assert [f.name for f in found] == NAMES
    assert [f.epoch for f in found] == [1, 2, 3, 4]
    assert [f.source_format for f in found] == ["lycoris", "lycoris", "peft", "peft"]
    assert all(f.modules > 0 for f in found)
    monkeypatch.setattr(sys, "argv", ["t2ibench", "evaluate-checkpoints", str(folder), "--dry-run"])
    with pytest.raises(SystemExit) as exc:
        main()
    captured = capsys.readouterr()
    assert int(exc.value.code or 0) == 0, captured.err
    assert all(n in captured.out for n in NAMES), captured.out


def test_generated_and_scored(folder, tmp_path):
    from t2ibench.pipeline.checkpoints import CheckpointsOptions, evaluate_checkpoints
    from t2ibench.results import read_results

    options = CheckpointsOptions(
        folder=str(folder),
        profile="tiny",
        out=str(tmp_path / "out"),
        progress=False,
        layers=[("test", QUICK)],
    )
    run_dir = evaluate_checkpoints(options)
    per = read_results(run_dir / "results").drop_duplicates("checkpoint").set_index("checkpoint")
    assert sorted(per.index) == sorted(["base", *NAMES])
    assert [int(per.loc[n, "epoch"]) for n in NAMES] == [1, 2, 3, 4]
    images = {n: sorted((run_dir / "images" / n).rglob("*.png")) for n in NAMES}
    assert all(images.values())
    firsts = {images[n][0].read_bytes() for n in NAMES}
    assert len(firsts) == len(NAMES)  # each adapter gives its own images
