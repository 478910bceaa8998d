"""Golden tests: each metric profile's numbers (``t2ibench.evaluate``) against an independent,
test-only re-statement of the reference computation — its own preprocessing (torchvision v2
transform classes, not t2ibench's Preprocess), its own model calls on the same tiny random-weight
checkpoints loaded straight with transformers / open_clip, and its own pairing and scaling in NumPy
loops. Agreement to 1e-5.

Conventions and where each comes from:
- DreamBooth (Ruiz et al., CVPR 2023, §4.1 "Evaluation Metrics"): DINO = "average pairwise cosine
  similarity between the ViT-S/16 DINO embeddings of generated and real images"; CLIP-I = the same
  with CLIP embeddings; CLIP-T = "average cosine similarity between prompt and image CLIP
  embeddings". The DINO embedding is DINO's ``VisionTransformer.forward`` output, the normed CLS
  token (facebookresearch/dino, vision_transformer.py, ``x = self.norm(x); return x[:, 0]``).
  CLIP preprocessing: CLIP's own ``_transform`` (openai/CLIP, clip/clip.py: Resize(n_px, BICUBIC),
  CenterCrop(n_px), Normalize(OpenAI mean/std)); DINO the same geometry with ImageNet mean/std.
  The identifier token is dropped from the prompt ("a sks dog" → "a dog").
- DreamBench++ (Peng et al., ICLR 2025, §5 / appendix on metrics): DINOv1 ViT-S/8 and DINOv2-S,
  CLIP-I and CLIP-T with CLIP ViT-B/32; each image against the source image it was made from
  (paired); reported ×100; the prompt is used as is. Preprocessing from yuangpeng/dreambench_plus:
  DINOv1 Resize(256, bicubic) + CenterCrop(224) + ImageNet mean/std
  (dreambench_plus/metrics/dino_score.py, DinoScore.__init__), DINOv2 the dinov2-small
  BitImageProcessor (shortest edge 256, bicubic, crop 224; Dinov2Score), CLIP its CLIPProcessor
  (shortest edge 224, crop 224; dreambench_plus/metrics/clip_score.py).
- CustomConcept101 (adobe-research/custom-diffusion, customconcept101/evaluate.py at commit
  7c19c9a; the line numbers are that file's): CLIP ViT-B/32 (l. 160, 184) on Resize(224, bicubic) +
  CenterCrop(224) + OpenAI mean/std (l. 47-55); DINO ViT-S/16 from torch.hub (l. 207) on
  Resize(256, bicubic) + CenterCrop(224) + ImageNet mean/std (l. 73-80); CLIP-T = mean over
  samples of 2.5·max(cos, 0) against the sample's own prompt (get_clip_score, l. 123-149, w = 2.5,
  clip at 0 per sample, l. 148), without prefix (append=False, l. 92-95), with the modifier token
  removed (maintainers' answer, adobe-research/custom-diffusion issue #29); CLIP-I and DINO = mean
  of the full (sample × target) cosine matrix (l. 197, 220).
- peft-drift (issue 11): 1 − cos(DINOv2-B CLS) to the base image of the same prompt and seed.
- lycoris2024 (Yeh et al., ICLR 2024, §4 / App. D; PROTOCOL "Metrics"): DINOv2-L CLS and OpenCLIP
  ViT-L-14 on a 224 letterbox (long side 224, black padding), mean cosine over all pairs.

The reference scripts resize PIL images; both sides here resize uint8 tensors with antialiasing
(PIL's bicubic differs by up to one grey level), so the comparison tests everything but that.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

import t2ibench
from t2ibench.encoders import create_encoder

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
OPENAI = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
TOL = 1e-5


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)

    def im(w, h):
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))

    gen = [im(96, 64), im(64, 80), im(72, 72)]
    refs = [im(80, 60), im(60, 90), im(100, 70)]
    base = [im(96, 64), im(64, 80), im(72, 72)]
    prompts = ["a sks dog on the beach", "a sks dog in the snow", "a red sks dog"]
    return gen, refs, base, prompts


def clip_transform(mean_std):
    """CLIP's ``_transform``: Resize(224, bicubic) of the short side, CenterCrop(224), Normalize."""
    return T.Compose(
        [
            T.PILToTensor(),
            T.Resize(224, interpolation=InterpolationMode.BICUBIC, antialias=True),
            T.CenterCrop(224),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(*mean_std),
        ]
    )


def dino_eval_transform():
    """DINO's evaluation transform: Resize(256, bicubic) of the short side, CenterCrop(224)."""
    return T.Compose(
        [
            T.PILToTensor(),
            T.Resize(256, interpolation=InterpolationMode.BICUBIC, antialias=True),
            T.CenterCrop(224),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(*IMAGENET),
        ]
    )


def letterbox_transform(mean_std):
    """Long side to 224 (bicubic), black padding to 224×224 centred, then Normalize."""

    def apply(img: Image.Image) -> torch.Tensor:
        w, h = img.size
        f = 224 / max(w, h)
        nw, nh = max(1, round(w * f)), max(1, round(h * f))
        x = T.Resize((nh, nw), interpolation=InterpolationMode.BICUBIC, antialias=True)(
            T.PILToTensor()(img)
        )
        left, top = (224 - nw) // 2, (224 - nh) // 2
        x = T.Pad([left, top, 224 - nw - left, 224 - nh - top], fill=0)(x)
        return T.Normalize(*mean_std)(T.ToDtype(torch.float32, scale=True)(x))

    return apply


def tiny_folder(name: str) -> str:
    return create_encoder(name, tiny=True).source


def dino_v1(name, tf=None):
    from transformers import ViTModel

    model = ViTModel.from_pretrained(tiny_folder(name), add_pooling_layer=False).eval()
    tf = tf or clip_transform(IMAGENET)
    return lambda ims: model(pixel_values=torch.stack([tf(i) for i in ims])).last_hidden_state[:, 0]


def dino_v2(name, tf=None):
    from transformers import Dinov2Model

    model = Dinov2Model.from_pretrained(tiny_folder(name)).eval()
    tf = tf or clip_transform(IMAGENET)
    return lambda ims: model(pixel_values=torch.stack([tf(i) for i in ims])).pooler_output


def open_clip_model(name, tf=None):
    import open_clip

    folder = tiny_folder(name)
    model = open_clip.create_model(f"local-dir:{folder}").eval()
    tok = open_clip.get_tokenizer(f"local-dir:{folder}")
    tf = tf or clip_transform(OPENAI)
    return (
        lambda ims: model.encode_image(torch.stack([tf(i) for i in ims])),
        lambda texts: model.encode_text(tok(texts)),
    )


def cos(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def all_pairs(x, y) -> float:
    return float(np.mean([cos(a, b) for a in x for b in y]))


def row_pairs(x, y) -> float:
    return float(np.mean([cos(a, b) for a, b in zip(x, y, strict=True)]))


def values(df):
    return dict(zip(df["measure"], df["value"], strict=True))


@torch.no_grad()
def test_dreambooth(images):
    gen, refs, _, prompts = images
    got = values(
        t2ibench.evaluate(
            gen, refs, prompts, metric_profile="dreambooth", identifier="sks", tiny=True
        )
    )
    dino = dino_v1("dino-vits16")
    clip_img, clip_txt = open_clip_model("clip-b32")
    texts = [p.replace("sks ", "") for p in prompts]  # "a [V] dog" → "a dog"
    assert texts[0] == "a dog on the beach"
    expected = {
        "DINO": all_pairs(dino(gen), dino(refs)),
        "CLIP-I": all_pairs(clip_img(gen), clip_img(refs)),
        "CLIP-T": row_pairs(clip_img(gen), clip_txt(texts)),
    }
    assert got == pytest.approx(expected, abs=TOL)


@torch.no_grad()
def test_dreambench_pp(images):
    gen, refs, _, prompts = images
    got = values(t2ibench.evaluate(gen, refs, prompts, metric_profile="dreambench-pp", tiny=True))
    dino8 = dino_v1("dino-vits8", dino_eval_transform())
    dinov2s = dino_v2("dinov2-s", dino_eval_transform())
    clip_img, clip_txt = open_clip_model("clip-b32")
    expected = {
        "DINO-I": 100 * row_pairs(dino8(gen), dino8(refs)),
        "DINOv2-I": 100 * row_pairs(dinov2s(gen), dinov2s(refs)),
        "CLIP-I": 100 * row_pairs(clip_img(gen), clip_img(refs)),
        "CLIP-T": 100 * row_pairs(clip_img(gen), clip_txt(prompts)),  # prompt kept as is
    }
    assert got == pytest.approx(expected, abs=TOL * 100)
    # Paired, not all pairs: the all-pairs mean is a different number on these images.
    assert abs(got["DINO-I"] - 100 * all_pairs(dino8(gen), dino8(refs))) > 1e-3


@pytest.fixture(scope="module")
def clip_b32_mixed(tmp_path_factory):
    """A tiny random CLIP ViT-B/32 (the real loader's format) whose image–prompt cosines on the
    fixture's images have both signs (the default tiny one's are all negative), so the per-sample
    clamp of CLIP-T is exercised."""
    from t2ibench.encoders import clip, clip_b32

    folder = tmp_path_factory.mktemp("clip-b32-seed2")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        clip.build_tiny(folder, model_cfg=clip_b32.TINY_MODEL_CFG)
    return str(folder)


@torch.no_grad()
def test_customconcept101(images, clip_b32_mixed):
    gen, refs, _, _ = images
    prompts = ["<new1> cat swimming in a pool", "a <new1> cat in times square", "<new1> cat"]
    weights = {"clip-b32": clip_b32_mixed, "dino-vits16": tiny_folder("dino-vits16")}
    got = values(
        t2ibench.evaluate(
            gen, refs, prompts, metric_profile="customconcept101", identifier="<new1>",
            weights=weights,
        )
    )  # fmt: skip
    import open_clip
    from transformers import ViTModel

    dino_model = ViTModel.from_pretrained(weights["dino-vits16"], add_pooling_layer=False).eval()
    clip_model = open_clip.create_model(f"local-dir:{clip_b32_mixed}").eval()
    tok = open_clip.get_tokenizer(f"local-dir:{clip_b32_mixed}")
    dino_tf, clip_tf = dino_eval_transform(), clip_transform(OPENAI)

    def dino(ims):
        return dino_model(pixel_values=torch.stack([dino_tf(i) for i in ims])).last_hidden_state[
            :, 0
        ]

    def clip_img(ims):
        return clip_model.encode_image(torch.stack([clip_tf(i) for i in ims]))

    def unit(x):
        x = np.asarray(x, np.float64)
        return x / np.sqrt((x**2).sum(axis=1, keepdims=True))

    texts = [" ".join(p.replace("<new1>", "").split()) for p in prompts]
    assert texts[1] == "a cat in times square"
    cos_t = (unit(clip_img(gen)) * unit(clip_model.encode_text(tok(texts)))).sum(axis=1)
    assert cos_t.min() < 0 < cos_t.max()  # the clamp matters on these pairs
    expected = {
        "CLIP-T": float((2.5 * np.clip(cos_t, 0, None)).mean()),
        "CLIP-I": float((unit(clip_img(gen)) @ unit(clip_img(refs)).T).mean()),
        "DINO": float((unit(dino(gen)) @ unit(dino(refs)).T).mean()),
    }
    assert got == pytest.approx(expected, abs=TOL)
    # Clamped per sample, not the mean clamped (which would be 0 here), nor unclamped.
    assert got["CLIP-T"] > 0.05 and abs(got["CLIP-T"] - 2.5 * cos_t.mean()) > 0.05
    # 256 → 224 is not the plain 224 centre crop: that DINO number differs.
    dino224 = dino_v1("dino-vits16")
    assert abs(got["DINO"] - all_pairs(dino224(gen), dino224(refs))) > 1e-4


@torch.no_grad()
def test_peft_drift(images):
    gen, _, base, _ = images
    got = values(t2ibench.evaluate(gen, base_images=base, metric_profile="peft-drift", tiny=True))
    f = dino_v2("dinov2-b")
    fg, fb = f(gen), f(base)
    expected = float(np.mean([1 - cos(a, b) for a, b in zip(fg, fb, strict=True)]))
    assert got["drift"] == pytest.approx(expected, abs=TOL)
    # Identical images do not drift.
    same = t2ibench.evaluate(gen, base_images=gen, metric_profile="peft-drift", tiny=True)
    assert same["value"].iloc[0] == pytest.approx(0.0, abs=1e-6)


@torch.no_grad()
def test_lycoris2024_default(images):
    gen, refs, _, prompts = images
    df = t2ibench.evaluate(gen, refs, prompts, identifier="sks", tiny=True)
    assert set(df["metric_profile"]) == {"lycoris2024"}
    got = {(r.metric, r.encoder): r.value for r in df.itertuples()}
    dino = dino_v2("dinov2-l", letterbox_transform(IMAGENET))
    clip_img, clip_txt = open_clip_model("clip-l14", letterbox_transform(OPENAI))
    texts = [p.replace("sks ", "") for p in prompts]
    assert got[("image_similarity", "dinov2-l")] == pytest.approx(
        all_pairs(dino(gen), dino(refs)), abs=TOL
    )
    assert got[("image_similarity", "clip-l14")] == pytest.approx(
        all_pairs(clip_img(gen), clip_img(refs)), abs=TOL
    )
    assert got[("text_alignment", "clip-l14")] == pytest.approx(
        row_pairs(clip_img(gen), clip_txt(texts)), abs=TOL
    )
    # Other registered (gen, ref) metrics come through their own functions.
    assert {"frechet_distance", "kid", "centroid_distance"} <= set(df["metric"])
