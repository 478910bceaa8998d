"""IQA probes LIQE and MANIQA (KonIQ) on pyiqa's own architectures: one quality score per image, (n, 1).

Needs the ``iqa`` extra (``pip install "t2ibench[iqa]"``); pyiqa's code is under a non-commercial
licence (see the README). As in the paper's appendix H.2, images are resized so the short side is
512 px (``scale``, bicubic, values in [0, 1]; the networks normalise inside) and 10 patches are
scored per image. In eval mode both probes are deterministic in current pyiqa: LIQE takes 10 patches
at a fixed stride, MANIQA 10 uniformly spaced crops (``uniform_crop``; random crops only in training).
Each image is still scored on its own with the torch RNG reset to a fixed seed (in a forked RNG
state), so a score depends only on the image whatever pyiqa version samples.

The network is pyiqa's architecture class (``LIQE``, ``MANIQA`` with the options of pyiqa's
``liqe`` / ``maniqa`` configs), built without any download, and the weights are loaded by t2ibench,
never unpickled:

- ``weights=None``: pyiqa's default checkpoint for that config (``liqe_koniq.pt``,
  ``ckpt_koniq10k.pt``), from pyiqa's cache folder, downloaded once when not offline; read with
  ``torch.load(weights_only=True)``.
- ``weights=path``: a ``.safetensors`` file, or a ``.pt``/``.pth`` read with ``weights_only=True``,
  holding the network's state dict (optionally under ``"params"``, pyiqa's layout).

pyiqa would otherwise download OpenAI's CLIP ViT-B/32 (LIQE) and timm's ImageNet ViT-B/8 (MANIQA)
only to build the architecture (the checkpoints hold all their weights), read LIQE's text features
from a shared pickle cache, and unpickle the checkpoints (``weights_only=False``). Here the CLIP and
ViT architectures are built with random weights, LIQE's text features are computed from the loaded
weights, and nothing is written to pyiqa's cache.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
import tempfile
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from t2ibench.encoders.base import (
    Encoder,
    EncoderSpec,
    check_local_path,
    hub_offline,
    local_weights_id,
    missing_weights_error,
    plain_reason,
    stack_rows,
)
from t2ibench.encoders.init_skip import skipped_random_init, skipping
from t2ibench.errors import ConfigError, MissingExtraError, T2IBenchError

PATCH_SEED = 0
NUM_PATCHES = 10
# registry name → (pyiqa metric name, architecture option that sets the number of patches)
PYIQA_METRICS = {"liqe": ("liqe", "num_patch"), "maniqa": ("maniqa", "test_sample")}
# OpenAI CLIP ViT-B/32, the only backbone LIQE accepts (pyiqa's clip_model.build_model values).
CLIP_VIT_B32 = dict(
    embed_dim=512,
    image_resolution=224,
    vision_layers=12,
    vision_width=768,
    vision_patch_size=32,
    context_length=77,
    vocab_size=49408,
    transformer_width=512,
    transformer_heads=8,
    transformer_layers=12,
)


def import_pyiqa(module: str = "pyiqa") -> Any:
    """Import pyiqa (or one of its modules), or say which extra or dependency it needs."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == "pkg_resources":
            raise MissingExtraError(
                "pyiqa's LIQE imports openai-clip, which needs pkg_resources; setuptools ≥ 81 no "
                'longer ships it: pip install "setuptools<81" (the iqa extra pins it)'
            ) from exc
        raise MissingExtraError(
            'the IQA probes (liqe, maniqa) need pyiqa: pip install "t2ibench[iqa]" '
            f"(pyiqa is under a non-commercial licence; missing module {exc.name!r})"
        ) from exc
    except ImportError as exc:
        raise MissingExtraError(
            'the IQA probes (liqe, maniqa) need pyiqa: pip install "t2ibench[iqa]" '
            "(pyiqa is under a non-commercial licence)"
        ) from exc


class IqaProbe(Encoder):
    kind = "score"

    def __init__(
        self, *args: Any, seed: int = PATCH_SEED, num_patches: int = NUM_PATCHES, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.seed = seed
        self.num_patches = num_patches

    @property
    def preprocess_id(self) -> str:
        # Patch count and seed change the scores, so they belong in the cache key.
        return f"{self.preprocess.id}-patches{self.num_patches}-seed{self.seed}"

    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor:
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            return torch.as_tensor(self.model(pixels)).reshape(pixels.shape[0], 1)

    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Scores (n, 1); one image per forward pass so each sees the same seeded patch draw."""
        rows = []
        for image in images:
            x = self.preprocess(image).unsqueeze(0).to(self.device)
            rows.append(self._run(self._forward_images, x)[0])
        return stack_rows(rows, self.kind)  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------
# Building pyiqa's architectures without downloads
# --------------------------------------------------------------------------------------------------


def architecture(name: str) -> tuple[type[torch.nn.Module], dict[str, Any]]:
    """pyiqa's architecture class and constructor options for probe ``name`` (its pyiqa config),
    with pretrained loading switched off and the patch count set to :data:`NUM_PATCHES`."""
    import_pyiqa()
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    metric, patch_option = PYIQA_METRICS[name]
    if metric not in DEFAULT_CONFIGS:
        raise T2IBenchError(f"encoder {name}: this pyiqa has no metric {metric!r}")
    opts = dict(DEFAULT_CONFIGS[metric]["metric_opts"])
    module = import_pyiqa(f"pyiqa.archs.{name}_arch")  # liqe_arch, maniqa_arch
    cls = getattr(module, opts.pop("type"))
    opts.update({"pretrained": False, "pretrained_model_path": None, patch_option: NUM_PATCHES})
    return cls, opts


def default_checkpoint_url(name: str) -> str:
    """The URL pyiqa downloads the default weights of probe ``name`` from."""
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    cls, _ = architecture(name)
    urls = sys.modules[cls.__module__].default_model_urls
    opts = DEFAULT_CONFIGS[PYIQA_METRICS[name][0]]["metric_opts"]
    if name == "liqe":
        key = opts.get("pretrained") if isinstance(opts.get("pretrained"), str) else "koniq"
    else:
        key = opts.get("train_dataset", "pipal")
    return urls[key]


class _TimmArchitectureOnly:
    """``timm`` as MANIQA sees it: ``create_model(..., pretrained=True)`` builds the architecture
    only (MANIQA's checkpoint holds the ViT's weights; the ImageNet ones would be a download)."""

    def __init__(self, timm: Any) -> None:
        self._timm = timm

    def create_model(self, model_name: str, pretrained: bool = False, **kwargs: Any) -> Any:
        if skipping():  # the ViT's own init (timm's trunc_normal_): a checkpoint overwrites it
            kwargs.setdefault("weight_init", "skip")
        return self._timm.create_model(model_name, pretrained=False, **kwargs)

    def __getattr__(self, item: str) -> Any:
        return getattr(self._timm, item)


def _random_clip(name: str, device: Any = "cpu", **_: Any) -> torch.nn.Module:
    """LIQE's ``load(backbone, device)``: the CLIP ViT-B/32 architecture, float32, random weights."""
    from pyiqa.archs.clip_model import CLIP

    if name != "ViT-B/32":
        raise T2IBenchError(f"LIQE backbone {name!r}: only ViT-B/32 is supported")
    return CLIP(**CLIP_VIT_B32).to(device)


@contextlib.contextmanager
def _without_downloads(module: types.ModuleType, scratch: str) -> Iterator[None]:
    patches = {}
    if hasattr(module, "load"):  # LIQE: clip_model.load would fetch OpenAI's ViT-B/32
        patches["load"] = _random_clip
    if hasattr(module, "DEFAULT_CACHE_DIR"):  # LIQE: text features from a private folder
        patches["DEFAULT_CACHE_DIR"] = scratch
    if hasattr(module, "timm"):  # MANIQA: timm.create_model(..., pretrained=True)
        patches["timm"] = _TimmArchitectureOnly(module.timm)
    saved = {k: getattr(module, k) for k in patches}
    try:
        for k, v in patches.items():
            setattr(module, k, v)
        yield
    finally:
        for k, v in saved.items():
            setattr(module, k, v)


def build_network(name: str, seed: int = 0, *, random_init: bool = True) -> torch.nn.Module:
    """pyiqa's network for probe ``name`` with seeded random weights, built without any download;
    ``random_init=False``: zeros instead of random draws, for a checkpoint to fill every weight."""
    cls, opts = architecture(name)
    module = sys.modules[cls.__module__]
    with tempfile.TemporaryDirectory(prefix="t2ibench-iqa-") as scratch:
        with (
            torch.random.fork_rng(devices=[]),
            _without_downloads(module, scratch),
            contextlib.redirect_stdout(io.StringIO()),  # LIQE prints where it caches text features
            contextlib.nullcontext() if random_init else skipped_random_init(),
        ):
            torch.manual_seed(seed)
            net = cls(**opts)
    return net.eval()


def read_state_dict(file: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a ``torch.load(weights_only=True)`` file, unwrapped
    from pyiqa's ``"params"`` key and a ``module.`` (DataParallel) prefix. Never unpickles code."""
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(file))
    else:
        state = torch.load(file, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("params"), dict):
        state = state["params"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _default_weights_file(name: str) -> Path:
    """pyiqa's default checkpoint in pyiqa's cache folder, downloaded once unless offline."""
    from pyiqa.utils.download_util import DEFAULT_CACHE_DIR, load_file_from_url

    url = default_checkpoint_url(name)
    file = Path(DEFAULT_CACHE_DIR) / url.rsplit("/", 1)[-1]
    if file.is_file():
        return file
    if hub_offline():
        raise FileNotFoundError(f"{file} is not in pyiqa's cache (from {url})")
    return Path(load_file_from_url(url))


def _key_mismatch(net: torch.nn.Module, state: dict) -> tuple[list[str], list[str]]:
    want = set(net.state_dict())
    return sorted(want - set(state)), sorted(set(state) - want)


def load_network(name: str, source: str | None) -> tuple[torch.nn.Module, str]:
    """The probe's network with the weights of ``source`` (``None``: pyiqa's default) loaded
    safely; returns it and its weights id (a content hash of the checkpoint)."""
    label = source or f"pyiqa default {default_checkpoint_url(name)}"
    try:
        file = Path(source).expanduser() if source is not None else _default_weights_file(name)
    except Exception as exc:  # not in pyiqa's cache offline, URLError: fetch it or give a file
        raise missing_weights_error(name, label, exc) from exc
    if file.is_dir():
        raise T2IBenchError(f"encoder {name}: {file} is a folder; give the checkpoint file")
    try:
        state = read_state_dict(file)
    except Exception as exc:  # the file is there but unreadable: no download would help
        raise T2IBenchError(
            f"encoder {name}: {file} is not a checkpoint t2ibench reads safely "
            f"({plain_reason(exc)}); give a .safetensors file, or a .pt/.pth file that holds "
            "only tensors"
        ) from None
    net = build_network(name, random_init=False)  # the strict load below sets every weight
    missing, unexpected = _key_mismatch(net, state)
    if missing or unexpected:
        first = (missing or unexpected)[0]
        raise T2IBenchError(
            f"encoder {name}: {file} does not hold pyiqa's {name} network ({len(missing)} "
            f"weights missing, {len(unexpected)} unexpected, e.g. {first!r})"
        )
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # same names, other shapes
        raise T2IBenchError(
            f"encoder {name}: {file} does not fit pyiqa's {name} network ({plain_reason(exc)})"
        ) from None
    if hasattr(net, "joint_texts"):  # LIQE: text features of the loaded CLIP, not the random one
        with torch.no_grad():
            net.text_features = net.get_text_features(net.joint_texts)
    return net.eval(), local_weights_id(file)


def load(
    spec: EncoderSpec,
    weights: str | None,
    tiny: bool,
    preprocess: Any,
    device: Any,
    dtype: Any,
    batch_size: int,
    cache_dir: Path | None,
) -> IqaProbe:
    if tiny:
        raise ConfigError(
            f"tiny: the IQA probe {spec.name} has no tiny variant (pyiqa's architectures are "
            "full-size; pass weights= a local checkpoint)"
        )
    if weights is not None:
        check_local_path(spec.name, weights)
        if not Path(weights).expanduser().is_file():
            raise T2IBenchError(
                f"encoder {spec.name}: weights {weights!r} must be a local checkpoint file "
                "(.safetensors, or .pt/.pth loadable with torch.load(weights_only=True))"
            )
    model, wid = load_network(spec.name, weights)
    wid = f"pyiqa-{PYIQA_METRICS[spec.name][0]}:{wid}"
    return IqaProbe(
        spec.name,
        model,
        wid,
        preprocess,
        device,
        dtype,
        batch_size,
        weights or spec.default_weights,
    )


def _register() -> None:
    from t2ibench.encoders.registry import register_encoder

    for name, desc in (
        ("liqe", "LIQE (CLIP ViT-B/32 blind IQA, KonIQ), pyiqa architecture, 10 patches"),
        ("maniqa", "MANIQA trained on KonIQ-10k, pyiqa architecture, 10 uniform crops"),
    ):
        register_encoder(
            EncoderSpec(
                name=name,
                kind="score",
                default_weights=f"pyiqa:{PYIQA_METRICS[name][0]}",
                feature_desc="(n, 1) score",
                description=f"{desc} (iqa extra; pyiqa is non-commercial)",
                load=load,
                interpolation="bicubic",
                default_resize="scale",
                size=512,
                normalize=False,
            )
        )


_register()
