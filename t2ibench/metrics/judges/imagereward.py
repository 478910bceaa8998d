"""ImageReward (Xu et al. 2023, NeurIPS): human preference for an image given its prompt, a BLIP
(ViT-L/16 + BERT with cross-attention) whose [CLS] text state feeds an MLP head.

The package ``image-reward`` 1.5 does not import on transformers 5 (its ``models/BLIP/med.py``
line 31 imports ``apply_chunking_to_forward`` from ``transformers.modeling_utils``, gone), so the
model is rebuilt here from transformers' port of the same BLIP code: ``BlipVisionModel`` (BLIP's
``vit.py`` ViT) and ``BlipTextModel`` (BLIP's ``med.py`` BertModel; built with ``is_decoder=True``
for the cross-attention layers, run with ``is_decoder=False``: bidirectional self-attention, as
med.py's ``mode='multimodal'``). Conventions, from THUDM/ImageReward ``ImageReward/``:

- image: ``Resize(224, BICUBIC)`` of the shorter side on the PIL image, ``CenterCrop(224)``, RGB,
  ``ToTensor``, OpenAI CLIP mean/std (``ImageReward.py`` lines 30-37, 77);
- prompt: ``bert-base-uncased`` tokenizer plus the special tokens ``[DEC]`` (bos) and ``[ENC]``
  (``models/BLIP/blip.py`` lines 16-21), ``padding='max_length', truncation=True, max_length=35``
  (``ImageReward.py`` line 110); the ids go in as tokenised, ``[CLS]`` first (line 125);
- vision: ViT-L/16 at 224 (``blip.py`` lines 33-38: width 1024, depth 24, 16 heads; ``vit.py``
  line 138: LayerNorm eps 1e-6), all its tokens (after the final norm, ``vit.py`` line 188) are the
  cross-attention states, all attended (``ImageReward.py`` lines 121-130);
- text: the BERT of ``med_config.json`` with ``encoder_width`` = the ViT width
  (``blip_pretrain.py`` lines 35-37);
- head: ``last_hidden_state[:, 0, :]`` in float32 (line 132) through ``MLP(768)``: Linear
  768→1024→128→64→16→1, no activations, dropout inactive in eval (lines 40-68);
- scaling: ``(reward - 0.16717362830052426) / 1.0333394966054072`` (lines 80-81, 134).

Weights: one folder with ``ImageReward.pt`` (``torch.load(weights_only=True)``; or the same state
dict as ``.safetensors``) and ``med_config.json`` of hub repo ``THUDM/ImageReward`` and
``vocab.txt`` of ``google-bert/bert-base-uncased``; ``weights=None`` reads the three from the hub
cache. The checkpoint's keys are the reference's (``blip.visual_encoder.*``, ``blip.text_encoder.*``,
``mlp.layers.*``) and are renamed onto the transformers modules on load. Licence: Apache-2.0
(package ``image-reward`` metadata; docs/judges.md).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from t2ibench.encoders.base import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    EncoderSpec,
    hub_offline,
)
from t2ibench.metrics.judges._common import (
    JudgeEncoder,
    JudgePreprocess,
    judge_source,
    linked_folder,
    local_weights_id,
    missing_judge_weights,
    read_state_dict,
    register_judge,
)

NAME = "imagereward"
HUB_REPO = "THUDM/ImageReward"
HUB_FILE = "ImageReward.pt"
MED_CONFIG = "med_config.json"
TOKENIZER_REPO = "google-bert/bert-base-uncased"
VOCAB = "vocab.txt"
#: t2ibench's own file for a non-ViT-L vision tower (shrunken test models); absent: ViT-L/16.
VISION_CONFIG = "vision_config.json"
SIZE = 224
MAX_LENGTH = 35  # ImageReward.py line 110
REWARD_MEAN = 0.16717362830052426  # ImageReward.py line 80
REWARD_STD = 1.0333394966054072  # ImageReward.py line 81
WHERE = (
    f"put {HUB_FILE} and {MED_CONFIG} (hub repo {HUB_REPO}) and {VOCAB} (hub repo "
    f"{TOKENIZER_REPO}) in one folder"
)
#: BLIP's ViT-L/16 at 224 (blip.py lines 33-38, vit.py line 138).
VIT_LARGE: dict[str, Any] = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 16,
    "layer_norm_eps": 1e-6,
    "hidden_act": "gelu",
}
#: ImageReward's med_config.json (hub repo THUDM/ImageReward; train/src/config/med_config.json).
MED_LARGE: dict[str, Any] = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 512,
    "vocab_size": 30524,
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu",
    "pad_token_id": 0,
    "encoder_width": 768,
    "add_cross_attention": True,
}
TINY_CONFIG: dict[str, Any] = {
    "vision": {**VIT_LARGE, "hidden_size": 32, "intermediate_size": 128, "num_hidden_layers": 2,
               "num_attention_heads": 2},
    "text": {**MED_LARGE, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 2, "max_position_embeddings": 64, "vocab_size": 128},
}  # fmt: skip
#: The tiny test tokenizer's vocabulary: BERT's specials, letters and digits (as words and as
#: ``##`` pieces, so any lowercase word tokenises) and a few whole words.
TINY_WORDS = "a an the of on in at with photo dog cat red blue cube beach painting".split()


def preprocess_image(image: Any, size: int = SIZE) -> torch.Tensor:
    """ImageReward's ``_transform(224)`` (module doc): float (3, size, size)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    image = F.resize(image, size, InterpolationMode.BICUBIC)
    image = F.center_crop(image, [size, size]).convert("RGB")
    return F.normalize(F.to_tensor(image), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)


class ImageRewardModel(nn.Module):
    """BLIP vision tower + BLIP text encoder with cross-attention + ImageReward's MLP head; returns
    the raw reward (before the mean/std scaling), one per (image, text)."""

    def __init__(self, vision: dict[str, Any], med: dict[str, Any]) -> None:
        from transformers import BlipTextConfig, BlipTextModel, BlipVisionConfig, BlipVisionModel

        super().__init__()
        vision_config = BlipVisionConfig(**vision)
        text_fields = ("hidden_size", "intermediate_size", "num_hidden_layers",
                       "num_attention_heads", "max_position_embeddings", "vocab_size",
                       "layer_norm_eps", "hidden_act", "pad_token_id")  # fmt: skip
        text_config = BlipTextConfig(
            **{k: med[k] for k in text_fields if k in med},
            encoder_hidden_size=vision_config.hidden_size,  # blip_pretrain.py line 36
            is_decoder=True,  # builds the cross-attention layers; forward runs bidirectional
            bos_token_id=None,  # BLIP's [DEC] id, for generation only (not in med_config.json)
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        self.vision_model = BlipVisionModel(vision_config)
        self.text_encoder = BlipTextModel(text_config, add_pooling_layer=False)
        width = text_config.hidden_size
        self.mlp = nn.Module()
        self.mlp.layers = nn.Sequential(  # ImageReward.py lines 45-58; dropout is off in eval
            nn.Linear(width, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1),
        )  # fmt: skip

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        image_embeds = self.vision_model(pixel_values=pixel_values).last_hidden_state
        image_atts = torch.ones(
            image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device
        )
        text = self.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_atts,
            is_decoder=False,
        )
        return self.mlp.layers(text.last_hidden_state[:, 0, :].float()).squeeze(-1)


# --- the reference checkpoint's keys ↔ the transformers modules' ---------------------------------

_VISION_RENAMES = [
    (r"^cls_token$", "embeddings.class_embedding"),
    (r"^pos_embed$", "embeddings.position_embedding"),
    (r"^patch_embed\.proj\.", "embeddings.patch_embedding."),
    (r"^blocks\.(\d+)\.norm1\.", r"encoder.layers.\1.layer_norm1."),
    (r"^blocks\.(\d+)\.norm2\.", r"encoder.layers.\1.layer_norm2."),
    (r"^blocks\.(\d+)\.attn\.qkv\.", r"encoder.layers.\1.self_attn.qkv."),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"encoder.layers.\1.self_attn.projection."),
    (r"^blocks\.(\d+)\.mlp\.fc(\d)\.", r"encoder.layers.\1.mlp.fc\2."),
    (r"^norm\.", "post_layernorm."),
]


def from_reference_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reference checkpoint (``blip.visual_encoder.*`` of vit.py, ``blip.text_encoder.*`` of
    med.py, ``mlp.layers.*``) under :class:`ImageRewardModel`'s names; other keys (the unused
    ``blip.vision_proj``/``text_proj``, med.py's ``position_ids`` buffer) are dropped."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("blip.")
        if key.startswith("visual_encoder."):
            rest = key.removeprefix("visual_encoder.")
            for pattern, repl in _VISION_RENAMES:
                if re.match(pattern, rest):
                    out["vision_model." + re.sub(pattern, repl, rest)] = value
                    break
        elif key.startswith("text_encoder.") and not key.endswith("position_ids"):
            out[key] = value  # transformers' BlipText* keeps med.py's names
        elif key.startswith("mlp.layers."):
            out[key] = value
    return out


def to_reference_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`from_reference_keys` (for building random checkpoints)."""
    inverse = [
        (r"^embeddings\.class_embedding$", "cls_token"),
        (r"^embeddings\.position_embedding$", "pos_embed"),
        (r"^embeddings\.patch_embedding\.", "patch_embed.proj."),
        (r"^encoder\.layers\.(\d+)\.layer_norm(\d)\.", r"blocks.\1.norm\2."),
        (r"^encoder\.layers\.(\d+)\.self_attn\.qkv\.", r"blocks.\1.attn.qkv."),
        (r"^encoder\.layers\.(\d+)\.self_attn\.projection\.", r"blocks.\1.attn.proj."),
        (r"^encoder\.layers\.(\d+)\.mlp\.fc(\d)\.", r"blocks.\1.mlp.fc\2."),
        (r"^post_layernorm\.", "norm."),
    ]
    out = {}
    for key, value in state.items():
        if key.startswith("vision_model."):
            rest = key.removeprefix("vision_model.")
            for pattern, repl in inverse:
                if re.match(pattern, rest):
                    out["blip.visual_encoder." + re.sub(pattern, repl, rest)] = value
                    break
            else:
                raise KeyError(key)
        elif key.startswith("text_encoder."):
            out["blip." + key] = value
        else:
            out[key] = value
    return out


# --- loading ---------------------------------------------------------------------------------------


def make_tokenizer(vocab_file: Path) -> Any:
    """bert-base-uncased's WordPiece tokenizer from its ``vocab.txt``, with BLIP's two special
    tokens added (blip.py lines 17-19)."""
    from transformers import BertTokenizer

    words = vocab_file.read_text(encoding="utf-8").splitlines()
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tokenizer


def _hub_files() -> Path:
    """The three files from the hub cache (downloaded unless offline), linked into one folder."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    found = {}
    for repo, name in ((HUB_REPO, HUB_FILE), (HUB_REPO, MED_CONFIG), (TOKENIZER_REPO, VOCAB)):
        hit = try_to_load_from_cache(repo, name)
        if not isinstance(hit, str):
            if hub_offline():
                raise FileNotFoundError(f"{repo}/{name} is not in the hub cache")
            hit = hf_hub_download(repo, name)
        found[name] = Path(hit)
    return linked_folder(NAME, found)


def _weights_file(folder: Path) -> Path:
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".pt", ".pth"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one weights file in {folder}, found {len(files)}")
    return files[0]


def load_model(source: str | None) -> tuple[ImageRewardModel, Any, str]:
    """The model with the weights of folder ``source`` (None: the hub cache), its tokenizer, id."""
    try:
        folder = _hub_files() if source is None else Path(source).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder")
        for name in (MED_CONFIG, VOCAB):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"no {name} in {folder}")
        file = _weights_file(folder)
        state = from_reference_keys(read_state_dict(file, unwrap=("state_dict", "model")))
        med = json.loads((folder / MED_CONFIG).read_text())
        vision_file = folder / VISION_CONFIG
        vision = json.loads(vision_file.read_text()) if vision_file.is_file() else VIT_LARGE
        model = ImageRewardModel(vision, med)
        model.load_state_dict(state, strict=True)
        tokenizer = make_tokenizer(folder / VOCAB)
    except Exception as exc:  # missing file, hub miss, unpickling refused, wrong keys: one line
        raise missing_judge_weights(NAME, WHERE, exc) from exc
    return model, tokenizer, local_weights_id(file)


def build_random(folder: Path, config: dict[str, Any] = TINY_CONFIG) -> None:
    """A random-weight folder in the reference's layout: ``ImageReward.safetensors`` (the
    reference's keys), ``med_config.json``, ``vision_config.json`` and a tiny ``vocab.txt``."""
    from safetensors.torch import save_file

    model = ImageRewardModel(config["vision"], config["text"])
    with torch.no_grad():  # BLIP's own init leaves the vision tower near zero: randomise it all
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.normal_(1.0, 0.1)
                module.bias.normal_(0.0, 0.1)
            elif isinstance(module, nn.Linear | nn.Conv2d | nn.Embedding):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, fan_in**-0.5)
                if getattr(module, "bias", None) is not None:
                    module.bias.normal_(0.0, 0.1)
        emb = model.vision_model.embeddings
        emb.class_embedding.normal_(0.0, 0.5)
        emb.position_embedding.normal_(0.0, 0.5)
    state = {k: v.contiguous() for k, v in to_reference_keys(model.state_dict()).items()}
    save_file(state, str(folder / "ImageReward.safetensors"))
    (folder / MED_CONFIG).write_text(json.dumps(config["text"]))
    (folder / VISION_CONFIG).write_text(json.dumps(config["vision"]))
    specials = (
        ["[PAD]"] + [f"[unused{i}]" for i in range(3)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789,.'-!?")
    vocab = specials + chars + ["##" + c for c in chars] + TINY_WORDS
    if len(vocab) > config["text"]["vocab_size"] - 2:  # room for [DEC] and [ENC]
        raise ValueError("tiny vocabulary larger than the config's vocab_size")
    (folder / VOCAB).write_text("\n".join(vocab) + "\n")


class ImageRewardJudge(JudgeEncoder):
    def __init__(self, *args: Any, tokenizer: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tokenizer = tokenizer

    def _score_batch(self, pixels: torch.Tensor, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            texts, padding="max_length", truncation=True, max_length=MAX_LENGTH,
            return_tensors="pt",
        ).to(self.device)  # fmt: skip
        raw = self.model(pixels, tokens["input_ids"], tokens["attention_mask"])
        return (raw - REWARD_MEAN) / REWARD_STD


def load(
    spec: EncoderSpec,
    weights: str | None,
    tiny: bool,
    preprocess: Any,
    device: Any,
    dtype: Any,
    batch_size: int,
    cache_dir: Path | None,
) -> ImageRewardJudge:
    source = judge_source(spec, weights, tiny, TINY_CONFIG, build_random, cache_dir)
    model, tokenizer, wid = load_model(source)
    prep = JudgePreprocess(
        preprocess_image, "imagereward-resize224-bicubic-centercrop-openai", size=SIZE
    )
    return ImageRewardJudge(
        spec.name, model, wid, prep, device, dtype, batch_size, source or spec.default_weights,
        tokenizer=tokenizer,
    )  # fmt: skip


register_judge(
    name=NAME,
    criterion="preference",
    description="ImageReward v1.0 (BLIP ViT-L + BERT cross-attention, MLP head): standardised reward",
    load=load,
    default_weights=f"{HUB_REPO}/{HUB_FILE}",
    value_range=(float("-inf"), float("inf")),
)
