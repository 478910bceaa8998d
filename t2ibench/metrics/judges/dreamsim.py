"""DreamSim (Fu et al., NeurIPS 2023): perceptual distance between a generated image and the
concept's reference images, the ensemble of DINO ViT-B/16, CLIP ViT-B/16 and OpenCLIP ViT-B/16
fine-tuned with LoRA on NIGHTS human similarity judgements.

The ``dreamsim`` package (0.2.1, MIT) installs beside our pins and is used as it is: its
``PerceptualModel`` embeds an image (``model.py`` ``embed``: each backbone's feature, concatenated,
then ``normalize_embedding``, lines 311-313: minus its mean, divided by its norm), its distance is
``1 - cosine`` of two embeddings (``forward``, line 96), and its preprocessing is
``Resize((224, 224), bicubic)`` + ``ToTensor`` (``dreamsim()``, lines 297-305). The metric is the
mean distance over all (generated, reference) pairs — 1 − the mean cosine of the embeddings —
lower is better.

Only the loading is t2ibench's: the package builds its DINO backbone with
``torch.hub.load("facebookresearch/dino:main", "dino_vitb16")`` (code and weights from the
network); here that call returns the package's own copy of DINO's ``vit_base(patch_size=16)``
(``feature_extraction/vision_transformer.py``) loaded from ``dino_vitbase16_pretrain.pth`` in the
weights folder with ``torch.load(weights_only=True)``, as DINO's hubconf loads it. The folder is
the unzipped DreamSim ensemble release (``dino_vitb16_pretrain.pth``,
``clip_vitb16_pretrain.pth.tar``, ``open_clip_vitb16_pretrain.pth.tar``, ``ensemble_lora/``) plus
that DINO file. A folder with ``t2ibench_dreamsim.json`` holds a shrunken random-weight variant
(tests and tiny runs): the same classes at a smaller width.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from t2ibench.encoders.base import Encoder, EncoderSpec, local_weights_id, tiny_folder
from t2ibench.errors import MissingExtraError, T2IBenchError
from t2ibench.metrics.inputs import EvalContext, InputProvider, register_input_provider
from t2ibench.metrics.judges._common import JudgePreprocess, missing_judge_weights
from t2ibench.metrics.registry import MetricSpec, register_metric
from t2ibench.metrics.similarity import ImageSimilarity, image_similarity

NAME = "dreamsim"
DINO_FILE = "dino_vitbase16_pretrain.pth"
RELEASE_FILES = (
    "dino_vitb16_pretrain.pth",
    "clip_vitb16_pretrain.pth.tar",
    "open_clip_vitb16_pretrain.pth.tar",
    "ensemble_lora/adapter_config.json",
)
WHERE = (
    "unzip DreamSim's dreamsim_ensemble_checkpoint.zip (github.com/ssundaram21/dreamsim, release "
    f"v0.2.0-checkpoints) into a folder and add DINO's ViT-B/16 weights {DINO_FILE} "
    "(dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/) to it"
)
SHRUNK_FILE = "t2ibench_dreamsim.json"
#: The shrunken architecture: 12 blocks (DreamSim reads block 11), width 32.
TINY_ARCH: dict[str, Any] = {"embed_dim": 32, "num_heads": 2, "mlp_ratio": 2}


def import_dreamsim() -> Any:
    try:
        import dreamsim
        import dreamsim.model  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(
            'the dreamsim judge needs the dreamsim package: pip install "t2ibench[judges]"'
        ) from exc
    return dreamsim


@contextlib.contextmanager
def _architecture(arch: dict[str, Any] | None) -> Iterator[Any]:
    """The package's ``vit_base`` (or a shrunken one where ``arch`` is given) wherever it is
    looked up, yielding the constructor."""
    import functools

    from dreamsim.feature_extraction import load_clip_as_dino as lc
    from dreamsim.feature_extraction import load_open_clip_as_dino as lo
    from dreamsim.feature_extraction import vision_transformer as vits

    original = vits.vit_base
    if arch is None:
        yield original
        return

    def shrunk(patch_size: int = 16, **kwargs: Any) -> Any:
        return vits.VisionTransformer(
            patch_size=patch_size, depth=12, qkv_bias=True,
            norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6), **arch, **kwargs,
        )  # fmt: skip

    saved = (lc.vit_base, lo.vit_base)
    lc.vit_base = lo.vit_base = vits.vit_base = shrunk
    try:
        yield shrunk
    finally:
        vits.vit_base = original
        lc.vit_base, lo.vit_base = saved


@contextlib.contextmanager
def offline_dino(folder: Path, arch: dict[str, Any] | None) -> Iterator[None]:
    """``torch.hub.load`` of DINO's ViT-B/16 answered from ``folder`` (see the module doc); the
    hub directory the package sets is restored afterwards."""
    import torch.hub

    saved_load, saved_dir = torch.hub.load, torch.hub.get_dir()
    with _architecture(arch) as vit_base:

        def load(repo: str, model: str, *args: Any, **kwargs: Any) -> torch.nn.Module:
            if (repo, model) != ("facebookresearch/dino:main", "dino_vitb16"):
                raise T2IBenchError(f"dreamsim: no offline stand-in for torch.hub {repo} {model}")
            net = vit_base(patch_size=16, num_classes=0)  # DINO hubconf.py dino_vitb16
            state = torch.load(folder / DINO_FILE, map_location="cpu", weights_only=True)
            net.load_state_dict(state, strict=True)
            return net

        torch.hub.load = load
        try:
            yield
        finally:
            torch.hub.load = saved_load
            torch.hub.set_dir(saved_dir)


def load_perceptual_model(folder: Path, device: Any = "cpu") -> tuple[torch.nn.Module, Any]:
    """DreamSim's ensemble model and preprocessing from ``folder``, without network access."""
    dreamsim = import_dreamsim()
    missing = [f for f in (DINO_FILE, *RELEASE_FILES) if not (folder / f).exists()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}")
    shrunk = folder / SHRUNK_FILE
    arch = json.loads(shrunk.read_text()) if shrunk.is_file() else None
    with offline_dino(folder, arch), contextlib.redirect_stdout(io.StringIO()):
        model, preprocess = dreamsim.dreamsim(
            pretrained=True, device=str(device), cache_dir=str(folder), dreamsim_type="ensemble"
        )
    return model, preprocess


def build_random(folder: Path, arch: dict[str, Any] = TINY_ARCH) -> None:
    """A random-weight DreamSim ensemble folder in the release's layout (shrunken to ``arch``)."""
    import_dreamsim()
    from dreamsim.config import dreamsim_args
    from dreamsim.model import PerceptualModel
    from peft import LoraConfig, get_peft_model

    (folder / SHRUNK_FILE).write_text(json.dumps(arch))
    d = arch["embed_dim"]
    with _architecture(arch) as vit_base:
        torch.save(vit_base(patch_size=16, num_classes=0).state_dict(), folder / DINO_FILE)
        head = {"module.head.mlp.0.weight": (2048, d), "module.head.mlp.0.bias": (2048,),
                "module.head.mlp.2.weight": (2048, 2048), "module.head.mlp.2.bias": (2048,),
                "module.head.mlp.4.weight": (256, 2048), "module.head.mlp.4.bias": (256,),
                "module.head.last_layer.weight": (2048, 256)}  # fmt: skip
        student = {k: torch.randn(shape) * 0.02 for k, shape in head.items()}
        torch.save({"student": student}, folder / "dino_vitb16_pretrain.pth")
        for name in ("clip_vitb16_pretrain.pth.tar", "open_clip_vitb16_pretrain.pth.tar"):
            vit = vit_base(patch_size=16)
            vit.pos_drop = torch.nn.LayerNorm(d)
            state = dict(vit.state_dict())
            state["proj"] = torch.randn(d, 512) * d**-0.5
            torch.save({"state_dict": state}, folder / name)
    with offline_dino(folder, arch), contextlib.redirect_stdout(io.StringIO()):
        base = PerceptualModel(**dreamsim_args["model_config"]["ensemble"], device="cpu",
                               load_dir=str(folder), normalize_embeds=True)  # fmt: skip
        lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias="none",
                          target_modules=["qkv"], init_lora_weights=False)  # fmt: skip
        get_peft_model(base, lora).save_pretrained(str(folder / "ensemble_lora"))


class DreamSimEncoder(Encoder):
    """Normalised DreamSim embeddings (n, 1792): their cosine is 1 − the DreamSim distance."""

    kind = "image"

    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.embed(pixels).reshape(pixels.shape[0], -1)


def load(
    spec: EncoderSpec,
    weights: str | None,
    tiny: bool,
    preprocess: Any,
    device: Any,
    dtype: Any,
    batch_size: int,
    cache_dir: Path | None,
) -> DreamSimEncoder:
    if tiny:
        folder = tiny_folder(spec.name, TINY_ARCH, build_random, cache_dir)
    elif weights is None:
        raise missing_judge_weights(spec.name, WHERE)
    else:
        folder = Path(weights).expanduser()
    try:
        model, ds_preprocess = load_perceptual_model(folder, device)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise missing_judge_weights(spec.name, WHERE, exc) from exc
    prep = JudgePreprocess(
        lambda im: ds_preprocess(im)[0], "dreamsim-resize224-bicubic-unit", size=224
    )
    wid = local_weights_id(folder, ("*.pth", "*.tar", "*.json", "ensemble_lora/*"))
    return DreamSimEncoder(spec.name, model, wid, prep, device, dtype, batch_size, str(folder))


def dreamsim_distance(judge_gen: torch.Tensor, judge_ref: torch.Tensor) -> float:
    """Mean DreamSim distance over all (generated, reference) pairs: 1 − the mean cosine."""
    return 1.0 - image_similarity(judge_gen, judge_ref)


class DreamSimDistance(ImageSimilarity):
    """Streaming :func:`dreamsim_distance`."""

    def update(self, judge_gen: torch.Tensor | None = None, judge_ref: torch.Tensor | None = None):  # type: ignore[override]
        super().update(gen=judge_gen, ref=judge_ref)

    def compute(self) -> float:
        return 1.0 - super().compute()


# --- the judge's own image inputs (its embeddings only, never another encoder's) ------------------


def _own_generated(ctx: EvalContext) -> torch.Tensor:
    from t2ibench.encoders import encode_images_cached

    return ctx.once("judge_generated", lambda: encode_images_cached(ctx.encoder, ctx.image_paths,
                                                                    ctx.cache))  # fmt: skip


def _own_reference(ctx: EvalContext) -> torch.Tensor:
    from t2ibench.encoders import encode_images_cached

    paths = [im.path for im in ctx.leaf.images]
    key = ("judge_reference", ctx.encoder.name + ctx.encoder.preprocess_id, ctx.leaf.key)
    return ctx.once(key, lambda: encode_images_cached(ctx.encoder, paths, ctx.cache), shared=True)


register_input_provider(InputProvider("judge_gen", _own_generated, ("image",),
                                      own_encoder_only=True,
                                      description="the judge's embeddings of generated images"))  # fmt: skip
register_input_provider(InputProvider("judge_ref", _own_reference, ("image",),
                                      own_encoder_only=True, per_image=False,
                                      description="the judge's embeddings of dataset images"))  # fmt: skip


def _register() -> None:
    from t2ibench.encoders.registry import register_encoder

    description = "DreamSim ensemble (DINO + CLIP + OpenCLIP ViT-B/16, LoRA on NIGHTS)"
    register_encoder(
        EncoderSpec(
            name=NAME,
            kind="image",
            default_weights="dreamsim ensemble release folder",
            feature_desc="(n, 1792) normalised embedding",
            description=description,
            load=load,
            family="judge",
        )
    )
    register_metric(
        MetricSpec(
            name=NAME,
            criterion="fidelity",
            encoder=NAME,
            references=("dataset_images",),
            higher_is_better=False,
            range=(0.0, 2.0),
            function=dreamsim_distance,
            stream=DreamSimDistance,
            inputs=("judge_gen", "judge_ref"),
            description=f"{description}: mean distance, generated vs dataset images",
        )
    )


_register()
