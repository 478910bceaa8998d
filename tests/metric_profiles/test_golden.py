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
  CenterCrop(n_px), Normalize(OpenAI mean/std)); DINO its own evaluation transform, Resize(256,
  bicubic) + CenterCrop(224) + ImageNet mean/std (facebookresearch/dino, eval_knn.py; the paper
  gives no transform, so each model's own: the decision stated in dreambooth.toml and the README).
  The identifier token is dropped from the prompt ("a sks dog" → "a dog").
- DreamBench++ (Peng et al., ICLR 2025, §5 / appendix on metrics): DINOv1 ViT-S/8 and DINOv2-S,
  CLIP-I and CLIP-T with CLIP ViT-B/32; each image against the source image it was made from
  (paired); reported ×100; the prompt is used as is. Preprocessing from yuangpeng/dreambench_plus:
  DINOv1 Resize(256, bicubic) + CenterCrop(224) + ImageNet mean/std
  (dreambench_plus/metrics/dino_score.py, DinoScore.__init__), DINOv2 the dinov2-small
  BitImageProcessor (shortest edge 256, bicubic, crop 224; Dinov2Score), CLIP its CLIPProcessor
  (shortest edge 224, crop 224; dreambench_plus/metrics/clip_score.py). The transformers
  processors (4.35.2 pinned there) start the crop at margin // 2 (image_transforms.center_crop,
  l. 462/465), torchvision at round(margin / 2): checked pixel for pixel against transformers' own
  processors below (test_item14_...).
- CustomConcept101 (adobe-research/custom-diffusion, customconcept101/evaluate.py at commit
  7c19c9a; the line numbers are that file's): CLIP ViT-B/32 (l. 160, 184) on Resize(224, bicubic) +
  CenterCrop(224) + OpenAI mean/std (l. 47-55); DINO ViT-S/16 from torch.hub (l. 207) on
  Resize(256, bicubic) + CenterCrop(224) + ImageNet mean/std (l. 73-80); CLIP-T = mean over
  samples of 2.5·max(cos, 0) against the sample's own prompt (get_clip_score, l. 123-149, w = 2.5,
  clip at 0 per sample, l. 148), without prefix (append=False, l. 92-95), with the modifier token
  removed (maintainers' answer, adobe-research/custom-diffusion issue #29); CLIP-I and DINO = mean
  of the full (sample × target) cosine matrix (l. 197, 220).
- peft-drift: huggingface/peft method_comparison/image-gen/run.py (commit 5d602fd) measure_drift,
  l. 274: drift = (1 − mean cos) / 2 of L2-normalised DINOv2-B CLS features (utils.py l. 460-468),
  each adapter image against the base image of the same prompt and seed; preprocessing = the
  facebook/dinov2-base AutoImageProcessor (utils.py l. 452-456): shortest edge 256, bicubic,
  crop 224 at margin // 2.
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
    dino = dino_v1("dino-vits16", dino_eval_transform())
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


def bit_processor(shortest_edge: int, crop: int, mean_std, backend: str = "torchvision"):
    """transformers' own BitImageProcessor / CLIPImageProcessor settings of the hub configs
    (facebook/dinov2-*: shortest edge 256, crop 224; openai/clip-vit-base-patch32: 224, 224;
    bicubic), in the torchvision backend (what AutoImageProcessor picks when torchvision is
    installed) or the PIL one (transformers 4.x's only path)."""
    from transformers import BitImageProcessor
    from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil

    cls = BitImageProcessor if backend == "torchvision" else BitImageProcessorPil
    proc = cls(
        size={"shortest_edge": shortest_edge}, crop_size={"height": crop, "width": crop},
        resample=3, image_mean=mean_std[0], image_std=mean_std[1], do_convert_rgb=True,
    )  # fmt: skip

    def apply(img: Image.Image) -> torch.Tensor:
        out = proc(images=[img], return_tensors="np")["pixel_values"][0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32))

    return apply


@torch.no_grad()
def test_item13_peft_drift_is_pefts_formula(images):
    """Issue 22 item 13: PEFT reports (1 − mean cos)/2 (run.py l. 274) on its DINOv2 processor's
    256 → 224 crop, not mean(1 − cos) at 224."""
    gen, _, base, _ = images
    got = values(t2ibench.evaluate(gen, base_images=base, metric_profile="peft-drift", tiny=True))
    f = dino_v2("dinov2-b", bit_processor(256, 224, IMAGENET))
    cosines = [cos(a, b) for a, b in zip(f(gen), f(base), strict=True)]
    expected = (1 - float(np.mean(cosines))) / 2  # cos sim in [-1, 1] normalised to [0, 1]
    assert got["drift"] == pytest.approx(expected, abs=TOL)
    assert got["drift"] < 0.6 * float(np.mean([1 - c for c in cosines]))  # not the old number
    # Identical images do not drift.
    same = t2ibench.evaluate(gen, base_images=gen, metric_profile="peft-drift", tiny=True)
    assert same["value"].iloc[0] == pytest.approx(0.0, abs=1e-6)


def _dreambench_encoder(label: str):
    from t2ibench.metric_profiles import get_metric_profile
    from t2ibench.metric_profiles.preprocess import set_measure_preprocess

    m = next(x for x in get_metric_profile("dreambench-pp").measures if x.label == label)
    enc = create_encoder(m.encoder, tiny=True, resize=m.resize, size=m.size)
    return m, set_measure_preprocess(enc, m)


@pytest.mark.parametrize(
    ("label", "shortest", "mean_std"),
    [("DINOv2-I", 256, IMAGENET), ("CLIP-I", 224, OPENAI), ("CLIP-T", 224, OPENAI)],
)
@pytest.mark.parametrize("extra", [3, 4, 5, 7])
@pytest.mark.parametrize("wide", [True, False], ids=["wide", "tall"])
def test_item14_dreambench_pp_crops_where_transformers_crops(
    label, shortest, mean_std, extra, wide
):
    """Issue 22 item 14: DreamBench++'s DINOv2 and CLIP numbers come from transformers' image
    processors, which start the centre crop at margin // 2 (transformers 4.35.2
    image_transforms.center_crop l. 462/465); torchvision rounds margin / 2, one pixel further
    where the margin is 3 mod 4. The profile's pixels equal transformers' own processors' — both
    backends — on non-square sources whose short side needs no resampling (so only the crop can
    differ)."""
    from t2ibench.metric_profiles.preprocess import set_resize_size

    m, enc = _dreambench_encoder(label)
    assert m.crop_offset == "floor"
    w, h = (shortest + extra, shortest) if wide else (shortest, shortest + extra)
    rng = np.random.default_rng(extra * 2 + wide)
    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    ours = enc.preprocess(img)
    for backend in ("torchvision", "pil"):
        ref = bit_processor(shortest, 224, mean_std, backend)(img)
        assert torch.allclose(ours, ref, atol=1e-5), backend
    # torchvision's placement is a different picture exactly where the margin is 3 mod 4
    plain = create_encoder(m.encoder, tiny=True, resize=m.resize, size=m.size)
    rounding = set_resize_size(plain, m.resize_size, "round")
    margin = shortest + extra - 224
    assert torch.equal(rounding.preprocess(img), ours) == (margin % 4 != 3)


def test_item14_dreambench_pp_dino_v1_keeps_torchvisions_crop():
    """DreamBench++'s DINOv1 goes through torchvision (dino_score.py l. 37-44): its crop rounds."""
    m, enc = _dreambench_encoder("DINO-I")
    assert m.crop_offset == "round" and m.resize_size == 256
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (256, 263, 3), dtype=np.uint8))
    expected = dino_eval_transform()(img)
    assert torch.allclose(enc.preprocess(img), expected, atol=1e-5)


def test_item14_crop_offsets_restated():
    """transformers: top = (h − c) // 2; torchvision: int(round((h − c) / 2)), halves to even."""
    from t2ibench.metric_profiles.preprocess import crop_start

    for side in range(224, 240):
        assert crop_start(side, 224, "floor") == (side - 224) // 2
        assert crop_start(side, 224, "round") == int(round((side - 224) / 2.0))
    differ = [
        d
        for d in range(0, 16)
        if crop_start(224 + d, 224, "floor") != crop_start(224 + d, 224, "round")
    ]
    assert differ == [3, 7, 11, 15]


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


@torch.no_grad()
def test_item16_dreambooth_dino_is_dinos_256_to_224_crop(images):
    """Issue 22 item 16, a decision: DreamBooth §4.1 names the models, not their transform, so
    each model's own evaluation transform — DINO's Resize(256) + CenterCrop(224). The profile,
    its TOML and docs/metric-profiles.md say so, and the number is that crop's, not the 224 → 224 one."""
    from pathlib import Path

    from t2ibench.metric_profiles import get_metric_profile

    profile = get_metric_profile("dreambooth")
    dino = next(m for m in profile.measures if m.label == "DINO")
    assert (dino.resize, dino.resize_size, dino.size, dino.crop_offset) == (
        "center-crop", 256, 224, "round"
    )  # fmt: skip
    toml = profile.path.read_text(encoding="utf-8")
    assert "eval_knn.py" in toml and "Resize(256" in toml
    page = Path(__file__).parents[2] / "docs" / "metric-profiles.md"
    text = page.read_text(encoding="utf-8")
    section = text.split("# Reproduce DreamBooth-style numbers", 1)[1].split("\n## ", 1)[0]
    assert "256 → crop 224" in section and "eval_knn.py" in section
    gen, refs, _, prompts = images
    got = values(
        t2ibench.evaluate(gen, refs, prompts, metric_profile="dreambooth", identifier="sks",
                          tiny=True)
    )  # fmt: skip
    f256 = dino_v1("dino-vits16", dino_eval_transform())
    f224 = dino_v1("dino-vits16")
    assert got["DINO"] == pytest.approx(all_pairs(f256(gen), f256(refs)), abs=TOL)
    assert abs(got["DINO"] - all_pairs(f224(gen), f224(refs))) > 1e-4


@torch.no_grad()
def test_item14_floor_crop_reaches_evaluate():
    """End to end: ``t2ibench.evaluate`` with dreambench-pp on sources whose crop margin is 3 mod 4
    gives transformers' processor's DINOv2-I (99.827 here; the torchvision crop gives 99.668)."""
    rng = np.random.default_rng(3)

    def im(w, h):
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))

    gen, refs = [im(259, 256), im(256, 263)], [im(263, 256), im(256, 259)]
    got = values(
        t2ibench.evaluate(gen, refs, ["a", "b"], metric_profile="dreambench-pp", tiny=True)
    )
    f = dino_v2("dinov2-s", bit_processor(256, 224, IMAGENET))
    assert got["DINOv2-I"] == pytest.approx(100 * row_pairs(f(gen), f(refs)), abs=1e-5)
