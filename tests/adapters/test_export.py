"""Loading t2ibench adapters elsewhere (issue 13, item 12): the PEFT export gives the same outputs
through peft as t2ibench's own apply; the README's lycoris-lora recipe, run exactly as shown,
loads every module on transformers 5; diffusers' own LoRA loader reads plain LoRA files."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path

import pytest
import torch
from adapters_testutil import unet_te_outputs

from t2ibench.adapters import (
    AdapterFileError,
    apply_adapter,
    get_trainer,
    load_trainer_config,
)
from t2ibench.adapters.files import build_metadata, save_adapter
from t2ibench.testing import run_cli

README = Path(__file__).resolve().parents[2] / "docs" / "trainers.md"


def _random_adapter(pipe, trainer: str, path: Path, preset: str = "full", **over) -> Path:
    """An adapter with random (non-zero) tensors on every layer the preset selects, saved."""
    cfg = load_trainer_config(
        trainer, overrides=[f"preset={preset}"] + [f"{k}={v}" for k, v in over.items()]
    )
    torch.manual_seed(0)
    net = get_trainer(trainer).build_network({"unet": pipe.unet, "te": pipe.text_encoder}, cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.05)
    return save_adapter(net, path, build_metadata(cfg, {"id": "tiny", "sha256": "0" * 64}, epoch=3))


@pytest.mark.parametrize(
    ("trainer", "over"),
    [
        ("lora", {}),
        ("loha", {}),
        ("lokr", {"factor": 2}),  # the paper's LoKr (full blocks) at a factor the tiny sizes allow
        ("lokr", {"factor": 4, "preset": "attn-mlp"}),
        ("lokr", {"dim": 2, "factor": 2}),
        ("lokr", {"dim": 2, "factor": 2, "decompose_both": True}),
        ("loha", {"use_tucker": True}),
        ("lokr", {"dim": 2, "factor": 2, "use_tucker": True}),
    ],
)
def test_item12_peft_export_gives_the_same_outputs(
    tiny_pipe, tiny_base, tmp_path: Path, trainer: str, over: dict
) -> None:
    from peft import PeftModel

    from t2ibench.adapters.export import export_peft

    path = _random_adapter(tiny_pipe, trainer, tmp_path / f"{trainer}.safetensors", **over)
    base_unet, _ = unet_te_outputs(tiny_pipe)
    with apply_adapter(tiny_pipe, path):
        ours_unet, ours_te = unet_te_outputs(tiny_pipe)
    assert not torch.allclose(ours_unet, base_unet)

    folders = export_peft(tiny_base(), path, tmp_path / "peft")
    assert [f.name for f in folders] == ["unet", "text_encoder"]
    assert all((f / "adapter_config.json").is_file() for f in folders)
    assert all((f / "adapter_model.safetensors").is_file() for f in folders)

    # as a diffusers + peft user loads it
    pipe = tiny_base()
    pipe.unet = PeftModel.from_pretrained(pipe.unet, str(tmp_path / "peft" / "unet"))
    pipe.text_encoder = PeftModel.from_pretrained(
        pipe.text_encoder, str(tmp_path / "peft" / "text_encoder")
    )
    peft_unet, peft_te = unet_te_outputs(pipe)
    torch.testing.assert_close(peft_te, ours_te, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(peft_unet, ours_unet, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("trainer", "over"), [("native", {}), ("lora", {"use_tucker": True})])
def test_item12_peft_export_refuses_what_peft_cannot_hold(
    tiny_pipe, tiny_base, tmp_path: Path, trainer: str, over: dict
) -> None:
    from t2ibench.adapters.export import export_peft

    path = _random_adapter(tiny_pipe, trainer, tmp_path / "a.safetensors", **over)
    with pytest.raises(AdapterFileError, match="no peft|merge"):
        export_peft(tiny_base(), path, tmp_path / "peft")
    assert not (tmp_path / "peft" / "unet").exists()


def test_item12_peft_export_refuses_a_lokr_split_peft_would_change(
    tiny_pipe, tiny_base, tmp_path: Path
) -> None:
    """peft's LoKr factorization lacks LyCORIS's ``dimension >= factor²`` rule: on layers that
    small (not on SD1.5 with factor 8) the blocks differ and the export says so."""
    from t2ibench.adapters.export import export_peft

    path = _random_adapter(tiny_pipe, "lokr", tmp_path / "a.safetensors", factor=8)
    with pytest.raises(AdapterFileError, match=r"factor².*peft expects"):
        export_peft(tiny_base(), path, tmp_path / "peft")


def test_item12_export_cli(tiny_pipe, tmp_path: Path, adapters_cache: Path) -> None:
    path = _random_adapter(tiny_pipe, "loha", tmp_path / "loha.safetensors", preset="attn-only")
    env = {"T2IBENCH_CACHE": str(adapters_cache)}
    run = ["export", str(path), "--out", str(tmp_path / "x")]
    out = run_cli(*run, "--format", "peft", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [
        str(tmp_path / "x" / "unet"),
        str(tmp_path / "x" / "text_encoder"),
    ]
    out = run_cli(*run, "--format", "comfy", env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "known formats" in out.stderr


# -- the README's lycoris-lora recipe, exactly as shown ----------------------------------------
def _readme_lycoris_recipe(pipe, checkpoint):
    import torch.nn as nn
    from lycoris.kohya import LycorisNetworkKohya as K
    from lycoris.kohya import create_network_from_weights

    text_encoder = pipe.text_encoder
    if not hasattr(text_encoder, "text_model"):  # transformers >= 5: kohya keys need this level
        text_encoder = nn.Module()
        text_encoder.text_model = pipe.text_encoder
    # lycoris-lora 4.1.3 first builds a throwaway network with its default preset, which wraps a
    # diffusers UNet's time_embedding twice; a minimal one avoids that (the file says what loads)
    saved = K.UNET_TARGET_REPLACE_MODULE, K.UNET_TARGET_REPLACE_NAME
    K.UNET_TARGET_REPLACE_MODULE, K.UNET_TARGET_REPLACE_NAME = ["Transformer2DModel"], []
    try:
        network, _ = create_network_from_weights(1.0, checkpoint, None, text_encoder, pipe.unet)
    finally:
        K.UNET_TARGET_REPLACE_MODULE, K.UNET_TARGET_REPLACE_NAME = saved
    network.apply_to(text_encoder, pipe.unet, apply_text_encoder=True, apply_unet=True)
    return network


def test_item12_readme_lycoris_recipe_loads_every_module(
    tiny_pipe, tiny_base, tmp_path: Path
) -> None:
    """The README shows this code verbatim; run as shown it loads all 12 text-encoder modules
    (the recipe without the text_model view loads 0 on transformers 5) and matches apply."""

    body = inspect.getsource(_readme_lycoris_recipe).split("\n", 1)[1].rsplit("return", 1)[0]
    shown = textwrap.dedent(body).strip()
    assert shown in README.read_text(encoding="utf-8"), "README recipe differs from the tested one"

    path = _random_adapter(tiny_pipe, "lora", tmp_path / "lora.safetensors", preset="attn-mlp")
    with apply_adapter(tiny_pipe, path):
        ours_unet, ours_te = unet_te_outputs(tiny_pipe)
    stems = {k.split(".")[0] for k in load_file_keys(path)}
    te_stems = {s for s in stems if s.startswith("lora_te_")}
    assert len(te_stems) == 12  # 2 layers × (q, k, v, out, fc1, fc2) on the tiny text encoder

    pipe = tiny_base()
    network = _readme_lycoris_recipe(pipe, str(path))
    assert len(network.text_encoder_loras) == len(te_stems)
    assert len(network.unet_loras) + len(network.text_encoder_loras) == len(stems)
    theirs_unet, theirs_te = unet_te_outputs(pipe)
    torch.testing.assert_close(theirs_te, ours_te, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(theirs_unet, ours_unet, rtol=1e-4, atol=1e-4)


def load_file_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())


MATRIX = {  # README "Loading the files elsewhere": (trainer, options) -> (lycoris-lora, diffusers)
    "lora": (("lora", {}), (True, True)),
    "loha": (("loha", {}), (True, False)),
    "lokr": (("lokr", {"factor": 2}), (True, False)),
    "native": (("native", {}), (True, False)),
    "lora-tucker": (("lora", {"use_tucker": True}), (True, False)),
    "loha-tucker": (("loha", {"use_tucker": True}), (True, False)),
    "lokr-tucker": (("lokr", {"dim": 2, "factor": 2, "use_tucker": True}), (False, False)),
}


@pytest.mark.parametrize("row", sorted(MATRIX))
def test_item12_compatibility_matrix(tiny_pipe, tiny_base, tmp_path: Path, row: str) -> None:
    """Each lycoris-lora / diffusers cell of the README's matrix: loads with t2ibench's outputs, or
    fails (raises, or loads something else)."""

    (trainer, over), (lycoris_ok, diffusers_ok) = MATRIX[row]
    path = _random_adapter(tiny_pipe, trainer, tmp_path / f"{row}.safetensors", **over)
    with apply_adapter(tiny_pipe, path):
        ours = unet_te_outputs(tiny_pipe)

    def loads_same(load) -> bool:
        pipe = tiny_base()
        try:
            load(pipe)
        except Exception:  # any failure of the other library is a "no"
            return False
        theirs = unet_te_outputs(pipe)
        return all(
            torch.allclose(a, b, rtol=1e-4, atol=1e-4) for a, b in zip(ours, theirs, strict=True)
        )

    assert loads_same(lambda p: _readme_lycoris_recipe(p, str(path))) == lycoris_ok
    assert loads_same(lambda p: p.load_lora_weights(str(path))) == diffusers_ok


# -- peft-* checkpoints: PEFT's own config and tensors, written by PEFT's save_pretrained ------------
@pytest.mark.parametrize(
    ("trainer", "over"),
    [  # three PEFT tuner families: LoRA (with DoRA's magnitude), orthogonal, scaling
        ("peft-dora", {}),
        ("peft-oft", {"block_size": 4}),
        ("peft-ia3", {}),
        ("dora", {}),  # lycoris' DoRA (LoCon + weight decomposition) as PEFT's use_dora
    ],
)
def test_peft_trainer_checkpoint_exports_to_a_peft_folder(
    tiny_pipe, tiny_base, tmp_path: Path, trainer: str, over: dict
) -> None:
    """PeftModel.from_pretrained of the exported folders gives t2ibench's outputs with the
    checkpoint applied (1e-5), and t2ibench reads the folder back to the same outputs."""
    from peft import PeftModel

    from t2ibench.adapters.export import export_peft

    path = _random_adapter(
        tiny_pipe, trainer, tmp_path / "a.safetensors", preset="attn-only", **over
    )
    with apply_adapter(tiny_pipe, path):
        ours_unet, ours_te = unet_te_outputs(tiny_pipe)
    assert not torch.allclose(ours_unet, unet_te_outputs(tiny_pipe)[0])

    folders = export_peft(tiny_base(), path, tmp_path / "peft")
    assert [f.name for f in folders] == ["unet", "text_encoder"]
    with apply_adapter(tiny_pipe, tmp_path / "peft"):  # t2ibench reads the folders back
        back_unet, back_te = unet_te_outputs(tiny_pipe)
    torch.testing.assert_close(back_te, ours_te, rtol=0, atol=1e-5)
    torch.testing.assert_close(back_unet, ours_unet, rtol=0, atol=1e-5)

    pipe = tiny_pipe  # last: PEFT wraps its modules in place
    pipe.unet = PeftModel.from_pretrained(pipe.unet, str(folders[0]))
    pipe.text_encoder = PeftModel.from_pretrained(pipe.text_encoder, str(folders[1]))
    peft_unet, peft_te = unet_te_outputs(pipe)
    torch.testing.assert_close(peft_te, ours_te, rtol=0, atol=1e-5)
    torch.testing.assert_close(peft_unet, ours_unet, rtol=0, atol=1e-5)


def test_lycoris_algorithm_without_peft_twin_is_refused(tiny_pipe, tmp_path: Path) -> None:
    from t2ibench.adapters.export import export_peft

    path = _random_adapter(tiny_pipe, "lycoris-glora", tmp_path / "g.safetensors")
    with pytest.raises(AdapterFileError, match="glora has no PEFT adapter"):
        export_peft(tiny_pipe, path, tmp_path / "peft")  # refused before the pipe is touched


def test_peft_vera_checkpoint_export_is_refused(tiny_pipe, tmp_path: Path) -> None:
    from t2ibench.adapters.export import export_peft

    path = _random_adapter(tiny_pipe, "peft-vera", tmp_path / "v.safetensors", dim=4)
    with pytest.raises(AdapterFileError, match="shares one across the model"):
        export_peft(tiny_pipe, path, tmp_path / "peft")  # refused before the pipe is touched
    assert not (tmp_path / "peft" / "unet").exists()
