"""The offline-built CLIP tokenizer tokenizes exactly like open_clip's."""

from __future__ import annotations

import pytest

PROMPTS = [
    "a photo of sks dog, watercolor painting",
    "Hatsune Miku!!  anime girl, 1girl, blue_hair, looking at viewer",
    "café naïve 123 it's DON'T   tabs\tand\nnewlines",
    "pixel art of an adl castle in the style of Claude Monet",
    "emoji 🙂 and symbols #$%&*",
    "long " * 100,
]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    import open_clip
    from transformers import CLIPTokenizer

    from t2ibench.models.tokenizer import write_clip_tokenizer

    folder = write_clip_tokenizer(tmp_path_factory.mktemp("tok"))
    return CLIPTokenizer.from_pretrained(folder), open_clip.get_tokenizer("ViT-L-14")


@pytest.mark.parametrize("text", PROMPTS)
def test_same_ids_as_open_clip(tokenizers, text):
    hf, oc = tokenizers
    ours = hf(text, padding="max_length", max_length=77, truncation=True).input_ids
    theirs = oc([text])[0].tolist()
    end = theirs.index(49407) + 1  # open_clip pads with 0, SD1.5's tokenizer with <|endoftext|>
    assert ours[:end] == theirs[:end]
    assert len(ours) == 77
    assert all(t == 49407 for t in ours[end:])


def test_vocab_is_clips(tokenizers):
    hf, _ = tokenizers
    assert len(hf) == 49408
    assert hf.convert_tokens_to_ids(["<|startoftext|>", "<|endoftext|>"]) == [49406, 49407]
    assert hf("a photo of").input_ids == [49406, 320, 1125, 539, 49407]  # OpenAI CLIP's ids


def test_tiny_base_tokenizer_matches_open_clip(tokenizers, tiny_folder):
    from t2ibench.models import load_base

    _, oc = tokenizers
    pipe = load_base(tiny_folder)
    for text in PROMPTS:
        ours = pipe.tokenizer(text, padding="max_length", max_length=77, truncation=True).input_ids
        theirs = oc([text])[0].tolist()
        end = theirs.index(49407) + 1
        assert ours[:end] == theirs[:end]
    assert (tiny_folder / "tokenizer" / "vocab.json").is_file()
    assert (tiny_folder / "tokenizer" / "merges.txt").is_file()
