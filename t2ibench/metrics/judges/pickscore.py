"""PickScore (Kirstain et al. 2023, Pick-a-Pic): human preference for an image given its prompt.

The model is a CLIP ViT-H/14 (``transformers`` ``CLIPModel``) fine-tuned on Pick-a-Pic; its
preprocessing and tokenizer are LAION's CLIP-ViT-H-14 processor. Scoring as the reference inference
code (yuvalkirstain/PickScore ``README.md``, "Inference with PickScore"):

- processor ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` for images and text, text with
  ``padding=True, truncation=True, max_length=77`` (README lines 50, 53, 59-73);
- image and text features after the projection, each divided by its L2 norm (lines 78-82);
- score = ``logit_scale.exp()`` × the dot product (line 85); preference among candidate images
  of one prompt = softmax of their scores (line 88, :meth:`PickScoreJudge.preference`).

transformers 5 returns a model output from ``get_image_features``: its ``pooler_output`` is the
projected feature the README's (transformers 4.27) call returned.

Weights: ``weights=None`` loads ``yuvalkirstain/PickScore_v1`` with the LAION processor from the
hub cache; a local folder must hold both: ``config.json`` + ``model.safetensors`` of
PickScore_v1 and ``preprocessor_config.json`` + the tokenizer files of the LAION repo. Licence:
not established here (the code repository carries no licence file); see docs/judges.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from t2ibench.encoders.base import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    EncoderSpec,
    load_pretrained,
)
from t2ibench.errors import T2IBenchError
from t2ibench.metrics.judges._common import (
    JudgeEncoder,
    JudgePreprocess,
    judge_source,
    missing_judge_weights,
    register_judge,
)

NAME = "pickscore"
MODEL_REPO = "yuvalkirstain/PickScore_v1"
PROCESSOR_REPO = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
MAX_LENGTH = 77
WHERE = (
    f"put config.json + model.safetensors of {MODEL_REPO} and preprocessor_config.json + the "
    f"tokenizer files (vocab.json, merges.txt, tokenizer_config.json) of {PROCESSOR_REPO} in one "
    "folder"
)
#: A tiny CLIP with the real vocabulary, for tests and random-weight runs.
TINY_CONFIG: dict[str, Any] = {
    "text_config": {
        "vocab_size": 49408,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 77,
    },
    "vision_config": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 224,
        "patch_size": 14,
    },
    "projection_dim": 16,
}
#: The full-size architecture (ViT-H/14, PickScore_v1's config.json), for the cost benchmark.
FULL_CONFIG: dict[str, Any] = {
    "text_config": {
        "vocab_size": 49408,
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "max_position_embeddings": 77,
        "hidden_act": "gelu",
    },
    "vision_config": {
        "hidden_size": 1280,
        "intermediate_size": 5120,
        "num_hidden_layers": 32,
        "num_attention_heads": 16,
        "image_size": 224,
        "patch_size": 14,
        "hidden_act": "gelu",
    },
    "projection_dim": 1024,
}


class PickScoreJudge(JudgeEncoder):
    def __init__(self, *args: Any, processor: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.processor = processor

    def _texts(self, texts: list[str]) -> torch.Tensor:
        tokens = self.processor(
            text=texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
        ).to(self.device)
        feats = self.model.get_text_features(**tokens).pooler_output
        return feats / torch.norm(feats, dim=-1, keepdim=True)

    def _images(self, pixels: torch.Tensor) -> torch.Tensor:
        feats = self.model.get_image_features(pixel_values=pixels).pooler_output
        return feats / torch.norm(feats, dim=-1, keepdim=True)

    def _score_batch(self, pixels: torch.Tensor, texts: list[str]) -> torch.Tensor:
        image, text = self._images(pixels), self._texts(texts)
        return self.model.logit_scale.exp() * (image * text).sum(-1)

    def preference(self, images: list[Any], prompt: str) -> torch.Tensor:
        """Probability that each of ``images`` is preferred for ``prompt`` (softmax of scores)."""
        return torch.softmax(self.score(images, [prompt] * len(images)), dim=-1)


def write_clip_tokenizer(folder: Path) -> None:
    """CLIP's BPE tokenizer files (vocab.json, merges.txt) built from open_clip's shipped BPE
    vocabulary: the vocabulary OpenAI's and LAION's CLIP tokenizers use (open_clip
    ``tokenizer.py`` SimpleTokenizer: bytes, bytes + ``</w>``, the 48,894 merges, two specials)."""
    import gzip

    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    byte_chars = list(bytes_to_unicode().values())
    vocab = byte_chars + [v + "</w>" for v in byte_chars]
    vocab += ["".join(m.split()) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def build_random(folder: Path, config: dict[str, Any] = TINY_CONFIG) -> None:
    """A random-weight PickScore-architecture folder: model, LAION-style processor, tokenizer."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    CLIPModel(CLIPConfig(**config)).save_pretrained(folder)
    write_clip_tokenizer(folder)
    tokenizer = CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="<|endoftext|>"
    )
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 224},
        crop_size={"height": 224, "width": 224},
        image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD),
    )
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


def load_processor(source: str) -> Any:
    from transformers import CLIPProcessor

    path = Path(source).expanduser()
    # The hub repo has preprocessor_config.json; transformers 5 saves processor_config.json.
    names = ("preprocessor_config.json", "processor_config.json")
    if path.is_dir() and not any((path / n).is_file() for n in names):
        raise FileNotFoundError(f"no preprocessor_config.json in {path}")
    from t2ibench.fsutil import hub_offline

    return CLIPProcessor.from_pretrained(
        str(path) if path.is_dir() else source, local_files_only=path.is_dir() or hub_offline()
    )


def load(
    spec: EncoderSpec,
    weights: str | None,
    tiny: bool,
    preprocess: Any,
    device: Any,
    dtype: Any,
    batch_size: int,
    cache_dir: Path | None,
) -> PickScoreJudge:
    from transformers import CLIPModel

    source = judge_source(spec, weights, tiny, TINY_CONFIG, build_random, cache_dir, MODEL_REPO)
    try:
        model, wid = load_pretrained(CLIPModel, spec.name, source)
        processor = load_processor(source if Path(source).expanduser().is_dir() else PROCESSOR_REPO)
    except (T2IBenchError, OSError, ValueError) as exc:
        raise missing_judge_weights(spec.name, WHERE, exc.__cause__ or exc) from exc
    image_processor = processor.image_processor

    def pixels(image: Any) -> torch.Tensor:
        return image_processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"][0]

    prep = JudgePreprocess(pixels, f"clip-processor:{image_processor.to_json_string()}",
                           size=int(image_processor.crop_size["height"]))  # fmt: skip
    return PickScoreJudge(
        spec.name, model, wid, prep, device, dtype, batch_size, source, processor=processor
    )


register_judge(
    name=NAME,
    criterion="preference",
    description="PickScore v1 (CLIP ViT-H/14 on Pick-a-Pic): logit_scale × cos(image, prompt)",
    load=load,
    default_weights=MODEL_REPO,
    value_range=(-100.0, 100.0),
)
