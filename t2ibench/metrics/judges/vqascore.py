"""VQAScore (Lin et al. 2024, ECCV): how likely a VQA model answers "Yes" to *Does this figure show
"{prompt}"?*, with CLIP-FlanT5 (a CLIP ViT-L/14-336 whose patch features, through an MLP, are
spliced into FlanT5's encoder input).

t2v-metrics 3.0 pins torch 2.6, and its 3.1 release dropped CLIP-FlanT5, so the model is rebuilt
here from transformers' ``T5ForConditionalGeneration`` and ``CLIPVisionModel`` (the modules the
reference itself wraps) and the scoring restated from linzhiqiu/t2v_metrics at commit
``10d549b`` (the last with CLIP-FlanT5), ``t2v_metrics/models/vqascore_models/``:

- question: ``'Does this figure show "{}"? Please answer yes or no.'``, answer ``"Yes"``
  (``clip_t5_model.py`` lines 9-10, 235-236), in the ``t5_chat`` style: ``SYSTEM_MSG + " USER: " +
  "<image>" + "\\n" + question + " ASSISTANT: "`` (lines 15-16; ``SYSTEM_MSG`` in
  ``t2v_metrics/constants.py`` line 5);
- tokens: FlanT5's sentencepiece tokenizer, slow (``mm_utils.py`` line 198, ``use_fast=False``):
  each side of ``<image>`` is tokenised on its own, ``</s>`` appended to each, the image features
  in between (``mm_utils.py`` lines 164-179; ``clip_t5.py`` lines 84-102); the answer likewise
  (``[Yes, </s>]``); a batch is right-padded and the padding masked (lines 247-257, 115-130);
- image: padded to a square with the processor mean as colour (``expand2square``,
  ``mm_utils.py`` lines 128-139; ``clip_t5_model.py`` lines 215-216), then CLIP-336's processor
  (bicubic resize to 336, centre crop, OpenAI mean/std);
- vision: CLIP's ``hidden_states[-2]`` without the class token (``clip_t5.py`` lines 34-38,
  ``clip_encoder.py`` lines 29-37), projected by ``mlp2x_gelu`` (``projector/builder.py`` 39-46);
- vocabulary: the LM head is cut to ``len(tokenizer)`` (``mm_utils.py`` line 224,
  ``resize_token_embeddings``: 32,100 of FlanT5's 32,128 rows);
- score: ``exp(-mean cross-entropy)`` of the answer tokens given the question and image
  (``clip_t5_model.py`` lines 280-284): the geometric mean of P("Yes") and P(``</s>`` | "Yes").

The reference runs the model in bfloat16 (``mm_utils.py`` line 228); here it runs in float32 on
CPU and under t2ibench's autocast (bf16) on CUDA. transformers 5 ties T5's ``lm_head`` to its
input embedding whatever the config says; FlanT5's are distinct, so they are untied here.

Weights: one folder with ``config.json`` + the weights (``*.safetensors``, or ``*.bin`` read with
``weights_only=True``; sharded with an index) of ``zhiqiulin/clip-flant5-xxl`` (or ``-xl``),
``spiece.model`` of ``google/flan-t5-xxl`` (same file as ``-xl``), and a subfolder
``vision_tower/`` with ``config.json`` + weights of ``openai/clip-vit-large-patch14-336`` (the
tower the reference loads; vision weights inside the CLIP-FlanT5 checkpoint take precedence, as in
the reference). Licence: t2v-metrics Apache-2.0; FlanT5 Apache-2.0; CLIP MIT (docs/judges.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from t2ibench.encoders.base import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    EncoderSpec,
    hub_offline,
    local_weights_id,
)
from t2ibench.metrics.judges._common import (
    JudgeEncoder,
    JudgePreprocess,
    judge_source,
    linked_folder,
    missing_judge_weights,
    read_state_dict,
    register_judge,
)

NAME = "vqascore"
MODEL_REPO = "zhiqiulin/clip-flant5-xxl"
TOKENIZER_REPO = "google/flan-t5-xxl"
VISION_REPO = "openai/clip-vit-large-patch14-336"
SPIECE = "spiece.model"
VISION_DIR = "vision_tower"
QUESTION = 'Does this figure show "{}"? Please answer yes or no.'  # clip_t5_model.py line 9
ANSWER = "Yes"  # clip_t5_model.py line 10
SYSTEM_MSG = (  # t2v_metrics/constants.py line 5
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions."
)
IMAGE_TOKEN = "<image>"
T5_EXTRA_IDS = 100  # the slow T5Tokenizer's <extra_id_*>: len(tokenizer) = pieces + 100
WHERE = (
    f"put config.json + the weights of {MODEL_REPO} (or -xl) and {SPIECE} of {TOKENIZER_REPO} in "
    f"one folder, with config.json + the weights of {VISION_REPO} in its subfolder {VISION_DIR}/"
)
TINY_T5: dict[str, Any] = {
    "vocab_size": 320, "d_model": 32, "d_ff": 64, "d_kv": 16, "num_layers": 2,
    "num_decoder_layers": 2, "num_heads": 2, "feed_forward_proj": "gated-gelu",
    "tie_word_embeddings": False, "decoder_start_token_id": 0, "pad_token_id": 0,
    "eos_token_id": 1, "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
    "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2,
    "mm_vision_select_feature": "patch", "mm_hidden_size": 32,
}  # fmt: skip
TINY_VISION: dict[str, Any] = {
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
    "image_size": 336, "patch_size": 14, "projection_dim": 16, "hidden_act": "quick_gelu",
}  # fmt: skip
TINY_SPIECE_SIZE = 120
#: FlanT5-XL (zhiqiulin/clip-flant5-xl's config.json) and CLIP ViT-L/14-336, for the cost benchmark.
FULL_T5_XL: dict[str, Any] = {
    **TINY_T5, "vocab_size": 32128, "d_model": 2048, "d_ff": 5120, "d_kv": 64, "num_layers": 24,
    "num_decoder_layers": 24, "num_heads": 32, "mm_hidden_size": 1024,
}  # fmt: skip
FULL_VISION: dict[str, Any] = {
    "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
    "num_attention_heads": 16, "image_size": 336, "patch_size": 14, "projection_dim": 768,
    "hidden_act": "quick_gelu",
}  # fmt: skip
_T5_SKIP = ("architectures", "model_type", "transformers_version", "torch_dtype", "dtype")


def expand2square(image: Any, background: tuple[int, ...]) -> Any:
    """mm_utils.py lines 128-139: pad the short side, the image centred (floor offset)."""
    from PIL import Image

    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    result = Image.new(image.mode, (side, side), background)
    result.paste(image, ((side - width) // 2, (side - height) // 2))
    return result


def preprocess_image(image: Any, size: int = 336) -> torch.Tensor:
    """RGB, ``expand2square`` with the mean colour, CLIP-336's processor: float (3, size, size)."""
    import numpy as np
    from PIL import Image

    image = expand2square(image.convert("RGB"), tuple(int(x * 255) for x in OPENAI_CLIP_MEAN))
    image = image.resize((size, size), Image.BICUBIC)  # square: the shortest edge, no crop left
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean, std = torch.tensor(OPENAI_CLIP_MEAN), torch.tensor(OPENAI_CLIP_STD)
    return (x - mean[:, None, None]) / std[:, None, None]


class ClipT5(nn.Module):
    """CLIP-FlanT5: FlanT5 with the CLIP tower's projected patch features spliced into its input."""

    def __init__(self, t5: dict[str, Any], vision: dict[str, Any]) -> None:
        from transformers import CLIPVisionConfig, CLIPVisionModel, T5Config

        super().__init__()
        self.select_layer = int(t5.get("mm_vision_select_layer", -2))
        if t5.get("mm_vision_select_feature", "patch") != "patch":
            raise ValueError("only mm_vision_select_feature='patch' (the released models') reads")
        if t5.get("mm_projector_type", "mlp2x_gelu") != "mlp2x_gelu":
            raise ValueError("only mm_projector_type='mlp2x_gelu' (the released models') reads")
        self.t5 = self._t5(T5Config(**{k: v for k, v in t5.items() if k not in _T5_SKIP}))
        self.vision_tower = CLIPVisionModel(CLIPVisionConfig(**vision))
        d_model, mm_hidden = self.t5.config.d_model, int(t5["mm_hidden_size"])
        self.mm_projector = nn.Sequential(
            nn.Linear(mm_hidden, d_model), nn.GELU(), nn.Linear(d_model, d_model)
        )

    @staticmethod
    def _t5(config: Any) -> nn.Module:
        from transformers import T5ForConditionalGeneration

        model = T5ForConditionalGeneration(config)
        model.lm_head.weight = nn.Parameter(model.lm_head.weight.detach().clone())  # untie
        model.config.tie_word_embeddings = False
        return model

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.vision_tower(pixel_values=pixels, output_hidden_states=True)
        return self.mm_projector(out.hidden_states[self.select_layer][:, 1:])

    def answer_logprob(
        self,
        pixels: torch.Tensor,
        prefix: list[int],
        suffixes: list[list[int]],
        answer: list[int],
        n_vocab: int,
    ) -> torch.Tensor:
        """Mean log-probability of ``answer`` given [prefix, image, suffix_i], per sample."""
        embed = self.t5.get_input_embeddings()
        feats = self.image_features(pixels)
        dev = feats.device
        rows = [
            torch.cat([embed(torch.tensor(prefix, device=dev)), f.to(embed.weight.dtype),
                       embed(torch.tensor(s, device=dev))])
            for f, s in zip(feats, suffixes, strict=True)
        ]  # fmt: skip
        length = max(r.shape[0] for r in rows)
        inputs = torch.zeros(len(rows), length, rows[0].shape[1], dtype=rows[0].dtype, device=dev)
        mask = torch.zeros(len(rows), length, dtype=torch.long, device=dev)
        for i, r in enumerate(rows):
            inputs[i, : r.shape[0]], mask[i, : r.shape[0]] = r, 1
        labels = torch.tensor([answer] * len(rows), device=dev)
        decoder_ids = self.t5._shift_right(labels)
        logits = self.t5(
            inputs_embeds=inputs, attention_mask=mask, decoder_input_ids=decoder_ids
        ).logits
        logp = torch.log_softmax(logits[..., :n_vocab].float(), dim=-1)
        return logp.gather(-1, labels[..., None]).squeeze(-1).mean(-1)


def _weight_files(folder: Path) -> list[Path]:
    """The checkpoint files of ``folder``: an index's shards, else every weights file."""
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).is_file():
            shards = set(json.loads((folder / index).read_text())["weight_map"].values())
            return sorted(folder / s for s in shards)
    files = sorted(
        p
        for p in folder.iterdir()
        if p.suffix in (".safetensors", ".bin", ".pt") and not p.name.startswith("training_args")
    )  # LLaVA-style repos keep one
    if not files:
        raise FileNotFoundError(f"no weights (*.safetensors, *.bin) in {folder}")
    return files


def _hub_folder() -> Path:
    """The three repos from the hub cache (downloaded unless offline), linked into one folder."""
    from huggingface_hub import snapshot_download

    offline = hub_offline()
    model = Path(snapshot_download(MODEL_REPO, local_files_only=offline,
                                   allow_patterns=["*.json", "*.safetensors", "*.bin"]))  # fmt: skip
    tok = Path(snapshot_download(TOKENIZER_REPO, local_files_only=offline,
                                 allow_patterns=[SPIECE]))  # fmt: skip
    vision = Path(snapshot_download(VISION_REPO, local_files_only=offline,
                                    allow_patterns=["*.json", "*.safetensors"]))  # fmt: skip
    files = {p.name: p for p in model.iterdir()}
    return linked_folder(NAME, {**files, SPIECE: tok / SPIECE, VISION_DIR: vision})


def load_model(source: str | None) -> tuple[ClipT5, Any, str]:
    """CLIP-FlanT5 with the weights of folder ``source`` (None: the hub cache), its sentencepiece
    tokenizer, and the weights' content id."""
    try:
        import sentencepiece
        from transformers import CLIPVisionModel

        folder = _hub_folder() if source is None else Path(source).expanduser()
        for need in ("config.json", SPIECE, f"{VISION_DIR}/config.json"):
            if not (folder / need).is_file():
                raise FileNotFoundError(f"no {need} in {folder}")
        t5_cfg = json.loads((folder / "config.json").read_text())
        vision_cfg = json.loads((folder / VISION_DIR / "config.json").read_text())
        vision_cfg = vision_cfg.get("vision_config", vision_cfg)  # a full CLIPModel's config
        model = ClipT5(t5_cfg, {k: v for k, v in vision_cfg.items() if k not in _T5_SKIP})
        # The reference's own load of the tower (clip_encoder.py line 24); a CLIPModel checkpoint
        # (the hub repo's) gives its vision half.
        tower = CLIPVisionModel.from_pretrained(
            str(folder / VISION_DIR), local_files_only=True, dtype=torch.float32
        )
        state = {"vision_tower." + k: v for k, v in tower.state_dict().items()}
        files = _weight_files(folder)
        for f in files:
            for k, v in read_state_dict(f).items():
                if k.startswith("vision_tower.vision_tower."):  # the checkpoint's own tower wins
                    rest = k.removeprefix("vision_tower.vision_tower.").removeprefix(
                        "vision_model."
                    )
                    state["vision_tower." + rest] = v
                elif k.startswith("mm_projector."):
                    state[k] = v
                elif k.split(".")[0] in ("shared", "encoder", "decoder", "lm_head"):
                    state["t5." + k] = v
        state.setdefault("t5.encoder.embed_tokens.weight", state.get("t5.shared.weight"))
        state.setdefault("t5.decoder.embed_tokens.weight", state.get("t5.shared.weight"))
        model.load_state_dict({k: v for k, v in state.items() if v is not None}, strict=True)
        tokenizer = sentencepiece.SentencePieceProcessor(model_file=str(folder / SPIECE))
    except Exception as exc:  # missing file, hub miss, unpickling refused, wrong keys: one line
        raise missing_judge_weights(NAME, WHERE, exc) from exc
    wid = local_weights_id(folder) if len(files) > 1 else local_weights_id(files[0])
    return model, tokenizer, wid


def train_tiny_spiece(path: Path, size: int = TINY_SPIECE_SIZE) -> None:
    """A tiny sentencepiece model with T5's special ids (pad 0, ``</s>`` 1, unk 2, no bos), trained
    on the question template and a few prompts: the test tokenizer of a random-weight model."""
    import io

    import sentencepiece

    words = ("a photo of dog cat red blue cube on the beach in box moon oil painting lighthouse "
             "at dusk robot outfit wearing hat yes no").split()  # fmt: skip
    corpus = [SYSTEM_MSG, QUESTION, ANSWER, " USER: ", " ASSISTANT: "]
    corpus += [QUESTION.format(" ".join(words[i : i + 4])) for i in range(len(words))]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus * 4), model_writer=model, vocab_size=size,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, num_threads=1,
        character_coverage=1.0, minloglevel=2, hard_vocab_limit=False,
    )  # fmt: skip
    path.write_bytes(model.getvalue())


def build_random(folder: Path, config: dict[str, Any] | None = None) -> None:
    """A random-weight CLIP-FlanT5 folder in the released layout: ``config.json`` +
    ``model.safetensors`` (T5 keys at the top, ``mm_projector.*``), a tiny ``spiece.model``, and
    ``vision_tower/`` (a CLIPVisionModel's ``config.json`` + ``model.safetensors``)."""
    from safetensors.torch import save_file

    config = config or {"t5": TINY_T5, "vision": TINY_VISION}
    model = ClipT5(config["t5"], config["vision"])
    with torch.no_grad():  # larger than T5's init, so the answer's probability varies
        for p in model.mm_projector.parameters():
            p.normal_(0.0, 0.3)
        model.t5.lm_head.weight.normal_(0.0, 0.3)
    state = {}
    for k, v in model.state_dict().items():
        if k.startswith("t5.") and "embed_tokens" not in k:
            state[k.removeprefix("t5.")] = v.contiguous()
        elif k.startswith("mm_projector."):
            state[k] = v.contiguous()
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({**config["t5"], "model_type": "clip_t5"}))
    model.vision_tower.save_pretrained(folder / VISION_DIR)
    train_tiny_spiece(folder / SPIECE)


class VqaScoreJudge(JudgeEncoder):
    def __init__(self, *args: Any, tokenizer: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tokenizer = tokenizer
        self.n_vocab = tokenizer.get_piece_size() + T5_EXTRA_IDS  # mm_utils.py line 224

    def _ids(self, text: str) -> list[int]:
        """The slow T5Tokenizer's ids: sentencepiece pieces, then ``</s>``."""
        return [*self.tokenizer.encode(text), self.tokenizer.eos_id()]

    def _score_batch(self, pixels: torch.Tensor, texts: list[str]) -> torch.Tensor:
        before, after = [], []
        for text in texts:
            chat = f"{SYSTEM_MSG} USER: {IMAGE_TOKEN}\n{QUESTION.format(text)} ASSISTANT: "
            head, tail = chat.split(IMAGE_TOKEN)
            before.append(self._ids(head))
            after.append(self._ids(tail))
        logp = self.model.answer_logprob(pixels, before[0], after, self._ids(ANSWER), self.n_vocab)
        return logp.exp()


def load(
    spec: EncoderSpec,
    weights: str | None,
    tiny: bool,
    preprocess: Any,
    device: Any,
    dtype: Any,
    batch_size: int,
    cache_dir: Path | None,
) -> VqaScoreJudge:
    tiny_cfg = {"t5": TINY_T5, "vision": TINY_VISION, "spiece": TINY_SPIECE_SIZE}
    source = judge_source(spec, weights, tiny, tiny_cfg, build_random, cache_dir)
    model, tokenizer, wid = load_model(source)
    size = model.vision_tower.config.image_size
    prep = JudgePreprocess(
        lambda im: preprocess_image(im, size),
        f"vqascore-expand2square-mean-bicubic{size}-openai",
        size=size,
    )
    return VqaScoreJudge(
        spec.name, model, wid, prep, device, dtype, batch_size, source or spec.default_weights,
        tokenizer=tokenizer,
    )  # fmt: skip


register_judge(
    name=NAME,
    criterion="controllability",
    description='VQAScore, CLIP-FlanT5: P("Yes" | image, "Does this figure show {prompt}?")',
    load=load,
    default_weights=MODEL_REPO,
    value_range=(0.0, 1.0),
)
