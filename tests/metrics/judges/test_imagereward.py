"""ImageReward golden test: our judge (transformers' BLIP modules, the checkpoint's keys renamed on
load) against a test-only restatement of the reference scoring (THUDM/ImageReward ``ImageReward/``;
the package ``image-reward`` 1.5 does not import on transformers 5), computed straight from the
saved checkpoint under the reference's own key names: a shrunken random-weight BLIP saved and
re-loaded through the judge's loading path."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from t2ibench.encoders import create_encoder
from t2ibench.errors import T2IBenchError
from t2ibench.metrics.judges.imagereward import TINY_CONFIG
from tests.metrics.judges.conftest import PROMPTS


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    return create_encoder("imagereward", tiny=True, cache_dir=tmp_path_factory.mktemp("judges"))


@pytest.fixture(scope="module")
def reference_state(judge):
    from safetensors.torch import load_file

    return load_file(f"{judge.source}/ImageReward.safetensors")


def reference_preprocess(image):
    """ImageReward.py lines 30-37: Resize(224, BICUBIC), CenterCrop(224), RGB, ToTensor,
    Normalize(OpenAI CLIP mean, std)."""
    from torchvision.transforms import (
        CenterCrop,
        Compose,
        InterpolationMode,
        Normalize,
        Resize,
        ToTensor,
    )

    return Compose([
        Resize(224, interpolation=InterpolationMode.BICUBIC), CenterCrop(224),
        lambda im: im.convert("RGB"), ToTensor(),
        Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    ])(image)  # fmt: skip


def reference_tokenizer(vocab_file):
    """blip.py lines 16-21: BertTokenizer('bert-base-uncased') (here the folder's vocab.txt) with
    [DEC] as bos and [ENC] as an additional special token."""
    from transformers import BertTokenizer

    words = open(vocab_file, encoding="utf-8").read().splitlines()
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tok


def _ln(x, sd, key, eps):
    return F.layer_norm(x, x.shape[-1:], sd[f"{key}.weight"], sd[f"{key}.bias"], eps)


def _lin(x, sd, key):
    return F.linear(x, sd[f"{key}.weight"], sd[f"{key}.bias"])


def reference_vit(x, sd, heads):
    """vit.py VisionTransformer.forward (lines 176-190): patch embedding, cls token, pos_embed,
    pre-norm blocks (lines 103-106; Attention lines 66-82: fused qkv, scale head_dim ** -0.5;
    Mlp lines 31-37: GELU), final norm; LayerNorm eps 1e-6 (line 138)."""
    p = "blip.visual_encoder."
    x = F.conv2d(x, sd[p + "patch_embed.proj.weight"], sd[p + "patch_embed.proj.bias"],
                 stride=sd[p + "patch_embed.proj.weight"].shape[-1])  # fmt: skip
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([sd[p + "cls_token"].expand(x.shape[0], -1, -1), x], dim=1)
    x = x + sd[p + "pos_embed"][:, : x.size(1), :]
    depth = len({k.split(".")[3] for k in sd if k.startswith(p + "blocks.")})
    for i in range(depth):
        b = f"{p}blocks.{i}."
        h = _ln(x, sd, b + "norm1", 1e-6)
        B, N, C = h.shape
        qkv = _lin(h, sd, b + "attn.qkv").reshape(B, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * (C // heads) ** -0.5).softmax(dim=-1)
        x = x + _lin((attn @ v).transpose(1, 2).reshape(B, N, C), sd, b + "attn.proj")
        h = _ln(x, sd, b + "norm2", 1e-6)
        x = x + _lin(F.gelu(_lin(h, sd, b + "mlp.fc1")), sd, b + "mlp.fc2")
    return _ln(x, sd, p + "norm", 1e-6)


def _reference_attention(h, kv, mask, sd, key, heads):
    """med.py BertSelfAttention.forward (lines 145-217) + BertSelfOutput (lines 227-231)."""
    B, L, C = h.shape
    d = C // heads

    def split(t):
        return t.view(t.shape[0], t.shape[1], heads, d).permute(0, 2, 1, 3)

    q = split(_lin(h, sd, key + ".self.query"))
    k, v = split(_lin(kv, sd, key + ".self.key")), split(_lin(kv, sd, key + ".self.value"))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d) + mask
    ctx = (scores.softmax(-1) @ v).permute(0, 2, 1, 3).reshape(B, L, C)
    return _ln(_lin(ctx, sd, key + ".output.dense") + h, sd, key + ".output.LayerNorm", 1e-12)


def reference_text(ids, att, image_embeds, sd, heads):
    """med.py BertModel in mode 'multimodal': BertEmbeddings (lines 63-86: word + absolute
    position, LayerNorm), per BertLayer (lines 325-375) self-attention, cross-attention on the
    image embeddings, GELU feed-forward; extended masks (1 - mask) * -10000."""
    p = "blip.text_encoder."
    pos = torch.arange(ids.shape[1])
    x = (
        sd[p + "embeddings.word_embeddings.weight"][ids]
        + sd[p + "embeddings.position_embeddings.weight"][pos]
    )
    x = _ln(x, sd, p + "embeddings.LayerNorm", 1e-12)
    mask = (1.0 - att[:, None, None, :].float()) * -10000.0
    image_mask = torch.zeros(image_embeds.shape[0], 1, 1, image_embeds.shape[1])  # all ones
    depth = len({k.split(".")[4] for k in sd if k.startswith(p + "encoder.layer.")})
    for i in range(depth):
        b = f"{p}encoder.layer.{i}."
        x = _reference_attention(x, x, mask, sd, b + "attention", heads)
        x = _reference_attention(x, image_embeds, image_mask, sd, b + "crossattention", heads)
        h = F.gelu(_lin(x, sd, b + "intermediate.dense"))
        x = _ln(_lin(h, sd, b + "output.dense") + x, sd, b + "output.LayerNorm", 1e-12)
    return x


def reference_score(sd, tokenizer, image, prompt):
    """ImageReward.score (ImageReward.py lines 103-136): tokens padded to 35, the [CLS] state of
    the text encoder through the MLP (no activations, lines 45-58), (r - mean) / std."""
    tokens = tokenizer(prompt, padding="max_length", truncation=True, max_length=35,
                       return_tensors="pt")  # fmt: skip
    image_embeds = reference_vit(reference_preprocess(image).unsqueeze(0), sd,
                                 TINY_CONFIG["vision"]["num_attention_heads"])  # fmt: skip
    text = reference_text(tokens.input_ids, tokens.attention_mask, image_embeds, sd,
                          TINY_CONFIG["text"]["num_attention_heads"])  # fmt: skip
    r = text[:, 0, :].float()
    for i in (0, 2, 4, 6, 7):
        r = _lin(r, sd, f"mlp.layers.{i}")
    return ((r - 0.16717362830052426) / 1.0333394966054072).item()


def test_scores_equal_the_restated_reference(judge, reference_state, judge_images):
    tokenizer = reference_tokenizer(f"{judge.source}/vocab.txt")
    long_prompt = " ".join(["a photo of a red dog on the beach"] * 6)  # truncated at 35 tokens
    with torch.no_grad():
        for prompt in [*PROMPTS, long_prompt]:
            ours = judge.score(judge_images, [prompt] * len(judge_images))
            ref = [reference_score(reference_state, tokenizer, im, prompt) for im in judge_images]
            torch.testing.assert_close(ours, torch.tensor(ref), atol=1e-5, rtol=0)
    mixed = judge.score(judge_images, PROMPTS)
    assert mixed.std() > 0.05  # the images and prompts matter: a test that can fail


def test_offline_without_weights_names_the_files(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(T2IBenchError, match=r"put ImageReward\.pt and med_config\.json \(hub repo "
                       r"THUDM/ImageReward\) and vocab\.txt"):  # fmt: skip
        create_encoder("imagereward")
    (tmp_path / "w").mkdir()
    torch.save({"state_dict": {"x": torch.zeros(1)}, "fn": print}, tmp_path / "w" / "a.pt")
    with pytest.raises(T2IBenchError, match="judge imagereward: no weights"):
        create_encoder("imagereward", weights=str(tmp_path / "w"))


def test_reads_the_released_pt_and_finds_the_hub_cache_files(
    judge, reference_state, judge_images, tmp_path, monkeypatch
):
    """The release's ImageReward.pt (a plain state dict, read with weights_only=True) scores as
    the same weights in safetensors; with weights=None the three files are found in the hub
    cache's layout (two repos) and linked into one folder."""
    import shutil

    from t2ibench.metrics.judges import imagereward

    folder = tmp_path / "release"
    folder.mkdir()
    torch.save(dict(reference_state), folder / "ImageReward.pt")
    for name in ("med_config.json", "vocab.txt", "vision_config.json"):
        shutil.copy(f"{judge.source}/{name}", folder / name)
    from_pt = create_encoder("imagereward", weights=str(folder))
    torch.testing.assert_close(from_pt.score(judge_images, PROMPTS),
                               judge.score(judge_images, PROMPTS), atol=0, rtol=0)  # fmt: skip
    cache = tmp_path / "hub"
    for repo, names in (("THUDM/ImageReward", ("ImageReward.pt", "med_config.json")),
                        ("google-bert/bert-base-uncased", ("vocab.txt",))):  # fmt: skip
        root = cache / f"models--{repo.replace('/', '--')}"
        (root / "snapshots" / ("0" * 40)).mkdir(parents=True)
        (root / "refs").mkdir()
        (root / "refs" / "main").write_text("0" * 40)
        for name in names:
            shutil.copy(folder / name, root / "snapshots" / ("0" * 40) / name)
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    linked = imagereward._hub_files()
    assert sorted(p.name for p in linked.iterdir()) == [
        "ImageReward.pt", "med_config.json", "vocab.txt"
    ]  # fmt: skip
    assert (linked / "ImageReward.pt").read_bytes() == (folder / "ImageReward.pt").read_bytes()
