"""VQAScore with an open Qwen2-VL back-end (Lin et al. 2024; t2v_metrics ``qwen2-vl-*``): the
probability that Qwen2-VL-Instruct answers "Yes" to *Does this image show "{prompt}"?*.

Scoring restated from linzhiqiu/t2v_metrics at commit ``10d549b``,
``t2v_metrics/models/vqascore_models/qwen2vl_model.py`` (the package pins torch 2.6), on
transformers' own ``Qwen2VLForConditionalGeneration`` (the class the reference loads, line 123):

- question ``'Does this image show "{}"? Answer the question with Yes or No'``, answer ``"Yes"``
  (lines 173-174, 180-181), one user message: the image then the question (line 191), Qwen2-VL's
  chat template with the generation prompt (line 192);
- image: qwen-vl-utils ``process_vision_info`` with its default pixel range (line 193; see
  :mod:`._qwen2vl`), then the processor (lines 194-200);
- score: the first generated position's probability of the answer's token (``tokenizer.encode(
  "Yes", add_special_tokens=False)``, line 204) from ``generate(max_new_tokens=1,
  do_sample=False, output_scores=True)`` (lines 208-215) with temperature 1 (lines 159-166,
  262-269). ``output_scores`` are the *processed* logits: the generation config's logits
  processors apply, e.g. Qwen2-VL-Instruct's ``repetition_penalty`` 1.05 (the question contains
  "Yes"). Here the same ``generate`` call (one step) and the softmax's "Yes" entry.

Where the greedy token is a special token (EOS, BOS, PAD), the reference raises (lines 232-241:
no token left to score); here the probability of "Yes" is returned all the same. The reference
loads the model in bfloat16 (lines 28-29); here float32 on CPU, t2ibench's autocast on CUDA.

Weights: a folder with the files of ``Qwen/Qwen2-VL-7B-Instruct`` (or ``-2B-``): ``config.json``,
``generation_config.json``, the weights (safetensors), tokenizer files, ``chat_template.json``,
``preprocessor_config.json``; ``weights=None`` reads the 7B repo from the hub cache. Licence:
Qwen2-VL-7B/2B-Instruct Apache-2.0; t2v-metrics Apache-2.0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from t2ibench.encoders.base import EncoderSpec
from t2ibench.errors import T2IBenchError
from t2ibench.metrics.judges._common import (
    JudgeEncoder,
    JudgePreprocess,
    judge_source,
    missing_judge_weights,
    register_judge,
)
from t2ibench.metrics.judges._qwen2vl import (
    TINY_TEXT,
    TINY_VISION,
    fetch_image,
    load_processor,
    save_tiny_image_processor,
    tiny_config,
    write_tiny_tokenizer,
)

NAME = "vqascore-qwen2vl"
MODEL_REPO = "Qwen/Qwen2-VL-7B-Instruct"
QUESTION = 'Does this image show "{}"? Answer the question with Yes or No'  # line 173
ANSWER = "Yes"  # line 174
WHERE = (
    f"put the files of {MODEL_REPO} (config.json, generation_config.json, model*.safetensors, "
    "the tokenizer files, chat_template.json, preprocessor_config.json) in one folder"
)


class VqaScoreQwen2VLJudge(JudgeEncoder):
    def __init__(self, *args: Any, processor: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.processor = processor
        ids = processor.tokenizer.encode(ANSWER, add_special_tokens=False)
        self.answer_id = ids[0]  # max_new_tokens=1: the reference scores the first token only

    def _one(self, batch: Any) -> torch.Tensor:
        out = self.model.generate(  # as the reference, lines 208-215: its processed first scores
            **batch, max_new_tokens=1, temperature=1.0, do_sample=False, output_scores=True,
            return_dict_in_generate=True,
        )  # fmt: skip
        return torch.softmax(out.scores[-1].float(), dim=-1)[:, self.answer_id]

    def score(self, images: Any, prompts: Any) -> torch.Tensor:
        """P("Yes") of each (image, prompt), one at a time as the reference (no padding)."""
        if len(images) != len(prompts):
            raise T2IBenchError(f"judge {self.name}: {len(images)} images, {len(prompts)} prompts")
        out = []
        for image, prompt in zip(images, prompts, strict=True):
            messages = [{"role": "user", "content": [
                {"type": "image", "image": image},
                {"type": "text", "text": QUESTION.format(prompt)},
            ]}]  # fmt: skip
            text = self.processor.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            batch = self.processor(text=[text], images=[fetch_image(image)], padding=True,
                                   return_tensors="pt").to(self.device)  # fmt: skip
            out.append(self._run(self._one, batch))
        return torch.cat(out).reshape(-1) if out else torch.empty(0)


def build_random(folder: Path) -> None:
    """A random-weight Qwen2-VL-Instruct folder: model, generation config (with the Instruct
    models' repetition penalty 1.05), tiny tokenizer, chat template, preprocessor config."""
    from transformers import GenerationConfig, Qwen2VLForConditionalGeneration

    tokenizer = write_tiny_tokenizer(folder, [QUESTION, ANSWER, "a photo of a dog on the beach"])
    config = tiny_config(tokenizer, len(tokenizer))
    model = Qwen2VLForConditionalGeneration(config)
    with torch.no_grad():  # logits of order one: P("Yes") away from 0 and 1
        model.lm_head.weight.normal_(0.0, 2 * config.text_config.hidden_size**-0.5)
    model.generation_config = GenerationConfig(
        bos_token_id=None, eos_token_id=[config.text_config.eos_token_id],
        pad_token_id=config.text_config.pad_token_id, do_sample=True, repetition_penalty=1.05,
        temperature=0.01, top_p=0.001, top_k=1,
    )  # fmt: skip
    model.save_pretrained(str(folder))
    save_tiny_image_processor(folder)


def load(
    spec: EncoderSpec,
    weights: str | None,
    tiny: bool,
    preprocess: Any,
    device: Any,
    dtype: Any,
    batch_size: int,
    cache_dir: Path | None,
) -> VqaScoreQwen2VLJudge:
    from transformers import AutoModelForImageTextToText

    from t2ibench.encoders.base import load_pretrained

    tiny_cfg = {"text": TINY_TEXT, "vision": TINY_VISION, "question": QUESTION}
    source = judge_source(spec, weights, tiny, tiny_cfg, build_random, cache_dir, MODEL_REPO)
    try:
        model, wid = load_pretrained(AutoModelForImageTextToText, spec.name, source)
        folder = Path(source).expanduser()
        if not folder.is_dir():  # a hub id: the snapshot the model came from
            from huggingface_hub import snapshot_download

            from t2ibench.fsutil import hub_offline

            folder = Path(snapshot_download(source, local_files_only=hub_offline(),
                                            allow_patterns=["*.json", "*.txt"]))  # fmt: skip
        processor = load_processor(folder)
    except Exception as exc:  # missing files, hub miss: one line
        raise missing_judge_weights(spec.name, WHERE, exc.__cause__ or exc) from exc
    prep = JudgePreprocess(fetch_image, "qwen-vl-utils-0.0.8-fetch-image", size=None)
    return VqaScoreQwen2VLJudge(
        spec.name, model, wid, prep, device, dtype, batch_size, source, processor=processor
    )


register_judge(
    name=NAME,
    criterion="controllability",
    description='VQAScore, Qwen2-VL-Instruct: P("Yes" | image, "Does this image show {prompt}?")',
    load=load,
    default_weights=MODEL_REPO,
    value_range=(0.0, 1.0),
)
