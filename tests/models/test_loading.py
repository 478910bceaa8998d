"""load_base: local folders, single files (original SD layout), pickles, hub ids offline."""

from __future__ import annotations

import json

import pytest
import torch

from t2ibench.errors import T2IBenchError
from t2ibench.models import BaseModelError, base_fingerprint, load_base, resolve_spec
from t2ibench.models.convert import save_single_file, to_original_sd


def _image(pipe, seed=7):
    return pipe(
        "a watercolor painting of a castle",
        num_inference_steps=2,
        height=64,
        width=64,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np",
    ).images


@pytest.fixture(scope="module")
def base(tiny_folder):
    return load_base(tiny_folder)


@pytest.fixture(scope="module")
def single_file(base, tmp_path_factory):
    return save_single_file(base, tmp_path_factory.mktemp("single") / "tiny-sd.safetensors")


def test_original_layout_keys(base):
    keys = to_original_sd(base)
    assert "model.diffusion_model.input_blocks.0.0.weight" in keys
    assert "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight" in keys
    assert "model.diffusion_model.output_blocks.2.1.conv.weight" in keys  # UpBlock2D upsampler
    assert "first_stage_model.decoder.up.3.block.0.conv1.weight" in keys
    assert keys["first_stage_model.encoder.mid.attn_1.q.weight"].ndim == 4
    assert "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight" in keys


def test_single_file_roundtrip_through_from_single_file(base, single_file, tiny_folder):
    pipe = load_base(single_file, config=tiny_folder)
    for part in ("unet", "vae", "text_encoder"):
        a, b = getattr(base, part).state_dict(), getattr(pipe, part).state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), part
    assert (_image(pipe) == _image(base)).all()
    assert base_fingerprint(single_file)["id"] == str(single_file)


def test_single_file_with_bundled_config_reports_mismatch(single_file):
    # Without config= the bundled SD1.5 configs are used: a tiny file does not fit them, and the
    # error says which file failed (the real SD1.5 path is the same code with matching shapes).
    with pytest.raises(T2IBenchError, match="tiny-sd.safetensors"):
        load_base(single_file)


def test_bundled_sd15_configs_have_sd15_sizes(t2i_cache):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from t2ibench.models.sd15 import sd15_config_folder

    folder = sd15_config_folder()
    assert json.loads((folder / "model_index.json").read_text())["safety_checker"] == [None, None]
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        te = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964
    assert sum(p.numel() for p in te.parameters()) == 123_060_480


def test_pickle_needs_flag_and_loads_weights_only(base, single_file, tiny_folder, tmp_path):
    from safetensors.torch import load_file

    ckpt = tmp_path / "tiny-sd.ckpt"
    torch.save({"state_dict": load_file(single_file), "global_step": 10}, ckpt)
    with pytest.raises(BaseModelError, match="allow_pickle"):
        load_base(ckpt, config=tiny_folder)
    pipe = load_base(ckpt, config=tiny_folder, allow_pickle=True)
    assert (_image(pipe) == _image(base)).all()


def test_pickle_with_code_is_refused_even_with_flag(tiny_folder, tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": Evil()}, ckpt)
    with pytest.raises(BaseModelError, match="evil.ckpt"):
        load_base(ckpt, config=tiny_folder, allow_pickle=True)


def test_hub_id_missing_offline_says_how_to_pass_a_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(BaseModelError, match="local diffusers folder") as err:
        load_base("stable-diffusion-v1-5/stable-diffusion-v1-5")
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in str(err.value)


def test_hub_id_from_local_cache(monkeypatch, tmp_path, tiny_folder):
    """A hub id resolves through the Hugging Face cache layout (snapshot of a commit) offline."""
    import shutil

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))
    repo = hub / "models--someone--tiny-sd"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    pipe = load_base("someone/tiny-sd")
    assert list(pipe.unet.config.block_out_channels) == [32, 64, 64]
    fp = base_fingerprint("someone/tiny-sd")
    assert fp["revision"] == commit
    assert fp["sha256"] == base_fingerprint(tiny_folder)["sha256"]  # plain files: content hashes


@pytest.mark.parametrize(
    "spec, match",
    [
        ("./nowhere", "no such file or folder"),
        ("/abs/missing.safetensors", "no such file or folder"),
        ("not a hub id", "no such file or folder"),
    ],
)
def test_bad_specs(spec, match):
    with pytest.raises(BaseModelError, match=match):
        resolve_spec(spec)


def test_folder_without_model_index(tmp_path):
    with pytest.raises(BaseModelError, match="model_index.json"):
        load_base(tmp_path)


def test_unknown_single_file_type(tmp_path):
    bad = tmp_path / "weights.onnx"
    bad.write_bytes(b"x")
    with pytest.raises(BaseModelError, match="unknown checkpoint type"):
        load_base(bad)


def test_item12_load_base_takes_a_named_base_as_the_cli_does():
    """Issue 22 item 12: ``--base toy`` worked, ``load_base("toy")`` was refused ("no such file or
    folder"); a named base is its folder in both. (resolve_spec: no weights are loaded.)"""
    from t2ibench.profiles import BASES

    kind, where = resolve_spec("toy")
    assert kind == "folder" and where == BASES.get("toy").path().absolute()
    with pytest.raises(BaseModelError, match="no such file or folder"):
        resolve_spec("./toy")  # a path stays a path
