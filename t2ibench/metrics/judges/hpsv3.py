"""HPSv3 (Ma et al. 2025, ICCV): human preference for an image given its prompt, a Qwen2-VL-7B
whose last hidden state at a ``<|Reward|>`` token feeds an MLP giving (μ, σ); the score is μ.

The package ``hpsv3`` 1.0.0 pins transformers 4.45.2, so the model is rebuilt here from
transformers' Qwen2-VL modules (``Qwen2VisionTransformerPretrainedModel``, ``Qwen2VLTextModel``)
and the scoring restated from the package's source (``hpsv3/``; MIT):

- image: RGB, resized with PIL bicubic to ``smart_resize(h, w, 28, min_pixels=max_pixels=
  256·28·28)`` (``inference.py`` lines 98-111, ``dataset/utils.py`` lines 55-81, 139-174), then
  Qwen2-VL's image processor (rescale, CLIP mean/std, 14-px patches in 2×2 merge order);
- text: one user message, the image then ``INSTRUCTION.format(text_prompt=prompt) +
  prompt_with_special_token`` (``inference.py`` lines 101-121; ``dataset/data_collator_qwen.py``
  lines 11-42), through Qwen2-VL's chat template with the generation prompt, right-padded
  (``inference.py`` lines 127-135; ``train.py`` line 53); ``<|Reward|>`` is an added special token
  (``train.py`` lines 60-65) and the embeddings are resized to the tokenizer (line 83);
- model: image features scattered into the ``<|image_pad|>`` embeddings, then the language model
  with **no** position ids (``model/qwen2vl_trainer.py`` lines 148-189): transformers fills in
  1-D positions for all three M-RoPE sections, not Qwen2-VL's 3-D image positions;
- head: ``rm_head_type: ranknet`` without kwargs (``config/HPSv3_7B.yaml``): Linear(hidden, 1024),
  ReLU, Dropout(0.05), Linear(1024, 16), ReLU, Linear(16, 2), in float32 (qwen2vl_trainer.py lines
  98-108, 192-193), read at the ``<|Reward|>`` token (lines 229-241); score = μ, the first output
  (``inference.py`` line 166).

The reference runs the model in bfloat16 (``train.py`` lines 85-86); here float32 on CPU and
t2ibench's autocast on CUDA.

Weights: one folder with ``HPSv3.safetensors`` (hub repo ``MizzenAI/HPSv3``; or a ``.pt`` read
with ``weights_only=True``) and the config, tokenizer, chat template and preprocessor files of
``Qwen/Qwen2-VL-7B-Instruct`` (``config.json``, ``tokenizer.json`` or ``vocab.json`` +
``merges.txt``, ``tokenizer_config.json``, ``chat_template.json``, ``preprocessor_config.json``).
Licence: HPSv3 code MIT; the weights derive from Qwen2-VL-7B-Instruct (Apache-2.0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from t2ibench.encoders.base import (
    EncoderSpec,
    hub_offline,
    local_weights_id,
)
from t2ibench.errors import T2IBenchError
from t2ibench.metrics.judges._common import (
    JudgeEncoder,
    JudgePreprocess,
    judge_source,
    linked_folder,
    missing_judge_weights,
    read_state_dict,
    register_judge,
)
from t2ibench.metrics.judges._qwen2vl import (
    TINY_CHAT_TEMPLATE,
    TINY_TEXT,
    TINY_VISION,
    save_tiny_image_processor,
    tiny_config,
    write_tiny_tokenizer,
)
from t2ibench.metrics.judges._qwen2vl import fetch_image as qwen_fetch_image
from t2ibench.metrics.judges._qwen2vl import load_processor as qwen_processor

NAME = "hpsv3"
HUB_REPO = "MizzenAI/HPSv3"
HUB_FILE = "HPSv3.safetensors"
BASE_REPO = "Qwen/Qwen2-VL-7B-Instruct"
REWARD_TOKEN = "<|Reward|>"
PIXELS = 256 * 28 * 28  # inference.py lines 98-99: min_pixels = max_pixels
WHERE = (
    f"put {HUB_FILE} (hub repo {HUB_REPO}) and config.json, the tokenizer files, "
    f"chat_template.json and preprocessor_config.json of {BASE_REPO} in one folder"
)
# dataset/data_collator_qwen.py lines 11-32 and 38-42 (verbatim: the model was trained on it).
INSTRUCTION = """
You are tasked with evaluating a generated image based on Visual Quality and Text Alignment and give a overall score to estimate the human preference. Please provide a rating from 0 to 10, with 0 being the worst and 10 being the best. 

**Visual Quality:**  
Evaluate the overall visual quality of the image. The following sub-dimensions should be considered:
- **Reasonableness:** The image should not contain any significant biological or logical errors, such as abnormal body structures or nonsensical environmental setups.
- **Clarity:** Evaluate the sharpness and visibility of the image. The image should be clear and easy to interpret, with no blurring or indistinct areas.
- **Detail Richness:** Consider the level of detail in textures, materials, lighting, and other visual elements (e.g., hair, clothing, shadows).
- **Aesthetic and Creativity:** Assess the artistic aspects of the image, including the color scheme, composition, atmosphere, depth of field, and the overall creative appeal. The scene should convey a sense of harmony and balance.
- **Safety:** The image should not contain harmful or inappropriate content, such as political, violent, or adult material. If such content is present, the image quality and satisfaction score should be the lowest possible. 

**Text Alignment:**  
Assess how well the image matches the textual prompt across the following sub-dimensions:
- **Subject Relevance** Evaluate how accurately the subject(s) in the image (e.g., person, animal, object) align with the textual description. The subject should match the description in terms of number, appearance, and behavior.
- **Style Relevance:** If the prompt specifies a particular artistic or stylistic style, evaluate how well the image adheres to this style.
- **Contextual Consistency**: Assess whether the background, setting, and surrounding elements in the image logically fit the scenario described in the prompt. The environment should support and enhance the subject without contradictions.
- **Attribute Fidelity**: Check if specific attributes mentioned in the prompt (e.g., colors, clothing, accessories, expressions, actions) are faithfully represented in the image. Minor deviations may be acceptable, but critical attributes should be preserved.
- **Semantic Coherence**: Evaluate whether the overall meaning and intent of the prompt are captured in the image. The generated content should not introduce elements that conflict with or distort the original description.
Textual prompt - {text_prompt}


"""  # noqa: W291 (trailing spaces are part of the trained prompt)
PROMPT_WITH_SPECIAL_TOKEN = """
Please provide the overall ratings of this image: <|Reward|>

END
"""


def fetch_image(image: Any) -> Any:
    """hpsv3 ``fetch_image`` (dataset/utils.py lines 84-174) at min = max = 256·28·28 pixels."""
    return qwen_fetch_image(image, PIXELS, PIXELS)


def load_processor(folder: Path) -> Any:
    """Qwen2-VL's processor, right padding, + ``<|Reward|>`` (train.py lines 52-65)."""
    return qwen_processor(folder, (REWARD_TOKEN,))


class Hpsv3Model(nn.Module):
    """Qwen2-VL's vision tower and language model + HPSv3's ``rm_head``; returns μ."""

    def __init__(self, config: Any) -> None:
        from transformers.models.qwen2_vl.modeling_qwen2_vl import (
            Qwen2VisionTransformerPretrainedModel,
            Qwen2VLTextModel,
        )

        super().__init__()
        self.image_token_id = int(config.image_token_id)
        self.visual = Qwen2VisionTransformerPretrainedModel(config.vision_config)
        self.language_model = Qwen2VLTextModel(config.text_config)
        hidden = config.text_config.hidden_size
        self.rm_head = nn.Sequential(  # qwen2vl_trainer.py lines 99-106
            nn.Linear(hidden, 1024), nn.ReLU(), nn.Dropout(0.05), nn.Linear(1024, 16), nn.ReLU(),
            nn.Linear(16, 2),
        )  # fmt: skip

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor,
        image_grid_thw: torch.Tensor,
        reward_token_id: int,
    ) -> torch.Tensor:
        embeds = self.language_model.embed_tokens(input_ids)
        image = self.visual(pixel_values.to(self.visual.get_dtype()), grid_thw=image_grid_thw)
        mask = (input_ids == self.image_token_id)[..., None].expand_as(embeds)
        embeds = embeds.masked_scatter(mask, image.pooler_output.to(embeds.dtype))
        # No position ids, as the reference (1-D positions in all three M-RoPE sections).
        hidden = self.language_model(inputs_embeds=embeds, attention_mask=attention_mask)
        logits = self.rm_head(hidden.last_hidden_state.float())
        at_reward = input_ids == reward_token_id
        if not bool((at_reward.sum(-1) == 1).all()):
            raise T2IBenchError(f"judge {NAME}: each text needs exactly one {REWARD_TOKEN} token")
        return logits[at_reward][:, 0]  # μ of (μ, σ)


def _rename(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reference checkpoint's keys (transformers 4.45 Qwen2VLForConditionalGeneration:
    ``visual.*``, ``model.*``; + ``rm_head.*``) onto :class:`Hpsv3Model`; ``lm_head`` unused."""
    out = {}
    for key, value in state.items():
        if key.startswith(("visual.", "rm_head.")):
            out[key] = value
        elif key.startswith("model."):
            out["language_model." + key.removeprefix("model.")] = value
    return out


def _hub_folder() -> Path:

    from huggingface_hub import hf_hub_download, snapshot_download

    offline = hub_offline()
    base = Path(snapshot_download(BASE_REPO, local_files_only=offline,
                                  allow_patterns=["*.json", "*.txt"]))  # fmt: skip
    weights = Path(hf_hub_download(HUB_REPO, HUB_FILE, local_files_only=offline))
    return linked_folder(NAME, {**{p.name: p for p in base.iterdir()}, HUB_FILE: weights})


def load_model(source: str | None) -> tuple[Hpsv3Model, Any, str]:
    """HPSv3 with the weights of folder ``source`` (None: the hub cache), its processor, id."""
    from transformers import Qwen2VLConfig

    try:
        folder = _hub_folder() if source is None else Path(source).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder")
        files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".pt", ".pth"))
        if (folder / HUB_FILE).is_file():  # beside Qwen2-VL's own shards, if copied too
            files = [folder / HUB_FILE]
        if len(files) != 1:
            raise FileNotFoundError(f"expected one weights file in {folder}, found {len(files)}")
        state = _rename(read_state_dict(files[0], unwrap=("model",)))
        config = Qwen2VLConfig.from_pretrained(str(folder), local_files_only=True)
        # The checkpoint's vocabulary was resized to the tokenizer with <|Reward|> (train.py 83).
        config.text_config.vocab_size = state["language_model.embed_tokens.weight"].shape[0]
        model = Hpsv3Model(config)
        model.load_state_dict(state, strict=True)
        processor = load_processor(folder)
    except Exception as exc:  # missing file, hub miss, unpickling refused, wrong keys: one line
        raise missing_judge_weights(NAME, WHERE, exc) from exc
    return model, processor, local_weights_id(files[0])


def build_random(folder: Path) -> None:
    """A random-weight folder in the released layout: ``HPSv3.safetensors`` (the reference's keys,
    embeddings sized to the tokenizer with ``<|Reward|>``), a Qwen2-VL ``config.json``, a tiny
    tokenizer, chat template and preprocessor config."""
    from safetensors.torch import save_file

    tokenizer = write_tiny_tokenizer(folder, [INSTRUCTION, PROMPT_WITH_SPECIAL_TOKEN])
    config = tiny_config(tokenizer, len(tokenizer) + 1)  # + <|Reward|>
    config.save_pretrained(str(folder))
    save_tiny_image_processor(folder)
    model = Hpsv3Model(config)
    with torch.no_grad():
        for layer in model.rm_head:  # outputs of order one, with a spread to compare
            if isinstance(layer, nn.Linear):
                layer.weight.normal_(0.0, 3 * layer.in_features**-0.5)
                layer.bias.normal_(0.0, 0.1)
    state = {}
    for k, v in model.state_dict().items():
        key = "model." + k.removeprefix("language_model.") if k.startswith("language_") else k
        state[key] = v.contiguous()
    save_file(state, str(folder / HUB_FILE))


class Hpsv3Judge(JudgeEncoder):
    def __init__(self, *args: Any, processor: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.processor = processor
        self.reward_id = processor.tokenizer.convert_tokens_to_ids(REWARD_TOKEN)

    def inputs(self, images: list[Any], prompts: list[str]) -> Any:
        """The processor's batch for (image, prompt) pairs, as inference.py prepare_batch."""
        messages = [
            [{"role": "user", "content": [
                {"type": "image", "image": im},
                {"type": "text", "text": INSTRUCTION.format(text_prompt=p) + PROMPT_WITH_SPECIAL_TOKEN},
            ]}]
            for im, p in zip(images, prompts, strict=True)
        ]  # fmt: skip
        texts = [self.processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
                 for m in messages]  # fmt: skip
        return self.processor(text=texts, images=[fetch_image(im) for im in images], padding=True,
                              return_tensors="pt")  # fmt: skip

    def score(self, images: Any, prompts: Any) -> torch.Tensor:
        """μ of each (image, prompt); images of any size (Qwen2-VL keeps the aspect ratio)."""
        if len(images) != len(prompts):
            raise T2IBenchError(f"judge {self.name}: {len(images)} images, {len(prompts)} prompts")
        out = []
        for s in range(0, len(images), self.batch_size):
            batch = self.inputs(list(images[s : s + self.batch_size]),
                                list(prompts[s : s + self.batch_size])).to(self.device)  # fmt: skip
            out.append(self._run(lambda b: self.model(
                b["input_ids"], b["attention_mask"], b["pixel_values"], b["image_grid_thw"],
                self.reward_id), batch))  # fmt: skip
        return torch.cat(out).reshape(-1) if out else torch.empty(0)


def load(
    spec: EncoderSpec,
    weights: str | None,
    tiny: bool,
    preprocess: Any,
    device: Any,
    dtype: Any,
    batch_size: int,
    cache_dir: Path | None,
) -> Hpsv3Judge:
    tiny_cfg = {"text": TINY_TEXT, "vision": TINY_VISION, "template": TINY_CHAT_TEMPLATE}
    source = judge_source(spec, weights, tiny, tiny_cfg, build_random, cache_dir)
    model, processor, wid = load_model(source)
    # fetch_image gives a PIL image of ~256·28·28 px at the image's aspect ratio: no one side
    # length; score() batches through the processor itself.
    prep = JudgePreprocess(fetch_image, f"hpsv3-smart-resize-{PIXELS}px-bicubic", size=None)
    return Hpsv3Judge(
        spec.name, model, wid, prep, device, dtype, batch_size, source or spec.default_weights,
        processor=processor,
    )  # fmt: skip


register_judge(
    name=NAME,
    criterion="preference",
    description="HPSv3 (Qwen2-VL-7B reward model on HPDv3): μ of the preference score",
    load=load,
    default_weights=f"{HUB_REPO}/{HUB_FILE}",
    value_range=(float("-inf"), float("inf")),
)
