"""Full-size models with random weights, built from configs (no download), saved to folders.

The paper profile's models at their real size — SD1.5 (UNet 859.5 M, CLIP-L text encoder, VAE),
DINOv2-L/14, OpenCLIP ViT-L/14, ConvNeXt V2-L and VGG-19 — written in the layouts the real loaders
read (``load_base(folder)``, ``create_encoder(name, weights=folder)``), so the paper's code path
runs at full model size on a machine with neither a model hub nor a GPU: for the slow test and the
benchmarks. Each folder is built once (marker file last) and reused.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from t2ibench.fsutil import remove_inside

# facebook/dinov2-large's config.json.
DINOV2_L = dict(
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    mlp_ratio=4,
    patch_size=14,
    image_size=518,
    layerscale_value=1.0,
    layer_norm_eps=1e-6,
    qkv_bias=True,
)
DONE = "t2ibench-fullsize.json"


def _build_once(folder: Path, what: str, build: Callable[[Path], None], seed: int) -> Path:
    import torch

    folder = Path(folder)
    if (folder / DONE).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.build-"))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            build(tmp)
        (tmp / DONE).write_text(json.dumps({"model": what, "seed": seed, "weights": "random"}))
        if folder.exists() or folder.is_symlink():  # an unfinished build of ours
            remove_inside(folder, folder.parent)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def make_random_sd15(folder: Path, *, seed: int = 0) -> Path:
    """A diffusers ``StableDiffusionPipeline`` folder: SD1.5's bundled config tree, random fp32
    weights streamed to disk part by part (:func:`make_random_from_config_tree`)."""
    import torch

    from t2ibench.models.sd15 import sd15_config_folder

    return make_random_from_config_tree(
        folder, sd15_config_folder(), dtype=torch.float32, seed=seed
    )


def _write_random(model: Any, path: Path) -> None:
    """``model`` (built on the meta device) as random fp32 weights, seeded by ``_build_once``."""
    import torch

    write_random_safetensors(model, path, dtype=torch.float32, seed=torch.initial_seed())


def _empty(build: Callable[[], Any]) -> Any:
    """``build()`` with its parameters on the meta device (no memory, no initialisation)."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        return build()


def _dinov2(tmp: Path) -> None:
    from transformers import Dinov2Config

    Dinov2Config(**DINOV2_L).save_pretrained(tmp)
    _write_random(_meta_model("transformers", "Dinov2Model", tmp), tmp / "model.safetensors")


def _clip(tmp: Path) -> None:
    import open_clip

    from t2ibench.encoders.base import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    from t2ibench.encoders.clip import ARCH

    cfg = open_clip.get_model_config(ARCH)
    (tmp / "open_clip_config.json").write_text(
        json.dumps(
            {
                "model_cfg": cfg,
                "preprocess_cfg": {
                    "mean": list(OPENAI_CLIP_MEAN),
                    "std": list(OPENAI_CLIP_STD),
                    "interpolation": "bicubic",
                },
            }
        )
    )
    _write_random(_empty(lambda: open_clip.CLIP(**cfg)), tmp / "open_clip_model.safetensors")


def _convnext(tmp: Path) -> None:
    import timm
    from timm.models._hub import save_config_for_hf

    from t2ibench.encoders.convnext import DEFAULT_WEIGHTS

    # timm's hub layout, as save_for_hf writes it: config.json beside model.safetensors
    model = _empty(lambda: timm.create_model(DEFAULT_WEIGHTS, pretrained=False))
    save_config_for_hf(model, tmp / "config.json")
    _write_random(model, tmp / "model.safetensors")


def _vgg(tmp: Path) -> None:
    from torchvision.models import vgg19

    # torchvision's own state-dict layout, as a single file (what a converted checkpoint looks like).
    _write_random(_empty(lambda: vgg19(weights=None)), tmp / "vgg19.safetensors")


ENCODER_BUILDERS: dict[str, Callable[[Path], None]] = {
    "dinov2-l": _dinov2,
    "clip-l14": _clip,
    "convnextv2-l": _convnext,
    "vgg19": _vgg,
}


def make_random_encoder(name: str, folder: Path, *, seed: int = 0) -> str:
    """Build encoder ``name`` at full size with random weights; returns what ``weights=`` takes."""
    out = _build_once(Path(folder), name, ENCODER_BUILDERS[name], seed)
    return str(out / "vgg19.safetensors") if name == "vgg19" else str(out)


# --- the newer bases: built from a bundled published config tree, weights streamed to disk ---

#: A normal pool this long is drawn once per part; each tensor copies slices of it from seeded
#: offsets. ``Tensor.normal_`` over SDXL's 2.6 B weights takes about 20 s on one core; copying
#: slices takes about 1 s, and random weights only have to be finite and of a sane scale.
POOL = 1 << 22


def bundled_config_folder(name: str) -> Path:
    """``t2ibench/bases/configs/<name>``: a published diffusers config tree (no weights)."""
    return Path(__file__).resolve().parents[1] / "bases" / "configs" / name


def _model_class(library: str, class_name: str) -> Any:
    import importlib

    return getattr(importlib.import_module(library), class_name)


def _meta_model(library: str, class_name: str, config_dir: Path) -> Any:
    """The part built on the meta device: no memory, no initialisation; buffers stay real (SD3's
    sin-cos position table is a saved buffer)."""
    cls = _model_class(library, class_name)
    if library == "diffusers":
        return _empty(lambda: cls.from_config(cls.load_config(config_dir)))
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(config_dir)
    return _empty(lambda: cls(config))


def _safetensors_dtype(dtype: Any) -> str:
    import torch

    # integer buffers are written as they are (BatchNorm's ``num_batches_tracked``: FLUX.2's VAE)
    return {
        torch.float32: "F32",
        torch.bfloat16: "BF16",
        torch.float16: "F16",
        torch.int64: "I64",
        torch.int32: "I32",
        torch.bool: "BOOL",
    }[dtype]


def write_random_safetensors(model: Any, path: Path, *, dtype: Any, seed: int) -> int:
    """Stream ``model``'s state dict to a ``.safetensors`` file, one tensor in memory at a time:
    meta parameters become seeded normals (std 1/sqrt(fan in) for matrices and kernels; 1-D
    weights are norm scales, set to 1; biases 0) in ``dtype``; real buffers are written as they
    are. Returns the number of parameters written."""
    import math
    import struct

    import torch

    state = model.state_dict()
    # a transformers model's tied copies (Qwen3's ``lm_head`` of ``embed_tokens``) are left out,
    # as save_pretrained leaves them: the loader ties them to their source
    for target in getattr(model, "all_tied_weights_keys", None) or {}:
        state.pop(target, None)
    entries, offset = {}, 0
    for key, t in state.items():
        dt = dtype if t.is_meta else t.dtype
        n = t.numel() * torch.empty((), dtype=dt).element_size()
        entries[key] = {
            "dtype": _safetensors_dtype(dt),
            "shape": list(t.shape),
            "data_offsets": [offset, offset + n],
        }
        offset += n
    header = json.dumps({"__metadata__": {"format": "pt"}, **entries}).encode()
    header += b" " * (-len(header) % 8)
    gen = torch.Generator().manual_seed(seed)
    pool = torch.randn(POOL, generator=gen)
    count = 0
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        for key, t in state.items():
            if not t.is_meta:
                out = t.detach().contiguous()
            else:
                count += t.numel()
                out = torch.empty(t.shape, dtype=dtype)
                if t.ndim >= 2:
                    flat, std = out.view(-1), 1.0 / math.sqrt(t[0].numel())
                    for start in range(0, flat.numel(), POOL // 2):
                        chunk = flat[start : start + POOL // 2]
                        at = int(torch.randint(0, POOL - chunk.numel() + 1, (), generator=gen))
                        torch.mul(pool[at : at + chunk.numel()], std, out=chunk)
                else:
                    out.fill_(0.0 if key.endswith("bias") else 1.0)
            if out.numel():
                f.write(out.view(-1).view(torch.uint8).numpy())  # its buffer: no copy
            del out
    return count


def make_random_from_config_tree(
    folder: Path,
    configs: Path,
    *,
    dtype: Any,
    seed: int = 0,
    replace: dict[str, tuple[str, str, dict]] | None = None,
) -> Path:
    """A diffusers pipeline folder with random weights from the published config tree
    ``configs`` (``model_index.json`` and each part's config): each model part built on the meta
    device and streamed to disk (:func:`write_random_safetensors`), so the peak memory is one
    tensor, not the model; CLIP tokenizers written from the bundled BPE, a Qwen2 tokenizer as the
    tiny one of :func:`~t2ibench.models.tokenizer.write_qwen_tokenizer` (its ``model_max_length``
    from the tree's ``tokenizer_config.json``: the sequence length). ``replace``: part →
    (library, class, config dict) for a part built from another config (a small T5 where the
    published one would not fit in memory), with a CLIP tokenizer for its tokenizer."""
    from t2ibench.models.tokenizer import write_clip_tokenizer, write_qwen_tokenizer

    replace = dict(replace or {})

    def build(tmp: Path) -> None:
        index = json.loads((configs / "model_index.json").read_text())
        for k, (part, entry) in enumerate(sorted(index.items())):
            if not isinstance(entry, list) or entry[0] is None:
                continue
            library, class_name = entry
            src = configs / part
            if part.startswith("tokenizer") and class_name.startswith("Qwen2Tokenizer"):
                declared = json.loads((src / "tokenizer_config.json").read_text())
                write_qwen_tokenizer(tmp / part, max_length=declared["model_max_length"])
                continue
            if part.startswith("tokenizer"):
                write_clip_tokenizer(tmp / part)
                index[part] = ["transformers", "CLIPTokenizer"]
                continue
            if part == "scheduler":
                shutil.copytree(src, tmp / part)
                continue
            (tmp / part).mkdir(parents=True)
            if part in replace:
                library, class_name, cfg = replace[part]
                index[part] = [library, class_name]
                (tmp / part / "config.json").write_text(json.dumps(cfg, indent=2))
            else:
                shutil.copy(src / "config.json", tmp / part / "config.json")
            model = _meta_model(library, class_name, tmp / part)
            name = (
                "diffusion_pytorch_model.safetensors"
                if library == "diffusers"
                else "model.safetensors"
            )
            write_random_safetensors(model, tmp / part / name, dtype=dtype, seed=seed + k)
            del model
        (tmp / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True))

    return _build_once(folder, configs.name, build, seed)
