"""What the Qwen2-VL-based judges share (HPSv3, VQAScore's Qwen2-VL back-end): qwen-vl-utils'
image resizing, the processor with transformers' PIL image backend, and the tiny test folder's
tokenizer, chat template and configs.

``fetch_image`` restates qwen-vl-utils 0.0.8 ``vision_process.py`` (``smart_resize`` lines 53-79,
``fetch_image`` lines 82-124: RGB, both sides rounded to multiples of 28 with the pixel count kept
within [min_pixels, max_pixels], PIL bicubic); ``hpsv3/dataset/utils.py`` (lines 55-81, 84-174)
is the same code. The PIL image backend is the processor those references ran (transformers 4.4x's
slow ``Qwen2VLImageProcessor``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from t2ibench.errors import T2IBenchError

FACTOR = 28
MIN_PIXELS = 4 * 28 * 28  # vision_process.py line 25
MAX_PIXELS = 16384 * 28 * 28  # vision_process.py line 26
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]  # fmt: skip
#: Qwen2-VL-Instruct's chat template (image and text branches), for the tiny test folder only; a
#: real folder brings its own chat_template.json.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TINY_TEXT: dict[str, Any] = {
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "rope_scaling": {"type": "mrope", "mrope_section": [2, 1, 1]},
    "max_position_embeddings": 4096,
}  # fmt: skip
TINY_VISION: dict[str, Any] = {
    "depth": 2, "embed_dim": 32, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2,
    "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
}  # fmt: skip


def smart_resize(
    height: int, width: int, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS
) -> tuple[int, int]:
    """vision_process.py lines 53-79: (height, width) in multiples of 28, pixels within range."""
    if max(height, width) / min(height, width) > 200:
        raise T2IBenchError(f"Qwen2-VL judge: aspect ratio over 200 ({width}×{height})")
    h_bar = max(FACTOR, round(height / FACTOR) * FACTOR)
    w_bar = max(FACTOR, round(width / FACTOR) * FACTOR)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / FACTOR) * FACTOR
        w_bar = math.floor(width / beta / FACTOR) * FACTOR
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / FACTOR) * FACTOR
        w_bar = math.ceil(width * beta / FACTOR) * FACTOR
    return h_bar, w_bar


def fetch_image(image: Any, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS) -> Any:
    """vision_process.py ``fetch_image`` for a PIL image: RGB, resized (bicubic) to smart_resize."""
    from PIL import Image

    image = image.convert("RGB")
    height, width = smart_resize(image.height, image.width, min_pixels, max_pixels)
    return image.resize((width, height), Image.BICUBIC)


def load_processor(folder: Path, special_tokens: tuple[str, ...] = ()) -> Any:
    """Qwen2-VL's processor from ``folder`` with the PIL image backend and right padding, plus
    ``special_tokens`` added to the tokenizer."""
    from transformers import (
        AutoTokenizer,
        Qwen2VLImageProcessorPil,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    tokenizer.padding_side = "right"
    if special_tokens:
        tokenizer.add_special_tokens({"additional_special_tokens": list(special_tokens)})
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(str(folder), local_files_only=True)
    template = None
    if (folder / "chat_template.json").is_file():
        template = json.loads((folder / "chat_template.json").read_text())["chat_template"]
    return Qwen2VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),  # unused; the processor requires one
        chat_template=template or getattr(tokenizer, "chat_template", None),
    )  # fmt: skip


def write_tiny_tokenizer(folder: Path, corpus: list[str], size: int = 600) -> Any:
    """A byte-level BPE tokenizer trained on ``corpus`` (so test sequences stay short), with
    Qwen2-VL's special tokens and chat template: the test tokenizer of a random-weight model."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    bpe.train_from_iterator([*corpus, TINY_CHAT_TEMPLATE], trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab = dict(model["vocab"])
    vocab.update({t: len(vocab) + i for i, t in enumerate(QWEN_SPECIALS)})
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, bos_token=None,
                               eos_token="<|im_end|>", pad_token="<|endoftext|>")  # fmt: skip
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_SPECIALS[1:]})
    tokenizer.save_pretrained(str(folder))
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": TINY_CHAT_TEMPLATE}))
    return tokenizer


def tiny_config(tokenizer: Any, vocab_size: int) -> Any:
    """A tiny Qwen2-VL config whose special-token ids are ``tokenizer``'s."""
    from transformers import Qwen2VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    return Qwen2VLConfig(
        text_config={**TINY_TEXT, "vocab_size": vocab_size, "eos_token_id": ids["<|im_end|>"],
                     "bos_token_id": None, "pad_token_id": ids["<|endoftext|>"]},
        vision_config=TINY_VISION, image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip


def save_tiny_image_processor(folder: Path) -> None:
    from transformers import Qwen2VLImageProcessorPil

    from t2ibench.encoders.base import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    Qwen2VLImageProcessorPil(image_mean=list(OPENAI_CLIP_MEAN), image_std=list(OPENAI_CLIP_STD),
                             patch_size=14, merge_size=2, temporal_patch_size=2
                             ).save_pretrained(str(folder))  # fmt: skip
