"""``t2ibench size --base B --trainer M`` for every method family on SD1.5, SDXL and FLUX.1, and
LoRA / PEFT OFT on SD3.5 Large and FLUX.2 [klein] 4B (published architectures on the meta device),
and the size columns of a checkpoint's results."""

from __future__ import annotations

import json

import pytest
import torch

from t2ibench.adapters import adapter_size
from t2ibench.adapters.sizes import checkpoint_columns


def test_sd15_lora_table_unchanged_and_families_agree() -> None:
    lora = adapter_size("lora", preset="attn-mlp")
    assert lora["params"] == 4_718_856  # PROTOCOL Table 5
    # the same LoRA through lycoris-lora's module saves the same tensors
    assert adapter_size("lycoris-lora", preset="attn-mlp") == lora
    # PEFT saves no alpha: one scalar fewer per module, and the same rank tensors
    peft = adapter_size("peft-lora", preset="attn-mlp")
    assert peft["params"] == lora["params"] - lora["modules"]
    # DoRA adds one magnitude per output channel to LoRA's
    dora = adapter_size("dora", preset="attn-mlp")
    assert dora["modules"] == lora["modules"] and dora["params"] > lora["params"]


@pytest.mark.parametrize("base", ["sdxl", "flux"])
@pytest.mark.parametrize(
    "trainer",
    # DoRA builds a layer on a CPU stand-in (lycoris copies the weight): one per layer geometry
    ["lora", pytest.param("dora", marks=pytest.mark.slow), "lycoris-oft", "peft-lora", "peft-oft"],
)
def test_other_bases(base: str, trainer: str) -> None:
    small = adapter_size(trainer, preset="attn-only", base=base)
    big = adapter_size(trainer, preset="attn-mlp", base=base)
    assert 0 < small["params"] < big["params"] and small["modules"] < big["modules"]
    assert big["bytes"] > 2 * big["params"]  # fp16 data plus the header


@pytest.mark.parametrize("base", ["sdxl", "flux"])  # the SD1.5-rule and the base-preset paths
def test_one_module_per_layer_geometry_gives_each_layers_own_shapes(base: str) -> None:
    """Sizes build one module per layer geometry and reuse its shapes: the same table as a
    module built on every layer (LoKr's factorisation and OFT's blocks follow each shape)."""
    from t2ibench.adapters.sizes import _base_shapes

    for trainer in ("lycoris-lokr", "peft-oft"):
        values = {"preset": "attn-mlp"}
        memo = _base_shapes(base, trainer, values)
        assert memo and memo == _base_shapes(base, trainer, values, memo=False), trainer


def test_sdxl_keys_name_both_text_encoders_and_flux_counts_the_transformer() -> None:
    from t2ibench.adapters.sizes import _base_shapes

    keys = _base_shapes("sdxl", "lora", {"preset": "attn-only"})
    assert {k.split("_")[1] for k in keys} == {"unet", "te1", "te2"}
    # FLUX.1-dev attention: 19 double blocks × 8 projections + 38 single blocks × 3
    flux = adapter_size("lora", preset="attn-only", base="flux")
    assert flux["modules"] == 19 * 8 + 38 * 3


def test_sd3_and_flux2_klein_sizes_are_their_presets_layers_and_deterministic() -> None:
    from t2ibench.adapters import sizes

    # SD3.5 Large attention: 38 joint blocks × 8 projections, less the last block's to_add_out
    # (context-pre-only); + CLIP-L (12 layers) and bigG (32 layers) × 4 attention projections
    keys = sizes._base_shapes("sd3", "lora", {"preset": "attn-only"})
    stems = {k.split(".")[0] for k in keys}
    counts = {p: sum(s.split("_")[1] == p for s in stems) for p in ("unet", "te1", "te2")}
    assert counts == {"unet": 38 * 8 - 1, "te1": 12 * 4, "te2": 32 * 4}
    # FLUX.2 [klein] 4B attention: 5 double blocks × 8 projections + 20 fused single blocks
    klein = adapter_size("lora", preset="attn-only", base="flux2-klein")
    assert klein["modules"] == 5 * 8 + 20 and klein["params"] > 0
    sizes._flux2_meta.cache_clear()  # rebuilt from the config: the same table
    assert adapter_size("lora", preset="attn-only", base="flux2-klein") == klein
    assert klein["bytes"] > 2 * klein["params"]  # fp16 data plus the header
    oft = adapter_size("peft-oft", preset="attn-only", base="flux2-klein")
    assert oft["modules"] == klein["modules"] and oft["params"] > 0


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    import sys

    from t2ibench.cli import main

    monkeypatch.setattr(sys, "argv", ["t2ibench", "size", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def test_cli_size_base(monkeypatch, capsys) -> None:
    code, out, err = _cli(monkeypatch, capsys, "--base", "flux", "-t", "peft-oft", "--json")
    assert code == 0, err
    data = json.loads(out.strip().splitlines()[-1])
    assert data["params"] == adapter_size("peft-oft", preset="attn-mlp", base="flux")["params"]
    code, out, err = _cli(monkeypatch, capsys, "--base", "flux2-klein", "-t", "lora")
    assert code == 0 and "100 modules" in out and "on flux2-klein" in out, err
    code, out, err = _cli(monkeypatch, capsys, "--base", "sd9", "-t", "lora")
    errors = [x for x in err.splitlines() if x.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "sd9" in errors[0], err


def test_checkpoint_columns(tmp_path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "a.safetensors"
    save_file({"x.lora_up.weight": torch.ones(4, 2), "x.alpha": torch.tensor(1.0)}, path)
    assert checkpoint_columns(path) == {"adapter_params": 9, "adapter_bytes": path.stat().st_size}
    assert checkpoint_columns(tmp_path) == {}
