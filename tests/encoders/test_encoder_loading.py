"""Tiny variants are saved, then loaded from their folder by the same function as real weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from encoders_testutil import IMAGE_ENCODERS, noise_image
from safetensors.torch import load_file, save_file

from t2ibench.encoders import clip, convnext, create_encoder, dinov2, vgg
from t2ibench.errors import ConfigError, T2IBenchError

FAMILIES = {"dinov2-l": dinov2, "clip-l14": clip, "convnextv2-l": convnext, "vgg19": vgg}
WEIGHT_FILES = {
    "dinov2-l": "model.safetensors",
    "clip-l14": "open_clip_model.safetensors",
    "convnextv2-l": "model.safetensors",
    "vgg19": "model.safetensors",
}


def saved_vs_loaded(name: str, model: torch.nn.Module, folder: Path) -> None:
    """Every tensor stored in the folder's weights file is in the loaded model.

    Matched by value, not key: transformers renames some keys on load (q/k/v projections).
    """
    stored = load_file(str(folder / WEIGHT_FILES[name]))
    state = list(model.state_dict().values())
    for key, tensor in stored.items():
        assert any(t.shape == tensor.shape and torch.equal(t.cpu(), tensor) for t in state), (
            f"{name}: stored {key} is not in the loaded model"
        )


@pytest.mark.parametrize("name", IMAGE_ENCODERS)
def test_tiny_goes_through_the_real_loader(name: str, monkeypatch, tmp_path: Path) -> None:
    family = FAMILIES[name]
    calls: list[str] = []
    real_loader = family.load_model

    def spy(source: str, *args):
        calls.append(source)
        return real_loader(source, *args)

    monkeypatch.setattr(family, "load_model", spy)
    enc = create_encoder(name, tiny=True, cache_dir=tmp_path)
    assert len(calls) == 1
    folder = Path(calls[0])
    assert folder.parent == tmp_path and folder.is_dir() and enc.source == str(folder)
    assert (folder / WEIGHT_FILES[name]).is_file()
    saved_vs_loaded(name, enc.model, folder)

    # The same folder given as ordinary weights loads identically (same loader, same id).
    again = create_encoder(name, weights=folder)
    assert calls[-1] == str(folder)
    assert again.weights_id == enc.weights_id
    img = [noise_image(56, 40)]
    a, b = enc.encode_images(img), again.encode_images(img)
    for x, y in zip(a, b, strict=True) if name == "vgg19" else [(a, b)]:
        torch.testing.assert_close(x, y)


def test_weights_id_follows_content_not_path(tmp_path: Path) -> None:
    enc = create_encoder("convnextv2-l", tiny=True, cache_dir=tmp_path / "a")
    moved = shutil.copytree(enc.source, tmp_path / "moved")
    assert create_encoder("convnextv2-l", weights=moved).weights_id == enc.weights_id
    weights = moved / "model.safetensors"
    state = load_file(str(weights))
    key = next(iter(state))
    state[key] = state[key] + 1.0
    save_file(state, str(weights))
    changed = create_encoder("convnextv2-l", weights=moved)
    assert changed.weights_id != enc.weights_id


def test_clip_folder_without_weights_is_an_error_not_random_weights(tmp_path: Path) -> None:
    enc = create_encoder("clip-l14", tiny=True, cache_dir=tmp_path / "c")
    folder = tmp_path / "config-only"
    folder.mkdir()
    shutil.copy(Path(enc.source) / "open_clip_config.json", folder)
    with pytest.raises(T2IBenchError, match="no weights file"):
        create_encoder("clip-l14", weights=folder)


@pytest.mark.parametrize("name", IMAGE_ENCODERS)
def test_missing_local_path_names_it(name: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "weights"
    with pytest.raises(T2IBenchError, match="does not exist") as err:
        create_encoder(name, weights=str(missing))
    assert str(missing) in str(err.value)


@pytest.mark.parametrize("name", ["dinov2-l", "clip-l14", "convnextv2-l"])
def test_missing_hub_model_offline_names_the_id_and_the_way_out(name: str) -> None:
    repo = "t2ibench-tests/no-such-model"
    with pytest.raises(T2IBenchError) as err:
        create_encoder(name, weights=repo)
    message = str(err.value)
    assert repo in message and "local path" in message and "HF_HUB_OFFLINE" in message


def test_vgg_default_weights_offline_and_not_cached(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(T2IBenchError) as err:
        create_encoder("vgg19")
    message = str(err.value)
    assert "vgg19-dcbb9e9d.pth" in message and "local path" in message


def test_tiny_and_weights_together_is_an_error() -> None:
    with pytest.raises(ConfigError, match="tiny"):
        create_encoder("dinov2-l", weights="facebook/dinov2-large", tiny=True)


def test_vgg_takes_the_pre_relu_conv_maps() -> None:
    # torchvision's VGG-19 'E' layout: indices 0, 5, 10, 19, 28 are the first conv of each block
    from torchvision.models.vgg import cfgs, make_layers

    layers = make_layers(cfgs["E"])
    convs = [layers[i] for i in vgg.STYLE_LAYERS]
    assert all(isinstance(c, torch.nn.Conv2d) for c in convs)
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 512]
    assert [c.in_channels for c in convs] == [3, 64, 128, 256, 512]  # each starts a block
    enc = create_encoder("vgg19", tiny=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        maps = enc.model(x)
    assert (torch.cat([m.flatten() for m in maps]) < 0).any()  # pre-ReLU: negatives survive


def test_item12_missing_weights_hint_is_the_cli_option():
    """Issue 22 item 12: the offline missing-weights hint showed the Python call
    (``create_encoder('…', weights='/path/to/weights')``) to CLI users; it names ``--encoders
    NAME@/path`` (the Python keyword after it)."""
    from t2ibench.encoders import create_encoder
    from t2ibench.errors import T2IBenchError

    with pytest.raises(T2IBenchError) as err:
        create_encoder("dino-vits16", weights="nobody/no-such-model")
    text = str(err.value)
    assert "--encoders dino-vits16@/path/to/weights" in text, text
    assert "create_encoder(" not in text and "\n" not in text, text
