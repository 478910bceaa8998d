"""HPSv3 golden test: our judge (transformers 5's Qwen2-VL modules, the checkpoint's keys renamed
on load) against a test-only restatement of the reference scoring (package ``hpsv3`` 1.0.0, which
pins transformers 4.45.2) on a shrunken random-weight Qwen2-VL in the released layout with a tiny
byte-level tokenizer. The restatement follows the reference's code path: its message and chat
text, ``fetch_image``, transformers 4.45's slow image processor and image-token expansion, and
``Qwen2VLRewardModelBT.forward`` on a Qwen2-VL loaded by transformers' own ``from_pretrained``
(its key conversion, not ours)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from t2ibench.encoders import create_encoder
from t2ibench.errors import T2IBenchError
from t2ibench.metrics.judges.hpsv3 import INSTRUCTION, PROMPT_WITH_SPECIAL_TOKEN
from tests.metrics.judges.conftest import PROMPTS
from tests.metrics.judges.qwen2vl_reference import reference_fetch_image, reference_image_processor


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    return create_encoder("hpsv3", tiny=True, cache_dir=tmp_path_factory.mktemp("judges"))


def reference_batch(tokenizer, images, prompts):
    """inference.py prepare_batch (lines 97-137): Qwen2-VL's chat template with the generation
    prompt and its default system message, each <|image_pad|> expanded to grid.prod() // 4
    tokens (processing_qwen2_vl.py 4.45.2 lines 132-140), right padding."""
    texts, pixels, grids = [], [], []
    for image, prompt in zip(images, prompts, strict=True):
        text = INSTRUCTION.format(text_prompt=prompt) + PROMPT_WITH_SPECIAL_TOKEN
        chat = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                f"<|vision_start|><|image_pad|><|vision_end|>{text}<|im_end|>\n"
                "<|im_start|>assistant\n")  # fmt: skip
        flat, grid = reference_image_processor(
            reference_fetch_image(image, 256 * 28 * 28, 256 * 28 * 28)  # inference.py 98-111
        )
        texts.append(chat.replace("<|image_pad|>", "<|image_pad|>" * int(grid.prod() // 4)))
        pixels.append(flat)
        grids.append(grid)
    tokenizer.padding_side = "right"
    tokens = tokenizer(texts, padding=True, return_tensors="pt")
    return tokens["input_ids"], tokens["attention_mask"], torch.cat(pixels), torch.stack(grids)


@pytest.fixture(scope="module")
def reference(judge, tmp_path_factory):
    """The released checkpoint loaded as create_model_and_processor + load_state_dict do, the
    Qwen2-VL part through transformers' from_pretrained of a 4.45-layout state dict."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration

    src = Path(judge.source)
    state = load_file(str(src / "HPSv3.safetensors"))
    folder = tmp_path_factory.mktemp("qwen2vl-4.45-layout")
    shutil.copy(src / "config.json", folder / "config.json")
    cfg = json.loads((folder / "config.json").read_text())
    vocab = state["model.embed_tokens.weight"].shape[0]
    cfg["text_config"]["vocab_size"] = cfg["vocab_size"] = vocab  # resized to the tokenizer
    (folder / "config.json").write_text(json.dumps(cfg))
    qwen = {k: v for k, v in state.items() if not k.startswith("rm_head.")}
    qwen["lm_head.weight"] = torch.zeros(vocab, cfg["text_config"]["hidden_size"])
    save_file(qwen, str(folder / "model.safetensors"))
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(folder), dtype=torch.float32)
    rm_head = torch.nn.Sequential(  # qwen2vl_trainer.py lines 99-106
        torch.nn.Linear(cfg["text_config"]["hidden_size"], 1024), torch.nn.ReLU(),
        torch.nn.Dropout(0.05), torch.nn.Linear(1024, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2),
    )  # fmt: skip
    rm_head.load_state_dict({k.removeprefix("rm_head."): v for k, v in state.items()
                             if k.startswith("rm_head.")})  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(str(src))
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|Reward|>"]})  # train.py 60-65
    return model.eval(), rm_head.eval(), tokenizer


def reference_reward(reference, images, prompts):
    """Qwen2VLRewardModelBT.forward (qwen2vl_trainer.py lines 148-247), reward_token 'special';
    μ is column 0 (inference.py line 166)."""
    model, rm_head, tokenizer = reference
    input_ids, attention_mask, pixel_values, grid_thw = reference_batch(tokenizer, images, prompts)
    inner = model.model
    inputs_embeds = inner.language_model.embed_tokens(input_ids)
    image_embeds = inner.visual(pixel_values, grid_thw=grid_thw).pooler_output
    image_mask = (input_ids == model.config.image_token_id).unsqueeze(-1).expand_as(inputs_embeds)
    inputs_embeds = inputs_embeds.masked_scatter(image_mask, image_embeds)
    outputs = inner.language_model(
        input_ids=None,
        position_ids=None,
        attention_mask=attention_mask,
        inputs_embeds=inputs_embeds,
    )
    logits = rm_head(outputs[0])
    special = input_ids == tokenizer.convert_tokens_to_ids("<|Reward|>")
    pooled = logits[special, ...].view(input_ids.shape[0], 1, -1).view(input_ids.shape[0], -1)
    return pooled[:, 0]


def test_scores_equal_the_restated_reference(judge, reference, judge_images):
    with torch.no_grad():
        for prompts in (PROMPTS, [PROMPTS[2]] * 3):
            ours = judge.score(judge_images, prompts)
            ref = reference_reward(reference, judge_images, prompts)  # one padded batch
            torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
        assert judge.score(judge_images, PROMPTS).std() > 1e-3  # the inputs matter


def test_offline_without_weights_names_the_files(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(T2IBenchError, match=r"put HPSv3\.safetensors \(hub repo MizzenAI/HPSv3\) "
                       r"and config\.json, .* of Qwen/Qwen2-VL-7B-Instruct"):  # fmt: skip
        create_encoder("hpsv3")


def test_the_trained_prompt_is_the_reference_text_byte_for_byte():
    """INSTRUCTION and prompt_with_special_token of hpsv3 1.0.0 (dataset/data_collator_qwen.py
    lines 11-42), trailing spaces included: sha256 of the package's strings, taken once."""
    import hashlib

    digest = {
        INSTRUCTION: "0393599dad45a971903d1d62a3acf9bad3ccccdafa7f40f680523419e1f68b7a",
        PROMPT_WITH_SPECIAL_TOKEN: (
            "2471faca094ae5bd6fe17b71dce20c3d7583625545e235889f7e74e7eeb69d0a"
        ),
    }
    for text, expected in digest.items():
        assert hashlib.sha256(text.encode()).hexdigest() == expected
