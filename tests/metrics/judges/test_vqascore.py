"""VQAScore (CLIP-FlanT5) golden test: our judge against a test-only restatement of the reference
scoring (linzhiqiu/t2v_metrics at 10d549b, ``t2v_metrics/models/vqascore_models/``; t2v-metrics
pins torch 2.6) on a shrunken random-weight CLIP-FlanT5 in the released layout, saved and re-loaded
through the judge's loading path. The restatement follows the reference's own code path: its
tokenisation around ``<image>``, its splice of the image features, its padding and masks, the
``resize_token_embeddings`` of the LM head and the loss-based probability."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from t2ibench.encoders import create_encoder
from t2ibench.errors import T2IBenchError
from tests.metrics.judges.conftest import PROMPTS

pytest.importorskip("sentencepiece")
IMAGE_TOKEN_INDEX, IGNORE_INDEX = -200, -100  # t2v_metrics/constants.py lines 6-7
SYSTEM_MSG = (  # t2v_metrics/constants.py line 5
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions."
)


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    return create_encoder("vqascore", tiny=True, cache_dir=tmp_path_factory.mktemp("judges"))


class SlowT5Tokenizer:
    """transformers 4's T5Tokenizer(use_fast=False, legacy): sentencepiece pieces + ``</s>``;
    ``len()`` counts the 100 ``<extra_id_*>`` tokens."""

    def __init__(self, path):
        import sentencepiece

        self.sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
        self.pad_token_id = 0

    def __call__(self, text):
        class Out:
            input_ids = [*self.sp.encode(text), self.sp.eos_id()]

        return Out()

    def __len__(self):
        return self.sp.get_piece_size() + 100


def t5_tokenizer_image_token(prompt, tokenizer):
    """mm_utils.py lines 164-179."""
    prompt_chunks = [tokenizer(chunk).input_ids for chunk in prompt.split("<image>")]

    def insert_separator(X, sep):
        return [ele for sublist in zip(X, [sep] * len(X), strict=True) for ele in sublist][:-1]

    input_ids = []
    for x in insert_separator(prompt_chunks, [IMAGE_TOKEN_INDEX]):
        input_ids.extend(x)
    return torch.tensor(input_ids, dtype=torch.long)


class ReferenceClipT5:
    """clip_t5.py's CLIPT5ForConditionalGeneration, loaded as mm_utils.load_pretrained_model
    (lines 198-231) does, on transformers' T5 and CLIP modules."""

    def __init__(self, folder: Path):
        from safetensors.torch import load_file
        from transformers import CLIPImageProcessorPil, CLIPVisionModel, T5Config
        from transformers import T5ForConditionalGeneration as T5

        cfg = json.loads((folder / "config.json").read_text())
        self.cfg = cfg
        keep = {k: v for k, v in cfg.items() if k != "model_type"}
        self.t5 = T5(T5Config(**keep)).eval()
        # transformers 5 ties lm_head to shared at construction; FlanT5's are distinct weights
        self.t5.lm_head.weight = torch.nn.Parameter(self.t5.lm_head.weight.detach().clone())
        self.t5.config.tie_word_embeddings = False
        state = load_file(str(folder / "model.safetensors"))
        t5_state = {k: v for k, v in state.items() if not k.startswith("mm_projector.")}
        missing, _ = self.t5.load_state_dict(t5_state, strict=False)
        assert set(missing) <= {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"}
        self.tokenizer = SlowT5Tokenizer(folder / "spiece.model")
        self.t5.resize_token_embeddings(len(self.tokenizer))  # mm_utils.py line 224
        assert self.t5.lm_head.weight.shape[0] == len(self.tokenizer)
        self.vision_tower = CLIPVisionModel.from_pretrained(str(folder / "vision_tower")).eval()
        hidden, d = cfg["mm_hidden_size"], cfg["d_model"]
        self.mm_projector = torch.nn.Sequential(  # projector/builder.py lines 39-46
            torch.nn.Linear(hidden, d), torch.nn.GELU(), torch.nn.Linear(d, d)
        )
        self.mm_projector.load_state_dict(
            {
                k.removeprefix("mm_projector."): v
                for k, v in state.items()
                if k.startswith("mm_projector.")
            }  # fmt: skip
        )
        size = self.vision_tower.config.image_size
        self.image_processor = CLIPImageProcessorPil(  # openai/clip-vit-large-patch14-336
            size={"shortest_edge": size}, crop_size={"height": size, "width": size},
            image_mean=[0.48145466, 0.4578275, 0.40821073],
            image_std=[0.26862954, 0.26130258, 0.27577711],
        )  # fmt: skip

    def encode_images(self, images):
        """clip_t5.py lines 134-137 and clip_encoder.py lines 29-51 (layer -2, patch tokens)."""
        out = self.vision_tower(images, output_hidden_states=True)
        return self.mm_projector(out.hidden_states[self.cfg["mm_vision_select_layer"]][:, 1:])

    def load_images(self, images):
        """clip_t5_model.py lines 208-220 with expand2square (mm_utils.py lines 128-139)."""
        from PIL import Image

        def expand2square(pil_img, background_color):
            width, height = pil_img.size
            if width == height:
                return pil_img
            elif width > height:
                result = Image.new(pil_img.mode, (width, width), background_color)
                result.paste(pil_img, (0, (width - height) // 2))
                return result
            result = Image.new(pil_img.mode, (height, height), background_color)
            result.paste(pil_img, ((height - width) // 2, 0))
            return result

        images = [im.convert("RGB") for im in images]
        bg = tuple(int(x * 255) for x in self.image_processor.image_mean)
        images = [expand2square(im, bg) for im in images]
        return torch.stack([self.image_processor(im, return_tensors="pt")["pixel_values"][0]
                            for im in images])  # fmt: skip

    def forward(self, images, texts):
        """clip_t5_model.py lines 224-285 and clip_t5.py prepare_inputs_labels_for_multimodal
        (lines 65-132), t5_chat style (lines 15-16)."""
        questions = [f'Does this figure show "{t}"? Please answer yes or no.' for t in texts]
        questions = [SYSTEM_MSG + " USER: " + "<image>" + "\n" + q + " ASSISTANT: "
                     for q in questions]  # fmt: skip
        answers = ["Yes" for _ in texts]
        images = self.load_images(images)
        input_ids = [t5_tokenizer_image_token(q, self.tokenizer) for q in questions]
        labels = [t5_tokenizer_image_token(a, self.tokenizer) for a in answers]
        input_ids = torch.nn.utils.rnn.pad_sequence(
            input_ids, batch_first=True, padding_value=self.tokenizer.pad_token_id
        )
        labels = torch.nn.utils.rnn.pad_sequence(labels, batch_first=True,
                                                 padding_value=IGNORE_INDEX)  # fmt: skip
        attention_mask = input_ids.ne(self.tokenizer.pad_token_id)
        decoder_attention_mask = labels.ne(IGNORE_INDEX)
        image_features = self.encode_images(images)
        embed_tokens = self.t5.encoder.embed_tokens
        new_input_embeds = []
        for i, cur_input_ids in enumerate(input_ids):
            image_token_start = torch.where(cur_input_ids == IMAGE_TOKEN_INDEX)[0][0]
            new_input_embeds.append(torch.cat([
                embed_tokens(cur_input_ids[:image_token_start]), image_features[i],
                embed_tokens(cur_input_ids[image_token_start + 1 :]),
            ]))  # fmt: skip
        new_input_embeds = torch.stack(new_input_embeds)  # same length: the pads are embedded
        pad_left = torch.full((input_ids.shape[0], new_input_embeds.shape[1] - input_ids.shape[1]),
                              True, dtype=attention_mask.dtype)  # fmt: skip
        attention_mask = torch.cat((pad_left, attention_mask), dim=1)
        outputs = self.t5(inputs_embeds=new_input_embeds, attention_mask=attention_mask,
                          decoder_attention_mask=decoder_attention_mask, labels=labels)  # fmt: skip
        lm_prob = torch.zeros(outputs.logits.shape[0])
        loss_fct = torch.nn.CrossEntropyLoss(reduction="mean")
        for k in range(lm_prob.shape[0]):
            lm_prob[k] = (-loss_fct(outputs.logits[k], labels[k])).exp()
        return lm_prob


def test_scores_equal_the_restated_reference(judge, judge_images):
    ref = ReferenceClipT5(Path(judge.source))
    with torch.no_grad():
        for texts in (PROMPTS, [PROMPTS[0]] * 3, ["a red cube"] * 3):
            ours = judge.score(judge_images, texts)
            theirs = ref.forward(judge_images, texts)  # one batch, padded as the reference pads
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=0)
            torch.testing.assert_close(ours.log(), theirs.log(), rtol=0, atol=1e-5)
        one = judge.score(judge_images[:1], PROMPTS[1:2])  # batch of one: same as in a batch
        torch.testing.assert_close(one, ref.forward(judge_images[:1], PROMPTS[1:2]), rtol=1e-5,
                                   atol=0)  # fmt: skip
    logp = judge.score(judge_images, PROMPTS).log()
    assert logp.std() > 1e-3 and ((logp > -20) & (logp < 0)).all()  # inputs matter, no underflow


def test_offline_without_weights_names_the_files(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(T2IBenchError, match=r"put config\.json \+ the weights of "
                       r"zhiqiulin/clip-flant5-xxl .* spiece\.model .* vision_tower/"):  # fmt: skip
        create_encoder("vqascore")
    (tmp_path / "w").mkdir()
    with pytest.raises(T2IBenchError, match="judge vqascore: no weights .*no config.json"):
        create_encoder("vqascore", weights=str(tmp_path / "w"))
