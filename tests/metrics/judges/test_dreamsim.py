"""DreamSim golden test: the judge's metric against the dreamsim package's own scoring
(``model, preprocess = dreamsim(pretrained=True)``; ``model(preprocess(a), preprocess(b))``,
package README and model.py lines 80-96) on the ensemble architecture with random weights, shrunken
to width 32 (12 blocks: DreamSim reads block 11), saved in the release's folder layout and loaded
back through the judge's loader. Needs the judges extra (dreamsim)."""

from __future__ import annotations

import pytest
import torch

from t2ibench.encoders import create_encoder
from t2ibench.errors import T2IBenchError
from t2ibench.metrics import get_metric
from t2ibench.metrics.judges.dreamsim import DreamSimDistance, dreamsim_distance

pytest.importorskip("dreamsim")
pytest.importorskip("peft")


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    return create_encoder("dreamsim", tiny=True, cache_dir=tmp_path_factory.mktemp("judges"))


def test_mean_distance_equals_the_package_model(judge, judge_images):
    from t2ibench.metrics.judges.dreamsim import load_perceptual_model

    model, preprocess = load_perceptual_model(__import__("pathlib").Path(judge.source))
    gen, ref = judge_images[:2], judge_images[1:]
    with torch.no_grad():
        pairs = [model(preprocess(a), preprocess(b)) for a in gen for b in ref]
    expected = float(torch.cat(pairs).mean())
    ours = dreamsim_distance(judge.encode_images(gen), judge.encode_images(ref))
    assert ours == pytest.approx(expected, abs=1e-5)
    stream = DreamSimDistance()
    stream.update(judge_gen=judge.encode_images(gen[:1]))
    stream.update(judge_gen=judge.encode_images(gen[1:]), judge_ref=judge.encode_images(ref))
    assert stream.compute() == pytest.approx(expected, abs=1e-5)
    # The LoRA adapter is loaded and not a no-op (random B), so the test sees its weights.
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)


def test_registered_lower_is_better_fidelity_and_no_weights_names_the_files(tmp_path):
    spec = get_metric("dreamsim")
    assert (spec.criterion, spec.higher_is_better, spec.inputs) == (
        "fidelity", False, ("judge_gen", "judge_ref"))  # fmt: skip
    with pytest.raises(T2IBenchError, match="dreamsim_ensemble_checkpoint.zip"):
        create_encoder("dreamsim")
    with pytest.raises(T2IBenchError, match="lacks dino_vitbase16_pretrain.pth"):
        create_encoder("dreamsim", weights=str(tmp_path))
