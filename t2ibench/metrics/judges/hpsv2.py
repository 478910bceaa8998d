"""HPSv2.1 (Wu et al. 2023, Human Preference Score v2): human preference for an image given its
prompt, an OpenCLIP ViT-H-14 fine-tuned on HPDv2.

Scoring as the reference (tgxs002/HPSv2, package ``hpsv2`` 1.2.0), restated here because the
package pins its own copy of open_clip and downloads on import paths:

- preprocessing ``preprocess_val`` of ``create_model_and_transforms(..., light_augmentation=True)``
  (``hpsv2/src/open_clip/factory.py`` lines 368-375: ``resize_longest_max=True``), i.e.
  ``transform.py`` lines 141-155: RGB, ``ToTensor`` (float in [0, 1]), ``ResizeMaxSize(224)``
  (lines 26-49: the long side to 224, bicubic on the float tensor, ``round`` of the scaled sides,
  zero padding split ``pad // 2`` left/top), then OpenAI CLIP mean/std;
- text: open_clip's CLIP tokenizer, context 77 (``img_score.py`` line 74, ``get_tokenizer``);
- score = image features · text features, both L2-normalised (``model.py`` lines 246-248
  ``encode_image/encode_text(normalize=True)``; ``img_score.py`` lines 79-81, the diagonal of
  ``image_features @ text_features.T``): a cosine, no logit scale.

Where the reference leaves an image whose long side is already 224 unpadded (then not square, and
its model refuses it), it is padded here like any other.

Weights: ``weights=None`` reads ``HPS_v2.1_compressed.pt`` of hub repo ``xswu/HPSv2`` from the hub
cache (``torch.load(weights_only=True)``, key ``state_dict``); a path: that ``.pt`` or a
``.safetensors`` of the same state dict, or a folder with ``open_clip_config.json`` and one weights
file. Licence: HPSv2 code and weights are Apache-2.0 (docs/judges.md).
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
    hub_offline,
)
from t2ibench.metrics.judges._common import (
    JudgeEncoder,
    JudgePreprocess,
    judge_source,
    local_weights_id,
    missing_judge_weights,
    read_state_dict,
    register_judge,
)

NAME = "hpsv2"
ARCH = "ViT-H-14"
HUB_REPO = "xswu/HPSv2"
HUB_FILE = "HPS_v2.1_compressed.pt"
SIZE = 224
WHERE = f"put {HUB_FILE} (hub repo {HUB_REPO}) or the same state dict as .safetensors in a folder"
TINY_MODEL_CFG: dict[str, Any] = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "head_width": 16, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def preprocess_image(image: Any, size: int = SIZE) -> torch.Tensor:
    """HPSv2's ``preprocess_val`` (module doc): float (3, size, size)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    x = F.to_tensor(image.convert("RGB"))
    height, width = x.shape[1:]
    scale = size / float(max(height, width))
    if scale != 1.0:
        new = tuple(round(d * scale) for d in (height, width))
        x = F.resize(x, list(new), InterpolationMode.BICUBIC)
    pad_h, pad_w = size - x.shape[1], size - x.shape[2]
    if pad_h or pad_w:
        x = F.pad(x, [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)
    return F.normalize(x, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)


class Hpsv2Judge(JudgeEncoder):
    def __init__(self, *args: Any, tokenizer: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tokenizer = tokenizer

    def _score_batch(self, pixels: torch.Tensor, texts: list[str]) -> torch.Tensor:
        image = self.model.encode_image(pixels, normalize=True)
        text = self.model.encode_text(self.tokenizer(texts).to(self.device), normalize=True)
        return (image * text).sum(-1)


def build_random(folder: Path, model_cfg: dict[str, Any] = TINY_MODEL_CFG) -> None:
    """A random-weight folder: ``open_clip_config.json`` + ``hpsv2.safetensors``."""
    import open_clip
    from safetensors.torch import save_file

    model = open_clip.CLIP(**model_cfg)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / "hpsv2.safetensors"))  # fmt: skip


def _weights_file(source: str | None) -> tuple[Path, dict[str, Any] | None]:
    """The weights file to read and the model config (None: open_clip's ViT-H-14)."""
    if source is None:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        found = try_to_load_from_cache(HUB_REPO, HUB_FILE)
        if isinstance(found, str):
            return Path(found), None
        if hub_offline():
            raise FileNotFoundError(f"{HUB_REPO}/{HUB_FILE} is not in the hub cache")
        return Path(hf_hub_download(HUB_REPO, HUB_FILE)), None
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES)
        if len(files) != 1:
            raise FileNotFoundError(f"expected one weights file in {path}, found {len(files)}")
        cfg_file = path / "open_clip_config.json"
        cfg = json.loads(cfg_file.read_text())["model_cfg"] if cfg_file.is_file() else None
        return files[0], cfg
    return path, None


def load_model(source: str | None) -> tuple[torch.nn.Module, Any, str]:
    """The HPSv2 model (open_clip ``CLIP``) with the weights of ``source``, its tokenizer, id."""
    import open_clip

    try:
        file, cfg = _weights_file(source)
        state = read_state_dict(file)
    except Exception as exc:  # missing file, hub miss, unpickling refused: one line
        raise missing_judge_weights(NAME, WHERE, exc) from exc
    cfg = cfg or open_clip.get_model_config(ARCH)
    model = open_clip.CLIP(**cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise missing_judge_weights(NAME, WHERE, exc) from exc
    tokenizer = open_clip.SimpleTokenizer(context_length=cfg["text_cfg"].get("context_length", 77))
    return model, tokenizer, local_weights_id(file)


def load(
    spec: EncoderSpec,
    weights: str | None,
    tiny: bool,
    preprocess: Any,
    device: Any,
    dtype: Any,
    batch_size: int,
    cache_dir: Path | None,
) -> Hpsv2Judge:
    source = judge_source(spec, weights, tiny, TINY_MODEL_CFG, build_random, cache_dir)
    model, tokenizer, wid = load_model(source)
    prep = JudgePreprocess(
        preprocess_image, "hpsv2-resize-max-224-bicubic-float-pad0-openai", size=SIZE
    )
    return Hpsv2Judge(
        spec.name, model, wid, prep, device, dtype, batch_size, source or spec.default_weights,
        tokenizer=tokenizer,
    )  # fmt: skip


register_judge(
    name=NAME,
    criterion="preference",
    description="HPSv2.1 (OpenCLIP ViT-H-14 on HPDv2): cos(image, prompt)",
    load=load,
    default_weights=f"{HUB_REPO}/{HUB_FILE}",
    value_range=(-1.0, 1.0),
)
