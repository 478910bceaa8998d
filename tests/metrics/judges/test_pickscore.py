"""PickScore golden test: our judge against the reference inference code, restated from
yuvalkirstain/PickScore README.md "Inference with PickScore" (commit 013b54d), on the real CLIP
architecture built from a config with random weights (shrunken: 1 layer, width 32; the real
vocabulary), saved and re-loaded through the judge's loading path."""

from __future__ import annotations

import pytest
import torch

from t2ibench.encoders import create_encoder
from t2ibench.errors import T2IBenchError
from t2ibench.metrics import get_metric
from t2ibench.metrics.judges.pickscore import TINY_CONFIG, build_random
from tests.metrics.judges.conftest import PROMPTS


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    return create_encoder("pickscore", tiny=True, cache_dir=tmp_path_factory.mktemp("judges"))


@pytest.fixture(scope="module")
def reference(judge):
    from transformers import AutoModel, AutoProcessor

    processor = AutoProcessor.from_pretrained(judge.source)  # line 53 (the LAION processor)
    model = AutoModel.from_pretrained(judge.source).eval()  # line 54
    return processor, model


def reference_calc_probs(reference, prompt, images):
    """README lines 45-90, transformers 5 spelling: ``get_*_features`` return a model output whose
    ``pooler_output`` is the projected feature the README's transformers 4.27 returned."""
    processor, model = reference
    image_inputs = processor(images=images, padding=True, truncation=True, max_length=77,
                             return_tensors="pt")  # lines 59-65  # fmt: skip
    text_inputs = processor(text=prompt, padding=True, truncation=True, max_length=77,
                            return_tensors="pt")  # lines 67-73  # fmt: skip
    with torch.no_grad():
        image_embs = model.get_image_features(**image_inputs).pooler_output  # line 78
        image_embs = image_embs / torch.norm(image_embs, dim=-1, keepdim=True)  # line 79
        text_embs = model.get_text_features(**text_inputs).pooler_output  # line 81
        text_embs = text_embs / torch.norm(text_embs, dim=-1, keepdim=True)  # line 82
        scores = model.logit_scale.exp() * (text_embs @ image_embs.T)[0]  # line 85
        probs = torch.softmax(scores, dim=-1)  # line 88
    return scores, probs


def test_scores_and_preferences_equal_the_reference(judge, reference, judge_images):
    folder = reference
    for prompt in PROMPTS:
        ref_scores, ref_probs = reference_calc_probs(folder, prompt, judge_images)
        ours = judge.score(judge_images, [prompt] * len(judge_images))
        torch.testing.assert_close(ours, ref_scores, atol=1e-5, rtol=0)
        torch.testing.assert_close(judge.preference(judge_images, prompt), ref_probs,
                                   atol=1e-5, rtol=0)  # fmt: skip
    # Mixed prompts in one batch (padding to the longest) give each pair its own score.
    mixed = judge.score(judge_images, PROMPTS)
    for i, prompt in enumerate(PROMPTS):
        ref, _ = reference_calc_probs(folder, prompt, [judge_images[i]])
        assert mixed[i].item() == pytest.approx(ref[0].item(), abs=1e-5)
    assert mixed.std() > 0  # random weights still tell the pairs apart


def test_registered_as_a_preference_metric_and_offline_error_names_the_files(monkeypatch):
    spec = get_metric("pickscore")
    assert (spec.criterion, spec.encoder, spec.higher_is_better, spec.inputs) == (
        "preference", "pickscore", True, ("judge_scores",))  # fmt: skip
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(T2IBenchError, match=r"model\.safetensors of yuvalkirstain/PickScore_v1"):
        create_encoder("pickscore")


def test_folder_without_processor_files_is_one_line(tmp_path):
    from transformers import CLIPConfig, CLIPModel

    CLIPModel(CLIPConfig(**TINY_CONFIG)).save_pretrained(tmp_path)
    with pytest.raises(T2IBenchError, match="preprocessor_config.json"):
        create_encoder("pickscore", weights=str(tmp_path))
    build_random(tmp_path)  # with the processor it loads
    assert create_encoder("pickscore", weights=str(tmp_path)).weights_id.startswith("sha256:")
