"""Encoder base class, the encoder spec, and the shared image preprocessing.

Preprocessing is one code path for every encoder, so the four resize modes mean exactly the same
geometry whatever the model:

- ``scale``: the short side becomes ``size``, the aspect ratio is kept (output is not square).
- ``letterbox``: the long side becomes ``size``, then black (0) padding centres it in a square.
- ``center-crop``: the short side becomes ``size``, then the central ``size``×``size`` is kept.
- ``stretch``: resized to ``size``×``size`` ignoring the aspect ratio.

Library: ``torchvision.transforms.v2.functional`` on uint8 CHW tensors (``resize`` with
``antialias=True``, ``pad``, ``center_crop``); interpolation is the real model's own (bicubic for
DINOv2, OpenCLIP and ConvNeXt V2, bilinear for torchvision's VGG-19). Images are converted to 8-bit
RGB first by :func:`t2ibench.images.to_rgb` (16-bit scaled, transparency composited on white). Then
pixels become float in [0, 1] and are normalised with the model's mean/std (padding is black *before* normalisation, as in the paper's letterbox).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image

from t2ibench.errors import ConfigError, T2IBenchError
from t2ibench.fsutil import atomic_folder, cache_root, file_sha256, hub_offline

RESIZE_MODES: tuple[str, ...] = ("scale", "letterbox", "center-crop", "stretch")
ENCODER_KINDS: tuple[str, ...] = ("image", "image-text", "gram", "score")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

Features = torch.Tensor | list[torch.Tensor]


# --------------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------------


def resized_size(width: int, height: int, mode: str, size: int) -> tuple[int, int]:
    """(width, height) of the image after the resize step of ``mode`` (before pad or crop)."""
    if mode == "stretch":
        return size, size
    if mode == "center-crop":
        # torchvision's ``Resize(size)`` rule, which CLIP's and DINO's own transforms use: the long
        # side is truncated, not rounded (80×60 → 298×224), so the crop sees their pixels.
        if width <= height:
            return size, int(size * height / width)
        return int(size * width / height), size
    if mode == "scale":
        short = min(width, height)
        factor = size / short
    elif mode == "letterbox":
        factor = size / max(width, height)
    else:
        raise ConfigError(
            f"resize: unknown mode {mode!r}; expected one of {', '.join(RESIZE_MODES)}"
        )
    return max(1, round(width * factor)), max(1, round(height * factor))


def resize_image(
    image: Image.Image, mode: str, size: int = 224, interpolation: str = "bicubic"
) -> torch.Tensor:
    """Apply one resize mode; returns a uint8 (3, H, W) tensor (square except for ``scale``)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    if mode not in RESIZE_MODES:
        raise ConfigError(
            f"resize: unknown mode {mode!r}; expected one of {', '.join(RESIZE_MODES)}"
        )
    interp = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR}[
        interpolation
    ]
    from t2ibench.images import to_rgb

    x = F.pil_to_tensor(to_rgb(image))  # 16-bit scaled, transparency composited on white
    height, width = x.shape[-2:]
    new_w, new_h = resized_size(width, height, mode, size)
    if (new_w, new_h) != (width, height):
        x = F.resize(x, [new_h, new_w], interpolation=interp, antialias=True)
    if mode == "letterbox":
        left, top = (size - new_w) // 2, (size - new_h) // 2
        x = F.pad(x, [left, top, size - new_w - left, size - new_h - top], fill=0)
    elif mode == "center-crop":
        x = F.center_crop(x, [size, size])
    return x


@dataclass(frozen=True)
class Preprocess:
    """Resize mode + size + interpolation + normalisation; ``id`` names all of it (cache key part)."""

    resize: str
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ConfigError(
                f"resize: unknown mode {self.resize!r}; expected one of {', '.join(RESIZE_MODES)}"
            )
        if self.interpolation not in ("bicubic", "bilinear"):
            raise ConfigError(f"interpolation: unknown {self.interpolation!r}")

    @property
    def id(self) -> str:
        norm = (
            "mean"
            + ",".join(f"{v:.6g}" for v in self.mean)
            + "-std"
            + ",".join(f"{v:.6g}" for v in self.std)
            if self.normalize
            else "unit-range"
        )
        # "-tvsize": center-crop follows torchvision's Resize size rule (a new cache key).
        rule = "tvsize-" if self.resize == "center-crop" else ""
        return f"{self.resize}-{self.size}-{rule}{self.interpolation}-antialias-tv2-{norm}"

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """PIL image → float32 (3, H, W), resized and normalised."""
        x = resize_image(image, self.resize, self.size, self.interpolation).float().div_(255.0)
        if self.normalize:
            mean = torch.tensor(self.mean).view(3, 1, 1)
            std = torch.tensor(self.std).view(3, 1, 1)
            x = (x - mean) / std
        return x


# --------------------------------------------------------------------------------------------------
# Weights: offline handling, fingerprints, tiny-model folders
# --------------------------------------------------------------------------------------------------


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def plain_reason(exc: BaseException) -> str:
    """``exc`` as one plain line: its type and first line, terminal colour codes removed (torch's
    unpickling errors carry ANSI escapes and advice to disable its safety check)."""
    text = _ANSI.sub("", str(exc)).strip()
    first = text.splitlines()[0].strip() if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def missing_weights_error(
    encoder: str, source: str, exc: BaseException | None = None
) -> T2IBenchError:
    """The one error for weights that cannot be found (offline hub, bad path): one plain line,
    with the command-line way to give local weights (``--encoders NAME@/path``)."""
    why = f" ({plain_reason(exc)})" if exc else ""
    offline = (
        " HF_HUB_OFFLINE is set, so only the local cache is searched." if hub_offline() else ""
    )
    return T2IBenchError(
        f"encoder {encoder}: cannot load weights {source!r}{why}.{offline} Download them once on a "
        f"machine with network access, or pass a local path: --encoders {encoder}@/path/to/weights "
        '(in Python: weights="/path/to/weights").'
    )


def check_local_path(encoder: str, source: str) -> None:
    """A source that is clearly a path (not a hub id) must exist: say so instead of a hub error."""
    looks_like_path = source.startswith(("/", "./", "../", "~", "\\")) or Path(source).suffix in (
        ".safetensors",
        ".bin",
        ".pth",
        ".pt",
        ".ckpt",
    )
    if looks_like_path and not Path(source).expanduser().exists():
        raise T2IBenchError(
            f"encoder {encoder}: weights path {source} does not exist (give an existing folder or "
            f"checkpoint file, or a hub id)"
        )


def local_weights_id(
    path: Path, patterns: Sequence[str] = ("*.safetensors", "*.bin", "*.pth", "*.pt", "*.json")
) -> str:
    """Content id of local weights: sha256 over the file (or the folder's weight and config files).

    Content, not the path, so moving a folder keeps its cached features valid.
    """
    path = Path(path)
    files = [path] if path.is_file() else sorted({p for pat in patterns for p in path.glob(pat)})
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\0" + file_sha256(p, memo=True).encode() + b"\0")
    return f"sha256:{h.hexdigest()[:16]}"


_SNAPSHOT = re.compile(r"[\\/]snapshots[\\/]([0-9a-f]{40})[\\/]")


def hub_weights_id(repo_id: str, filenames: Sequence[str]) -> str:
    """``repo@commit`` of a hub checkpoint already in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str):
            m = _SNAPSHOT.search(found)
            if m:
                return f"{repo_id}@{m.group(1)}"
            return f"{repo_id}@{local_weights_id(Path(found))}"
    return f"{repo_id}@unknown-revision"


def load_pretrained(
    model_cls: Any, encoder: str, source: str, **kwargs: Any
) -> tuple[torch.nn.Module, str]:
    """A transformers model (``model_cls.from_pretrained``) from a hub id or a local
    ``save_pretrained`` folder, in float32, and its weights id (``repo@commit``, or a content hash
    of the local files); a missing model is :func:`missing_weights_error` naming ``encoder``."""
    check_local_path(encoder, source)
    path = Path(source).expanduser()
    local = path.is_dir()
    try:
        model = model_cls.from_pretrained(
            str(path) if local else source,
            local_files_only=local or hub_offline(),
            dtype=torch.float32,
            **kwargs,
        )
    except (OSError, ValueError) as exc:
        raise missing_weights_error(encoder, source, exc) from exc
    if local:
        return model, local_weights_id(path)
    commit = getattr(model.config, "_commit_hash", None)
    if commit:
        return model, f"{source}@{commit}"
    return model, hub_weights_id(source, ["model.safetensors", "pytorch_model.bin"])


def tiny_folder(
    name: str, config: dict[str, Any], build: Callable[[Path], None], cache_dir: Path | None = None
) -> Path:
    """Folder holding a tiny random-weight model; built once (seeded, atomically) and reused.

    ``build(tmp)`` writes the model into ``tmp``; the folder appears under its final name only when
    complete (``os.replace``), so an interrupted build never leaves a half-written model.
    """
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "tiny-encoders"
    final = root / f"{name}-{digest}"
    if final.is_dir():
        return final
    with atomic_folder(final, Path.is_dir) as tmp, torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        build(tmp)
    return final


def weights_source(
    spec: Any,
    weights: str | None,
    tiny: bool,
    tiny_config: dict[str, Any],
    build_tiny: Callable[[Path], None],
    cache_dir: Path | None,
) -> str:
    """What a family's loader reads: the tiny model's folder, the given weights, or the default."""
    if tiny:
        return str(tiny_folder(spec.name, tiny_config, build_tiny, cache_dir))
    return weights or spec.default_weights


# --------------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------------


def resolve_dtype(device: torch.device, dtype: torch.dtype | str | None) -> torch.dtype | None:
    """Autocast dtype: bf16 (or fp16 where bf16 is unsupported) on CUDA by default, none on CPU."""
    if isinstance(dtype, str):
        names = {"fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
                 "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
                 "fp32": torch.float32, "float32": torch.float32}  # fmt: skip
        if dtype not in names:
            raise ConfigError(f"dtype: unknown {dtype!r}; expected one of {', '.join(names)}")
        dtype = names[dtype]
    if device.type != "cuda":
        if dtype not in (None, torch.float32):
            raise ConfigError(f"dtype: {dtype} autocast is only used on CUDA; CPU runs in float32")
        return None
    if dtype is None:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None if dtype == torch.float32 else dtype


class Encoder:
    """A loaded model plus its preprocessing; turns PIL images (and texts) into feature tensors.

    Subclasses implement ``_forward_images`` (and ``_forward_texts`` for image-text encoders).
    ``forward_passes`` counts model calls, so callers (and tests) can see work the cache skipped.
    """

    kind: ClassVar[str] = "image"

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        weights_id: str,
        preprocess: Preprocess,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str | None = None,
        batch_size: int = 32,
        source: str = "",
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size: must be ≥ 1, got {batch_size}")
        self.name = name
        self.device = torch.device(device)
        self.autocast_dtype = resolve_dtype(self.device, dtype)
        self.model = model.eval().requires_grad_(False).to(self.device)
        self.weights_id = weights_id
        self.preprocess = preprocess
        self.batch_size = batch_size
        self.source = source
        self.forward_passes = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, weights_id={self.weights_id!r}, preprocess_id={self.preprocess_id!r})"

    @property
    def preprocess_id(self) -> str:
        return self.preprocess.id

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        autocast = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            yield

    def _forward_images(self, pixels: torch.Tensor) -> Features:
        raise NotImplementedError

    def _forward_texts(self, texts: list[str]) -> torch.Tensor:
        raise T2IBenchError(f"encoder {self.name} ({self.kind}) has no text tower")

    def _run(self, fn: Callable[[Any], Features], batch: Any) -> Features:
        self.forward_passes += 1
        with self._inference():
            out = fn(batch)
        if isinstance(out, torch.Tensor):
            return out.float().cpu()
        return [t.float().cpu() for t in out]

    def encode_images(self, images: Sequence[Image.Image]) -> Features:
        """Features of ``images`` in input order: (n, d) float32 on CPU; Gram encoders: 5 × (n, C, C).

        Images are batched ``batch_size`` at a time among those of the same preprocessed shape
        (only ``scale`` makes shapes differ).
        """
        pixels = [self.preprocess(im) for im in images]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, p in enumerate(pixels):
            groups.setdefault(tuple(p.shape), []).append(i)
        rows: list[Features | None] = [None] * len(pixels)
        for idx in groups.values():
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start : start + self.batch_size]
                batch = torch.stack([pixels[i] for i in chunk]).to(self.device)
                out = self._run(self._forward_images, batch)
                for j, i in enumerate(chunk):
                    rows[i] = out[j] if isinstance(out, torch.Tensor) else [t[j] for t in out]
        return stack_rows(rows, self.kind)  # type: ignore[arg-type]

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Text features (n, d) float32 on CPU, in the same space as the image features."""
        if self.kind != "image-text":
            raise T2IBenchError(f"encoder {self.name} ({self.kind}) has no text tower")
        texts = list(texts)
        outs = [
            self._run(self._forward_texts, texts[s : s + self.batch_size])
            for s in range(0, len(texts), self.batch_size)
        ]
        return torch.cat(outs) if outs else torch.empty(0, 0)  # type: ignore[arg-type]


def stack_rows(rows: Sequence[Features], kind: str) -> Features:
    """Per-image rows → the batched return type (a tensor, or one tensor per layer for Grams)."""
    if kind == "gram":
        if not rows:
            return []
        return [torch.stack([r[layer] for r in rows]) for layer in range(len(rows[0]))]
    if not rows:
        return torch.empty(0, 0)
    return torch.stack(list(rows))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Spec
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncoderSpec:
    """A registry entry: what an encoder is, and how to build it.

    ``load(spec, weights, tiny, preprocess, device, dtype, batch_size, cache_dir)`` returns an Encoder;
    ``weights=None`` means ``default_weights``. ``family`` names the kind of model the encoder is or
    stands in for (``dino``, ``clip``, ``convnext``, ``vgg``; a toy encoder names the family it
    imitates): where a run lacks the encoder a metric names, the analysis reads the metric on an
    encoder of the same family (DINO-like for fidelity and diversity), never on the first by name.
    """

    name: str
    kind: str
    default_weights: str
    feature_desc: str
    description: str
    load: Callable[..., Encoder] = field(repr=False)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"
    default_resize: str = "letterbox"
    size: int = 224
    square_only: bool = False  # a fixed position embedding cannot take ``scale``'s rectangles
    normalize: bool = True
    family: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ENCODER_KINDS:
            raise ValueError(f"encoder {self.name}: kind must be one of {ENCODER_KINDS}")
