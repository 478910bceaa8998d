"""IQA probes: the missing-extra message, and the seeded patch sampling with a stand-in pyiqa."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch
from encoders_testutil import noise_image

from t2ibench.encoders import FeatureCache, create_encoder, encode_images_cached
from t2ibench.errors import ConfigError, MissingExtraError


@pytest.mark.parametrize("name", ["liqe", "maniqa"])
def test_without_pyiqa_the_error_names_the_extra(name: str, monkeypatch) -> None:
    monkeypatch.setitem(
        sys.modules, "pyiqa", None
    )  # makes `import pyiqa` fail like a missing package
    with pytest.raises(MissingExtraError) as err:
        create_encoder(name)
    assert 'pip install "t2ibench[iqa]"' in str(err.value)
    assert "non-commercial" in str(err.value)


class RandomPatchMetric(torch.nn.Module):
    """Stands in for a pyiqa metric: the score depends on the image *and* on a random patch draw."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x)
        n, _, h, w = x.shape
        tops = torch.randint(0, h - 8, (n, 10))  # like MANIQA's random crops
        lefts = torch.randint(0, w - 8, (n, 10))
        scores = [
            torch.stack(
                [
                    x[i, :, t : t + 8, c : c + 8].mean()
                    for t, c in zip(tops[i], lefts[i], strict=True)
                ]
            ).mean()
            for i in range(n)
        ]
        return torch.stack(scores)  # shape (n,), as pyiqa returns for some metrics


@pytest.fixture
def fake_pyiqa(monkeypatch) -> types.SimpleNamespace:
    calls = types.SimpleNamespace(created=[])

    def create_metric(name: str, as_loss: bool = False, device=None, **kwargs):
        metric = RandomPatchMetric()
        calls.created.append((name, as_loss, kwargs, metric))
        return metric

    module = types.ModuleType("pyiqa")
    module.create_metric = create_metric
    module.__version__ = "0.0-test"
    monkeypatch.setitem(sys.modules, "pyiqa", module)
    return calls


def test_probes_ask_pyiqa_for_the_paper_settings(fake_pyiqa) -> None:
    maniqa = create_encoder("maniqa")
    liqe = create_encoder("liqe")
    (m_name, m_loss, m_kw, _), (l_name, _, l_kw, _) = fake_pyiqa.created
    assert m_name == "maniqa-koniq" and m_kw == {"test_sample": 10} and m_loss is False
    assert l_name == "liqe" and l_kw == {"num_patch": 10}
    assert maniqa.kind == liqe.kind == "score"
    assert "seed0" in maniqa.preprocess_id and "patches10" in maniqa.preprocess_id
    # short side 512, unit range (pyiqa normalises itself)
    maniqa.encode_images([noise_image(80, 48)])
    (x,) = fake_pyiqa.created[0][3].inputs
    assert tuple(x.shape[-2:]) == (512, 853) and 0.0 <= x.min() and x.max() <= 1.0


def test_scores_are_seeded_per_image(fake_pyiqa) -> None:
    probe = create_encoder("maniqa")
    a, b, c = noise_image(80, 48, 1), noise_image(48, 80, 2), noise_image(64, 64, 3)
    first = probe.encode_images([a, b, c])
    assert first.shape == (3, 1) and first.dtype == torch.float32
    again = probe.encode_images([c, a])  # other batch, other order, other neighbours
    torch.testing.assert_close(again, first[[2, 0]], rtol=0, atol=0)
    # the probe's seed drives the draw: another seed, other patches, other scores
    probe.seed = 1
    assert not torch.equal(probe.encode_images([a, b, c]), first)


def test_seeding_leaves_the_global_rng_alone(fake_pyiqa) -> None:
    probe = create_encoder("maniqa")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    probe.encode_images([noise_image(64, 64)])
    assert torch.equal(torch.rand(3), expected)


def test_scores_go_through_the_cache(fake_pyiqa, tmp_path: Path) -> None:
    probe = create_encoder("liqe")
    files = []
    for i in range(2):
        files.append(tmp_path / f"{i}.png")
        noise_image(60, 40, seed=i).save(files[-1])
    cache = FeatureCache(tmp_path / "cache")
    first = encode_images_cached(probe, files, cache)
    assert probe.forward_passes == 2  # one image per pass
    second = encode_images_cached(probe, files, cache)
    assert probe.forward_passes == 2 and torch.equal(first, second)


def test_probes_have_no_tiny_variant(fake_pyiqa) -> None:
    with pytest.raises(ConfigError, match="tiny"):
        create_encoder("liqe", tiny=True)
