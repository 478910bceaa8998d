"""Adapter files: kohya keys, fp16, metadata; lycoris-lora's loader reads them; apply / remove /
merge on a pipeline (merge applies the scale once); clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
from adapters_testutil import unet_te_outputs

from t2ibench.adapters import (
    AdapterFileError,
    apply_adapter,
    get_trainer,
    load_trainer_config,
    merge_adapter,
    read_adapter,
)
from t2ibench.adapters.files import build_metadata, save_adapter


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
    [("lora", {}), ("loha", {}), ("lokr", {}), ("lokr", {"dim": 2, "factor": 4}), ("native", {})],
)
def test_lycoris_loader_reads_our_files(
    tiny_pipe, tiny_base, tmp_path: Path, trainer: str, over: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lycoris.kohya.create_network_from_weights (what sd-scripts / A1111 extensions use) loads
    the file onto the same base and produces the same outputs as apply_adapter."""
    from lycoris.kohya import LycorisNetworkKohya, create_network_from_weights

    # lycoris-lora 4.1.3's loader first builds a network with its class-global default preset,
    # which wraps ``time_embedding.linear_1`` twice on a diffusers UNet (duplicate-name assert).
    # A minimal preset for that throwaway network avoids it; monkeypatch restores the class state.
    monkeypatch.setattr(LycorisNetworkKohya, "UNET_TARGET_REPLACE_MODULE", ["Transformer2DModel"])
    monkeypatch.setattr(LycorisNetworkKohya, "UNET_TARGET_REPLACE_NAME", [])

    path = _random_adapter(tiny_pipe, trainer, tmp_path / f"{trainer}.safetensors", **over)
    tensors, meta = read_adapter(path)
    assert all(v.dtype == torch.float16 for v in tensors.values())
    stems = {k.split(".")[0] for k in tensors}
    assert all(s.startswith(("lora_unet_", "lora_te_text_model_encoder_layers_")) for s in stems)

    handle = apply_adapter(tiny_pipe, path)
    ours_unet, ours_te = unet_te_outputs(tiny_pipe)
    handle.remove()

    ref = tiny_base()
    # Kohya keys use the transformers-4 path ``text_model.encoder...``; transformers 5 dropped that
    # level, so lycoris-lora sees the text encoder through a module that has it.
    te_view = nn.Module()
    te_view.text_model = ref.text_encoder
    network, _ = create_network_from_weights(1.0, str(path), None, te_view, ref.unet)
    assert len(network.unet_loras) + len(network.text_encoder_loras) == len(stems)
    network.apply_to(te_view, ref.unet, apply_text_encoder=True, apply_unet=True)
    ref_unet, ref_te = unet_te_outputs(ref)
    torch.testing.assert_close(ours_te, ref_te, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours_unet, ref_unet, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("trainer", ["lora", "loha", "lokr", "native"])
def test_apply_remove_merge(tiny_pipe, tiny_base, tmp_path: Path, trainer: str) -> None:
    path = _random_adapter(tiny_pipe, trainer, tmp_path / "a.safetensors", preset="full")
    base_unet, base_te = unet_te_outputs(tiny_pipe)
    before = {k: v.clone() for k, v in tiny_pipe.unet.state_dict().items()}

    for mult in (1.0, 0.6):
        handle = apply_adapter(tiny_pipe, path, multiplier=mult)
        applied_unet, applied_te = unet_te_outputs(tiny_pipe)
        assert not torch.allclose(applied_unet, base_unet)
        handle.remove()
        # removing restores the base exactly; its weights were never touched
        after_unet, after_te = unet_te_outputs(tiny_pipe)
        assert torch.equal(after_unet, base_unet) and torch.equal(after_te, base_te)
        assert all(torch.equal(before[k], v) for k, v in tiny_pipe.unet.state_dict().items())

    # merging applies the scale once: merged == applied (lycoris-lora 4.1.3's merge_to scales
    # LoHa and LoKr twice)
    merged = tiny_base()
    meta = merge_adapter(merged, path, multiplier=0.6)
    assert meta["t2ibench_trainer"] == trainer
    merged_unet, merged_te = unet_te_outputs(merged)
    torch.testing.assert_close(merged_te, applied_te, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(merged_unet, applied_unet, rtol=1e-4, atol=1e-5)

    # multiplier 0 is the base; a handle is a context manager
    with apply_adapter(tiny_pipe, path, multiplier=0.0):
        zero_unet, _ = unet_te_outputs(tiny_pipe)
    torch.testing.assert_close(zero_unet, base_unet, rtol=0, atol=1e-6)


def test_second_adapter_on_same_layer_is_refused(tiny_pipe, tmp_path: Path) -> None:
    path = _random_adapter(tiny_pipe, "lora", tmp_path / "a.safetensors", preset="attn-only")
    handle = apply_adapter(tiny_pipe, path)
    with pytest.raises(RuntimeError, match="already carries an adapter"):
        apply_adapter(tiny_pipe, path)
    handle.remove()
    apply_adapter(tiny_pipe, path).remove()


def test_bad_files(tiny_pipe, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    with pytest.raises(AdapterFileError, match="no such adapter file"):
        apply_adapter(tiny_pipe, tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(AdapterFileError, match="junk.safetensors: not a readable"):
        apply_adapter(tiny_pipe, junk)
    other = tmp_path / "other.safetensors"
    save_file({"lora_unet_nope_to_q.lora_down.weight": torch.zeros(2, 4)}, str(other))
    with pytest.raises(AdapterFileError, match="does not fit this base model.*lora_unet_nope_to_q"):
        apply_adapter(tiny_pipe, other)
    wrong = tmp_path / "wrong.safetensors"
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    save_file(
        {
            f"{name}.lora_down.weight": torch.zeros(2, 5),
            f"{name}.lora_up.weight": torch.zeros(7, 2),
        },
        str(wrong),
    )
    with pytest.raises(AdapterFileError, match="shape"):
        apply_adapter(tiny_pipe, wrong)
    folder = tmp_path / "native-e000001"
    folder.mkdir()
    with pytest.raises(AdapterFileError, match="full diffusers checkpoint"):
        apply_adapter(tiny_pipe, folder)


# ---------------------------------------------------------------------------------------------
# issue 13, item 18: broken weights give one clear error instead of black images


@pytest.mark.parametrize("bad", ["nan", "inf", "int8"])
def test_item18_broken_adapter_files_are_refused(tiny_pipe, tmp_path: Path, bad: str) -> None:
    from safetensors.torch import load_file, save_file

    path = _random_adapter(tiny_pipe, "lora", tmp_path / "a.safetensors", preset="attn-only")
    tensors = load_file(str(path))
    key = sorted(k for k in tensors if k.endswith("lora_up.weight"))[0]
    if bad == "int8":
        tensors = {k: (v * 100).to(torch.int8) for k, v in tensors.items()}
    else:
        tensors[key] = tensors[key].clone()
        tensors[key][0, 0] = float(bad)
    broken = tmp_path / f"{bad}.safetensors"
    save_file(tensors, str(broken))
    match = "not floating point.*int8" if bad == "int8" else f"hold NaN or inf.*{key}"
    with pytest.raises(AdapterFileError, match=match):
        apply_adapter(tiny_pipe, broken)
    with pytest.raises(AdapterFileError, match=match):
        merge_adapter(tiny_pipe, broken)


def test_item18_nan_weights_stop_generation_with_one_clear_error(tiny_pipe) -> None:
    """A NaN in the base (or an adapter) makes NaN latents; generation must say so rather than
    save black images."""
    from t2ibench.errors import T2IBenchError
    from t2ibench.pipeline.generate import GenerationSettings, generate_batch
    from t2ibench.prompts import GenerationJob

    job = GenerationJob(
        leaf="toys/ring", prompt_type="trigger", prompt="a sks toy", seed=1, index=0
    )
    settings = GenerationSettings(steps=2, height=64, width=64, batch_size=1)
    [image] = generate_batch(tiny_pipe, [job], settings)  # the healthy base works
    assert image.size == (64, 64)
    with torch.no_grad():
        tiny_pipe.unet.conv_out.bias[0] = float("nan")
    with pytest.raises(T2IBenchError, match="NaN/inf"):
        generate_batch(tiny_pipe, [job], settings)


def test_item23_identical_saves_give_identical_bytes(tmp_path: Path) -> None:
    """safetensors writes its header from a hash map (order changes per map and per process):
    checkpoints of identical runs must still be byte-identical, so the header is canonicalised."""
    import torch
    from safetensors.torch import load_file, safe_open

    from t2ibench.adapters.files import atomic_save_safetensors

    tensors = {
        f"lora_unet_block_{k}.lora_down.weight": torch.full((2, 3), float(k)) for k in range(12)
    }
    meta = {f"ss_key_{k}": f"value {k} é" for k in range(12)}
    blobs = set()
    for k in range(6):
        path = atomic_save_safetensors(tensors, tmp_path / f"c{k}.safetensors", meta)
        blobs.add(path.read_bytes())
        loaded = load_file(path)
        assert all(torch.equal(loaded[n], t) for n, t in tensors.items())
        with safe_open(path, "pt") as f:
            assert f.metadata() == meta
    assert len(blobs) == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_all_finite_is_the_elementwise_answer(dtype) -> None:
    """The sum shortcut never hides a NaN or inf, and finite values whose sum overflows (fp16:
    4 x 60000 > 65504) still count as finite."""
    from t2ibench.adapters.files import all_finite, bad_tensors

    cases = {
        "plain": torch.randn(1000),
        "nan": torch.tensor([1.0, float("nan"), 2.0]),
        "inf": torch.tensor([1.0, float("inf")]),
        "inf-pair": torch.tensor([float("inf"), -float("inf"), 3.0]),
        "overflowing-sum": torch.full((4,), 60000.0),
        "empty": torch.zeros(0),
    }
    for name, t in cases.items():
        t = t.to(dtype)
        assert all_finite(t) == bool(torch.isfinite(t).all()), (name, dtype)
    _, nonfinite = bad_tensors({k: v.to(dtype) for k, v in cases.items()})
    assert nonfinite == ["nan", "inf", "inf-pair"]
