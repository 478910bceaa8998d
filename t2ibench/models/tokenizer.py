"""The real CLIP BPE tokenizer, built offline from open_clip's bundled merges file.

SD1.5's tokenizer is OpenAI CLIP's: 49,408 tokens = 256 byte symbols, the same 256 with ``</w>``,
48,894 merges, ``<|startoftext|>`` and ``<|endoftext|>``. open_clip ships exactly those merges
(``bpe_simple_vocab_16e6.txt.gz``), so ``vocab.json`` + ``merges.txt`` for transformers'
``CLIPTokenizer`` can be written without the hub. Only the file is read: open_clip is not imported.
Qwen's BPE is not bundled anywhere: :func:`write_qwen_tokenizer` writes a tiny one of the same class.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

from t2ibench.errors import MissingExtraError
from t2ibench.fsutil import atomic_write

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
VOCAB_SIZE = 49408
MODEL_MAX_LENGTH = 77
# open_clip keeps merges[1 : 49152 - 256 - 2 + 1] of its file (the first line is a version header).
N_MERGES = 49152 - 256 - 2

TOKENIZER_CONFIG = {
    "add_prefix_space": False,
    "bos_token": BOS,
    "clean_up_tokenization_spaces": True,
    "do_lower_case": True,
    "eos_token": EOS,
    "errors": "replace",
    "model_max_length": MODEL_MAX_LENGTH,
    "pad_token": EOS,
    "tokenizer_class": "CLIPTokenizer",
    "unk_token": EOS,
}
SPECIAL_TOKENS_MAP = {"bos_token": BOS, "eos_token": EOS, "pad_token": EOS, "unk_token": EOS}


def bpe_file() -> Path:
    """Path of open_clip's bundled BPE merges file (found without importing open_clip)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            "the CLIP tokenizer is built from open_clip's BPE file: pip install open-clip-torch"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise MissingExtraError(
            f"{path}: open_clip's BPE file is missing; reinstall open-clip-torch"
        )
    return path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte → printable unicode table (same order as open_clip's)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """CLIP's vocabulary (token → id) and merge list, in open_clip's order."""
    lines = gzip.open(bpe_file()).read().decode("utf-8").split("\n")
    merges = lines[1 : N_MERGES + 1]
    symbols = list(_bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab_list += [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    if len(vocab) != VOCAB_SIZE:
        raise MissingExtraError(
            f"{bpe_file()}: expected a {VOCAB_SIZE}-token CLIP vocabulary, built {len(vocab)}"
        )
    return vocab, merges


def write_clip_tokenizer(folder: Path) -> Path:
    """Write ``vocab.json``, ``merges.txt`` and the configs of SD1.5's tokenizer into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_vocab_and_merges()
    files = {
        "vocab.json": json.dumps(vocab, ensure_ascii=False),
        "merges.txt": "#version: 0.2\n" + "\n".join(merges) + "\n",
        "tokenizer_config.json": json.dumps(TOKENIZER_CONFIG, indent=2, sort_keys=True) + "\n",
        "special_tokens_map.json": json.dumps(SPECIAL_TOKENS_MAP, indent=2, sort_keys=True) + "\n",
    }
    for name, text in files.items():
        atomic_write(folder / name, text)
    return folder


# --- a tiny Qwen2 tokenizer (FLUX.2 [klein]'s Qwen3 reads one); Qwen's real BPE is not bundled ---

# a few sentences to train the tiny byte-level BPE on (the tests' prompts and captions)
_QWEN_TOKENIZER_TEXT = (
    "a photo of sks dog",
    "a dog on the beach, a cat holding a sign",
    "a red cube and a blue sphere in the snow",
    "user assistant system",
)
# Qwen's chat markup, the smallest template ``apply_chat_template`` fills in as Qwen3's does
QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def write_qwen_tokenizer(folder: Path, *, max_length: int = 32) -> Path:
    """A tiny Qwen2 tokenizer (byte-level BPE trained on a few sentences with the ``tokenizers``
    library, Qwen's special tokens and chat markup: about 300 tokens), saved as
    ``Qwen2TokenizerFast`` saves it; ``max_length`` is its ``model_max_length``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(
        _QWEN_TOKENIZER_TEXT,
        trainers.BpeTrainer(
            vocab_size=300,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            special_tokens=specials,
        ),
    )
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tok = Qwen2TokenizerFast(vocab=model["vocab"], merges=merges, model_max_length=max_length)
    tok.add_special_tokens({"additional_special_tokens": specials[1:]})
    tok.chat_template = QWEN_CHAT_TEMPLATE
    tok.save_pretrained(folder)
    return Path(folder)
