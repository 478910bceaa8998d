"""IQA probes on the real pyiqa (the ``iqa`` extra): pyiqa's LIQE and MANIQA architectures, built
with random weights and no download, loaded through ``create_encoder`` from safe weight files.

The full-size architectures (CLIP ViT-B/32, ViT-B/8) take tens of seconds on a CPU: those tests are
``slow`` (they run in CI). Issue 13 item 9.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
import torch
from encoders_testutil import noise_image

from t2ibench.encoders import FeatureCache, create_encoder, encode_images_cached
from t2ibench.errors import ConfigError, MissingExtraError, T2IBenchError

pyiqa = pytest.importorskip(
    "pyiqa", reason='the IQA tests need the iqa extra: pip install ".[iqa]"'
)
from t2ibench.encoders import iqa  # noqa: E402
from t2ibench.encoders.init_skip import skipped_random_init, skipping  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["liqe", "maniqa"])
def test_without_pyiqa_the_error_names_the_extra(name: str, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pyiqa", None)  # `import pyiqa` fails like a missing package
    with pytest.raises(MissingExtraError) as err:
        create_encoder(name)
    assert 'pip install "t2ibench[iqa]"' in str(err.value)
    assert "non-commercial" in str(err.value)


def test_item09_pkg_resources_missing_names_the_fix() -> None:
    """setuptools ≥ 81 has no pkg_resources; pyiqa's openai-clip imports it. The iqa extra pins
    setuptools < 81, and without it the message says so instead of a bare ModuleNotFoundError."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["iqa"]
    assert any(r.replace(" ", "").startswith("setuptools<81") for r in extra), extra
    saved = dict(sys.modules)
    try:
        for mod in [m for m in sys.modules if m.split(".")[0] in ("pyiqa", "clip")]:
            del sys.modules[mod]
        sys.modules["pkg_resources"] = None  # type: ignore[assignment]
        with pytest.raises(MissingExtraError, match="setuptools<81"):
            create_encoder("liqe")
    finally:
        sys.modules.clear()
        sys.modules.update(saved)


def test_item09_maniqa_is_pyiqas_maniqa_koniq_config() -> None:
    cls, opts = iqa.architecture("maniqa")
    assert cls is pyiqa.archs.maniqa_arch.MANIQA
    assert opts["train_dataset"] == "koniq" and opts["test_sample"] == iqa.NUM_PATCHES
    assert opts["pretrained"] is False
    assert iqa.default_checkpoint_url("maniqa").endswith("ckpt_koniq10k.pt")
    cls, opts = iqa.architecture("liqe")
    assert cls is pyiqa.archs.liqe_arch.LIQE and opts["num_patch"] == iqa.NUM_PATCHES
    assert iqa.default_checkpoint_url("liqe").endswith("liqe_koniq.pt")


@pytest.mark.parametrize("name", ["liqe", "maniqa"])
def test_item09_offline_default_weights_say_pass_a_local_path(
    name: str, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(pyiqa.utils.download_util, "DEFAULT_CACHE_DIR", str(tmp_path))
    with pytest.raises(T2IBenchError, match=rf"--encoders {name}@/path/to/weights") as err:
        create_encoder(name)
    assert name in str(err.value) and "URLError" not in str(err.value)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))  # runs on unpickling with weights_only=False


@pytest.mark.parametrize("name", ["liqe", "maniqa"])
def test_item09_user_weights_are_never_unpickled(name: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"params": {"x": torch.zeros(1)}, "payload": _Payload(marker)}, tmp_path / "w.pth")
    with pytest.raises(T2IBenchError, match="is not a checkpoint t2ibench reads safely"):
        create_encoder(name, weights=tmp_path / "w.pth")
    assert not marker.exists()


@pytest.mark.parametrize("name", ["liqe", "maniqa"])
def test_item18_iqa_weight_errors_are_one_plain_line(name: str, tmp_path: Path) -> None:
    """Issue 22 item 18: an unreadable local checkpoint said "Download them once" (it is there),
    carried torch's ANSI-coloured advice to set ``weights_only=False`` and a Python call as the
    hint; a checkpoint of another network listed every key over many lines."""
    bad = tmp_path / "w.pth"
    torch.save({"params": {"x": torch.zeros(1)}, "payload": _Payload(tmp_path / "m")}, bad)
    other = tmp_path / "other.pth"
    torch.save({"params": {"not.this.net": torch.zeros(2)}}, other)
    for file, why in ((bad, "is not a checkpoint t2ibench reads safely"),
                      (other, f"does not hold pyiqa's {name} network")):  # fmt: skip
        with pytest.raises(T2IBenchError, match=why) as err:
            create_encoder(name, weights=file)
        text = str(err.value)
        assert "\n" not in text and "\x1b" not in text, text
        assert "Download" not in text and "weights_only" + "` set to `False" not in text, text
        assert "create_encoder(" not in text, text


def test_a_network_for_a_checkpoint_skips_only_its_own_random_init() -> None:
    """``load_network`` builds without random fills (its strict load sets every weight); the
    fills are back afterwards, also after an error, and ``build_network``'s stay seeded."""
    fills = dict(vars(torch.nn.init))
    with pytest.raises(RuntimeError, match="inside"):
        with skipped_random_init():
            assert torch.nn.init.kaiming_uniform_ is not fills["kaiming_uniform_"]
            raise RuntimeError("inside")
    assert all(getattr(torch.nn.init, k) is v for k, v in fills.items()) and not skipping()
    torch.manual_seed(3)
    seeded = torch.nn.Linear(4, 4).weight.detach().clone()
    torch.manual_seed(3)
    assert torch.equal(torch.nn.Linear(4, 4).weight, seeded)


def test_probes_have_no_tiny_variant() -> None:
    with pytest.raises(ConfigError, match="tiny"):
        create_encoder("liqe", tiny=True)


# --- the real architectures (slow) -----------------------------------------------------------------


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory) -> dict[str, Path]:
    """Each probe's random-weight state dict, as safetensors and as a weights_only-loadable .pt."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("iqa-weights")
    files = {}
    for name in ("liqe", "maniqa"):
        state = {k: v.contiguous() for k, v in iqa.build_network(name, seed=1).state_dict().items()}
        save_file(state, str(folder / f"{name}.safetensors"))
        torch.save({"params": state}, folder / f"{name}.pt")  # pyiqa's checkpoint layout
        files[name] = folder / f"{name}.safetensors"
        files[name + ".pt"] = folder / f"{name}.pt"
    return files


@pytest.mark.slow
@pytest.mark.parametrize("name,arch", [("liqe", "LIQE"), ("maniqa", "MANIQA")])
def test_item09_real_pyiqa_architectures_score(name: str, arch: str, weight_files) -> None:
    text_cache = Path(pyiqa.archs.liqe_arch.DEFAULT_CACHE_DIR) / "liqe_text_feat.pt"
    had_text_cache = text_cache.exists()
    probe = create_encoder(name, weights=weight_files[name], size=256)
    assert type(probe.model).__name__ == arch
    assert type(probe.model).__module__ == f"pyiqa.archs.{name}_arch"
    assert probe.weights_id.startswith(f"pyiqa-{name}:sha256:")
    images = [noise_image(300, 260, seed=1), noise_image(260, 300, seed=2)]
    if name == "maniqa":
        assert probe.model.test_sample == iqa.NUM_PATCHES
        probe.model.test_sample = 1  # one crop of the same network: a CPU-sized forward (ViT-B/8)
        images = images[:1]
    else:  # LIQE's text features come from the loaded CLIP, not the random one or a pickle cache
        net = probe.model
        with torch.no_grad():
            torch.testing.assert_close(net.text_features, net.get_text_features(net.joint_texts))
        assert text_cache.exists() == had_text_cache
    scores = probe.encode_images(images)
    assert scores.shape == (len(images), 1) and bool(torch.isfinite(scores).all())
    if name == "liqe":
        assert bool(((scores >= 1) & (scores <= 5)).all())
        again = probe.encode_images(images[::-1])  # same score whatever the batch and order
        torch.testing.assert_close(again, scores.flip(0), rtol=0, atol=0)
        torch.manual_seed(123)
        expected = torch.rand(3)
        torch.manual_seed(123)
        probe.encode_images(images[:1])
        assert torch.equal(torch.rand(3), expected)  # seeded scoring leaves the global RNG alone
    else:
        assert bool((scores >= 0).all())

    same = create_encoder(name, weights=weight_files[name + ".pt"], size=256)  # weights_only load
    if name == "maniqa":
        same.model.test_sample = 1
    torch.testing.assert_close(same.encode_images(images), scores, rtol=0, atol=0)


@pytest.mark.slow
def test_iqa_scores_go_through_the_cache(weight_files, tmp_path: Path) -> None:
    probe = create_encoder("liqe", weights=weight_files["liqe"], size=224)
    files = []
    for i in range(2):
        files.append(tmp_path / f"{i}.png")
        noise_image(260, 240, seed=i).save(files[-1])
    cache = FeatureCache(tmp_path / "cache")
    first = encode_images_cached(probe, files, cache)
    assert probe.forward_passes == 2  # one image per pass
    second = encode_images_cached(probe, files, cache)
    assert probe.forward_passes == 2 and torch.equal(first, second)
