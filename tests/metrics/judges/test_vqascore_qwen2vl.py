"""VQAScore (Qwen2-VL back-end) golden test: our judge against a test-only restatement of
t2v_metrics 10d549b ``qwen2vl_model.py`` (t2v-metrics pins torch 2.6) on a shrunken random-weight
Qwen2-VL-Instruct folder (with the Instruct models' repetition penalty in its generation config)
and a tiny BPE tokenizer. The restatement builds the inputs itself (chat text, qwen-vl-utils'
resize, transformers 4.45's slow image processor and image-token expansion), loads the model with
transformers' ``Qwen2VLForConditionalGeneration.from_pretrained`` and reads the answer's
probability from ``generate``'s scores as the reference does."""

from __future__ import annotations

import pytest
import torch

from t2ibench.encoders import create_encoder
from t2ibench.errors import T2IBenchError
from tests.metrics.judges.conftest import PROMPTS
from tests.metrics.judges.qwen2vl_reference import reference_fetch_image, reference_image_processor


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    return create_encoder("vqascore-qwen2vl", tiny=True,
                          cache_dir=tmp_path_factory.mktemp("judges"))  # fmt: skip


def reference_forward(model, tokenizer, image, text):
    """qwen2vl_model.py forward (lines 169-285) for one image and text: the question (line 173),
    the chat (lines 191-192: Qwen2-VL's template, default system message, generation prompt),
    process_vision_info and the processor (lines 193-200), generate (lines 208-215), the
    answer's probability from the scores with the special-token rule (lines 217-269); None where
    the reference raises."""
    question = f'Does this image show "{text}"? Answer the question with Yes or No'
    chat = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            f"<|vision_start|><|image_pad|><|vision_end|>{question}<|im_end|>\n"
            "<|im_start|>assistant\n")  # fmt: skip
    flat, grid = reference_image_processor(reference_fetch_image(image))
    chat = chat.replace("<|image_pad|>", "<|image_pad|>" * int(grid.prod() // 4))
    inputs = tokenizer([chat], padding=True, return_tensors="pt")
    answer_token_ids = tokenizer.encode("Yes", add_special_tokens=False)
    n_answer_tokens = len(answer_token_ids)
    # transformers 4.4x's get_rope_index found the image tokens in input_ids (3-D M-RoPE
    # positions); transformers 5 takes them as mm_token_type_ids (1 = image).
    image_tokens = (inputs.input_ids == model.config.image_token_id).int()
    outputs = model.generate(
        **inputs, mm_token_type_ids=image_tokens, pixel_values=flat, image_grid_thw=grid[None],
        max_new_tokens=1,
        temperature=1.0, do_sample=False, output_scores=True, return_dict_in_generate=True,
    )  # fmt: skip
    generated_ids = outputs.sequences[0][inputs.input_ids.shape[1] :]
    special = [tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.pad_token_id]
    offset = 0
    if generated_ids[-1].item() in special:
        n_answer_tokens = min(n_answer_tokens, len(outputs.scores) - 1)
        offset = 1
        if n_answer_tokens <= 0:
            return None  # the reference raises ValueError here
    joint_prob = 1.0
    for i in range(min(n_answer_tokens, len(outputs.scores))):
        token_logits = outputs.scores[-(n_answer_tokens - i + offset)][0]
        joint_prob *= torch.softmax(token_logits / 1.0, dim=-1)[answer_token_ids[i]].item()
    return joint_prob


def test_scores_equal_the_restated_reference(judge, judge_images):
    from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration

    model = Qwen2VLForConditionalGeneration.from_pretrained(judge.source, dtype=torch.float32)
    assert model.generation_config.repetition_penalty == 1.05  # a processor that changes scores
    tokenizer = AutoTokenizer.from_pretrained(judge.source)
    compared = 0
    with torch.no_grad():
        for texts in (PROMPTS, ["Yes"] * 3):  # "Yes" in the prompt: penalised twice over
            ours = judge.score(judge_images, texts)
            for i, (image, text) in enumerate(zip(judge_images, texts, strict=True)):
                ref = reference_forward(model.eval(), tokenizer, image, text)
                if ref is not None:
                    assert ours[i].item() == pytest.approx(ref, abs=1e-5, rel=1e-5)
                    compared += 1
        assert compared >= 4
        logp = judge.score(judge_images, PROMPTS).log()
    assert logp.std() > 1e-3  # the inputs matter


def test_offline_without_weights_names_the_files(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(T2IBenchError, match=r"put the files of Qwen/Qwen2-VL-7B-Instruct "):
        create_encoder("vqascore-qwen2vl")
