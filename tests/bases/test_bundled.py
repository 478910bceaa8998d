"""Single-file SDXL / SD3.5 / FLUX.1 bases load with the bundled diffusers configs
(``t2ibench/bases/configs``): the variant from the file's keys, the config folder written into the
cache, diffusers' ``from_single_file`` converting the file. Tiny SDXL-class (SGM key layout) and
SD3.5-Medium-class all-in-one (SAI's layout) files, written here from tiny diffusers models, load
through ``load_base`` with the bundled trees' tiny twins; the full-size configs build the published
architectures on the meta device."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from t2ibench.architectures import BaseModelError
from t2ibench.bases import bundled

# -- SAI's SD3 layout from diffusers' names (the inverse of diffusers'
#    convert_sd3_transformer_checkpoint_to_diffusers and convert_ldm_vae_checkpoint) ------------


def _swap(t: torch.Tensor) -> torch.Tensor:  # (shift, scale) ↔ (scale, shift); its own inverse
    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def _sai_transformer(sd: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    top = {
        "pos_embed.pos_embed": "pos_embed",
        "pos_embed.proj": "x_embedder.proj",
        "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
        "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
        "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
        "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
        "context_embedder": "context_embedder",
        "proj_out": "final_layer.linear",
    }
    block = {
        "attn.norm_q": "x_block.attn.ln_q",
        "attn.norm_k": "x_block.attn.ln_k",
        "attn.norm_added_q": "context_block.attn.ln_q",
        "attn.norm_added_k": "context_block.attn.ln_k",
        "attn.to_out.0": "x_block.attn.proj",
        "attn.to_add_out": "context_block.attn.proj",
        "attn2.norm_q": "x_block.attn2.ln_q",
        "attn2.norm_k": "x_block.attn2.ln_k",
        "attn2.to_out.0": "x_block.attn2.proj",
        "norm1.linear": "x_block.adaLN_modulation.1",
        "norm1_context.linear": "context_block.adaLN_modulation.1",
        "ff.net.0.proj": "x_block.mlp.fc1",
        "ff.net.2": "x_block.mlp.fc2",
        "ff_context.net.0.proj": "context_block.mlp.fc1",
        "ff_context.net.2": "context_block.mlp.fc2",
    }
    qkv = {
        "attn.to_": "x_block.attn.qkv",
        "attn.add_": "context_block.attn.qkv",
        "attn2.to_": "x_block.attn2.qkv",
    }
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        stem, _, leaf = key.rpartition(".")
        if stem == "pos_embed.pos_embed" or key == "pos_embed.pos_embed":
            out["pos_embed"] = value
        elif stem in top:
            out[f"{top[stem]}.{leaf}"] = value
        elif stem == "norm_out.linear":
            out[f"final_layer.adaLN_modulation.1.{leaf}"] = _swap(value)
        elif stem.startswith("transformer_blocks."):
            _, i, sub = stem.split(".", 2)
            for prefix, fused in qkv.items():
                if sub in (f"{prefix}q", f"{prefix}q_proj"):
                    parts = [sd[key.replace(f"{prefix}q", f"{prefix}{c}")] for c in "qkv"]
                    out[f"joint_blocks.{i}.{fused}.{leaf}"] = torch.cat(parts)
            if sub in block:
                last = int(i) == num_layers - 1 and sub == "norm1_context.linear"
                out[f"joint_blocks.{i}.{block[sub]}.{leaf}"] = _swap(value) if last else value
    return out


def _ldm_vae(sd: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    direct = DIFFUSERS_TO_LDM_MAPPING["vae"]
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out = {}
    for key, value in sd.items():
        if key in direct:
            out[direct[key]] = value
            continue
        k = key.replace("conv_shortcut", "nin_shortcut")
        for i in range(n):
            k = k.replace(f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.")
            k = k.replace(
                f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."
            )
            k = k.replace(f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{n - 1 - i}.block.")
            k = k.replace(
                f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{n - 1 - i}.upsample."
            )
        for j in range(2):
            k = k.replace(f"mid_block.resnets.{j}.", f"mid.block_{j + 1}.")
        if "mid_block.attentions.0." in k:
            k = k.replace("mid_block.attentions.0.", "mid.attn_1.")
            for new, old in attn.items():
                k = k.replace(f"attn_1.{new}.", f"attn_1.{old}.")
        out[k] = value
    return out


_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0",
           "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1",
           "conv_shortcut": "skip_connection"}  # fmt: skip


def _ldm_unet(
    sd: dict[str, torch.Tensor], layers: int, attn_up: set[int]
) -> dict[str, torch.Tensor]:
    """SGM / LDM UNet names (the inverse of diffusers' convert_ldm_unet_checkpoint): ``layers``
    resnets per down block, ``attn_up``: up blocks with attentions (their upsampler is ``.2``)."""
    import re

    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    direct = {**DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"],
              **DIFFUSERS_TO_LDM_MAPPING["unet"]["addition_embed_type"]}  # fmt: skip
    out = {}
    for key, value in sd.items():
        if key in direct:
            out[direct[key]] = value
            continue
        m = re.match(
            r"(down|up)_blocks\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.+)",
            key,
        )
        mid = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", key)
        if m:
            side, b, kind, j, rest = (
                m.group(1),
                int(m.group(2)),
                m.group(3),
                int(m.group(4)),
                m.group(5),
            )
            per = layers + 1
            if kind in ("resnets", "attentions"):
                block = (1 + b * per + j) if side == "down" else (b * per + j)
                where = "input_blocks" if side == "down" else "output_blocks"
                if kind == "resnets":
                    name, _, leaf = rest.partition(".")
                    out[f"{where}.{block}.0.{_RESNET[name]}.{leaf}"] = value
                else:
                    out[f"{where}.{block}.1.{rest}"] = value
            elif kind == "downsamplers":
                out[f"input_blocks.{1 + b * per + layers}.0.op.{rest.removeprefix('conv.')}"] = (
                    value
                )
            else:
                slot = 2 if b in attn_up else 1
                out[f"output_blocks.{b * per + layers}.{slot}.{rest}"] = value
        elif mid:
            kind, j, rest = mid.group(1), int(mid.group(2)), mid.group(3)
            if kind == "resnets":
                name, _, leaf = rest.partition(".")
                out[f"middle_block.{2 * j}.{_RESNET[name]}.{leaf}"] = value
            else:
                out[f"middle_block.1.{rest}"] = value
        else:
            raise KeyError(key)
    return out


def _open_clip(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenCLIP's text-tower names (the inverse of diffusers' convert_open_clip_checkpoint)."""
    top = {"text_model.embeddings.position_embedding.weight": "positional_embedding",
           "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
           "text_model.final_layer_norm.weight": "ln_final.weight",
           "text_model.final_layer_norm.bias": "ln_final.bias"}  # fmt: skip
    layer = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc",
             "mlp.fc2": "mlp.c_proj", "self_attn.out_proj": "attn.out_proj"}  # fmt: skip
    out = {"text_projection": sd["text_projection.weight"].T.contiguous()}
    for key, value in sd.items():
        if key in top:
            out[top[key]] = value
        elif key.startswith("text_model.encoder.layers."):
            i, rest = key.removeprefix("text_model.encoder.layers.").split(".", 1)
            stem, _, leaf = rest.rpartition(".")
            if stem == "self_attn.q_proj":
                qkv = [sd[key.replace("q_proj", p)] for p in ("q_proj", "k_proj", "v_proj")]
                out[f"transformer.resblocks.{i}.attn.in_proj_{leaf}"] = torch.cat(qkv)
            elif stem in layer:
                out[f"transformer.resblocks.{i}.{layer[stem]}.{leaf}"] = value
    return out


def _tiny_tree(root: Path, variant: str, parts: dict) -> Path:
    """The bundled tree of ``variant`` with the tiny parts' configs in place of the real ones."""
    tree = root / "configs" / variant
    shutil.copytree(bundled.CONFIGS / variant, tree)
    for name, model in parts.items():
        (tree / name / "config.json").unlink()
        if name.startswith("text"):
            model.config.to_json_file(tree / name / "config.json")
        else:
            model.save_config(tree / name)
    return root / "configs"


@pytest.fixture(scope="module")
def tiny_sd35(tmp_path_factory):
    """(single file, tiny config tree, the diffusers parts): an SD3.5-Medium-class all-in-one
    file (MMDiT-X dual attention in block 0, RMS qk-norm) in SAI's / ComfyUI's key layout."""
    from diffusers import SD3Transformer2DModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from tests.bases.bases_testutil import _clip_text, _flow_vae, _t5_encoder

    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=32, caption_projection_dim=16,
        pooled_projection_dim=80, out_channels=4, pos_embed_max_size=16,
        dual_attention_layers=(0,), qk_norm="rms_norm",
    ).eval()  # fmt: skip
    torch.manual_seed(1)
    vae = _flow_vae(scaling_factor=1.5305, shift_factor=0.0609)
    te1 = _clip_text(True, 2)
    # bigG wider than CLIP-L: diffusers tells SD3's two CLIP towers in one file by their width
    torch.manual_seed(3)
    te2 = CLIPTextModelWithProjection(
        CLIPTextConfig(
            vocab_size=49408, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=77, hidden_act="gelu",
            projection_dim=48, bos_token_id=49406, eos_token_id=49407, pad_token_id=1,
        )
    ).eval()  # fmt: skip
    with torch.no_grad():  # SD3's CLIP-L projection is the identity (diffusers sets it so on load)
        te1.text_projection.weight.copy_(torch.eye(32))
    torch.manual_seed(4)
    t5 = _t5_encoder()
    parts = {"transformer": transformer, "vae": vae, "text_encoder": te1,
             "text_encoder_2": te2, "text_encoder_3": t5}  # fmt: skip

    root = tmp_path_factory.mktemp("bundled")
    configs = _tiny_tree(root, "sd3.5-medium", parts)

    state = {f"model.diffusion_model.{k}": v for k, v in
             _sai_transformer(transformer.state_dict(), 2).items()}  # fmt: skip
    state |= {f"first_stage_model.{k}": v for k, v in _ldm_vae(vae.state_dict(), 4).items()}
    for prefix, model in (("clip_l", te1), ("clip_g", te2), ("t5xxl", t5)):
        state |= {
            f"text_encoders.{prefix}.transformer.{k}": v for k, v in model.state_dict().items()
        }
    path = root / "sd3.5m-tiny.safetensors"
    save_file({k: v.clone().contiguous() for k, v in state.items()}, str(path))
    return path, configs, parts


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory):
    """(single file, tiny config tree, the diffusers parts): an SDXL-class file in SGM's layout
    (``model.diffusion_model.``, ``conditioner.embedders.0.transformer.`` CLIP-L,
    ``conditioner.embedders.1.model.`` OpenCLIP bigG, ``first_stage_model.``)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from tests.bases.bases_testutil import _clip_text

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), block_out_channels=(32, 64),
        layers_per_block=1, transformer_layers_per_block=(1, 2), attention_head_dim=(2, 4),
        cross_attention_dim=80, use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=8 * 6 + 48,
        norm_num_groups=16,
    ).eval()  # fmt: skip
    torch.manual_seed(1)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 32, 32), layers_per_block=1, latent_channels=4,
        norm_num_groups=8, sample_size=64, scaling_factor=0.13025,
    ).eval()  # fmt: skip
    te1 = _clip_text(False, 2)
    torch.manual_seed(3)  # bigG wider than CLIP-L (diffusers tells them apart by width)
    te2 = CLIPTextModelWithProjection(
        CLIPTextConfig(
            vocab_size=49408, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=77, hidden_act="gelu",
            projection_dim=48, bos_token_id=49406, eos_token_id=49407, pad_token_id=1,
        )
    ).eval()  # fmt: skip
    parts = {"unet": unet, "vae": vae, "text_encoder": te1, "text_encoder_2": te2}
    root = tmp_path_factory.mktemp("bundled-sdxl")
    configs = _tiny_tree(root, "sdxl-base-1.0", parts)
    state = {f"model.diffusion_model.{k}": v
             for k, v in _ldm_unet(unet.state_dict(), 1, attn_up={0}).items()}  # fmt: skip
    state |= {f"first_stage_model.{k}": v for k, v in _ldm_vae(vae.state_dict(), 4).items()}
    state |= {f"conditioner.embedders.0.transformer.text_model.{k.removeprefix('text_model.')}": v
              for k, v in te1.state_dict().items()}  # fmt: skip
    state |= {
        f"conditioner.embedders.1.model.{k}": v for k, v in _open_clip(te2.state_dict()).items()
    }
    path = root / "sdxl-tiny.safetensors"
    save_file({k: v.clone().contiguous() for k, v in state.items()}, str(path))
    return path, configs, parts


def test_sdxl_single_file_loads_with_bundled_configs(tiny_sdxl, monkeypatch, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    from t2ibench.models import load_base

    path, configs, parts = tiny_sdxl
    monkeypatch.setattr(bundled, "CONFIGS", configs)
    monkeypatch.setenv("T2IBENCH_CACHE", str(tmp_path))
    monkeypatch.delenv(bundled.T5_TOKENIZER_ENV, raising=False)  # SDXL has no T5
    pipe = load_base(path)
    assert isinstance(pipe, StableDiffusionXLPipeline)
    for name, model in parts.items():
        got = getattr(pipe, name).state_dict()
        for key, want in model.state_dict().items():
            assert torch.equal(got[key], want), f"{name}.{key}"
    assert pipe.tokenizer_2.pad_token == "!" and pipe.scheduler.config.timestep_spacing == "leading"


@pytest.fixture()
def t5_tokenizer(tmp_path, monkeypatch):
    from t2ibench.metrics.judges.vqascore import train_tiny_spiece

    folder = tmp_path / "t5-tokenizer"
    folder.mkdir()
    train_tiny_spiece(folder / "spiece.model")
    monkeypatch.setenv(bundled.T5_TOKENIZER_ENV, str(folder))
    monkeypatch.setenv("T2IBENCH_CACHE", str(tmp_path / "cache"))  # the tiny twin stays here
    return folder


def test_sd35_single_file_loads_with_bundled_configs(tiny_sd35, t5_tokenizer, monkeypatch):
    from diffusers import StableDiffusion3Pipeline

    from t2ibench.models import load_base

    path, configs, parts = tiny_sd35
    monkeypatch.setattr(bundled, "CONFIGS", configs)
    pipe = load_base(path)  # no config=: the architecture and variant from the keys
    assert isinstance(pipe, StableDiffusion3Pipeline)
    for name, model in parts.items():
        got = getattr(pipe, name).state_dict()
        for key, want in model.state_dict().items():
            assert torch.equal(got[key], want), f"{name}.{key}"
    assert pipe.scheduler.config.shift == 3.0  # the bundled scheduler
    ids = pipe.tokenizer_3("a photo of a dog", return_tensors="pt").input_ids
    assert ids.shape[1] > 1 and int(ids[0, -1]) == 1  # T5's </s>, from the user's vocabulary


def test_t5_vocabulary_not_given_is_one_line(tiny_sd35, monkeypatch, tmp_path):
    from t2ibench.models import load_base

    monkeypatch.delenv(bundled.T5_TOKENIZER_ENV, raising=False)
    monkeypatch.setenv("T2IBENCH_CACHE", str(tmp_path))
    with pytest.raises(BaseModelError, match=r"T5 tokenizer vocabulary is not bundled.*"
                                            + bundled.T5_TOKENIZER_ENV) as err:  # fmt: skip
        load_base(tiny_sd35[0])
    assert "\n" not in str(err.value)


def test_transformer_only_files_are_refused_in_one_line(tmp_path):
    """BFL's flux1-dev / SAI's sd3.5_large files hold the denoiser only: the configs carry no
    weights, so the missing parts are named."""
    from safetensors.torch import save_file

    from t2ibench.models import load_base

    flux = tmp_path / "flux1-dev.safetensors"
    save_file({"double_blocks.0.img_attn.norm.key_norm.scale": torch.ones(2),
               "guidance_in.in_layer.weight": torch.ones(2, 2)}, str(flux))  # fmt: skip
    with pytest.raises(BaseModelError, match="holds no CLIP-L, T5, VAE weights.*config=DIR"):
        load_base(flux)
    sd3 = tmp_path / "sd3.5_large.safetensors"
    save_file({"joint_blocks.0.context_block.adaLN_modulation.1.bias": torch.ones(2)}, str(sd3))
    with pytest.raises(BaseModelError, match="holds no CLIP-L, CLIP-G, T5, VAE weights"):
        load_base(sd3)


def test_variants_from_keys():
    from t2ibench.architectures import get_architecture

    flux, sd3 = get_architecture("flux"), get_architecture("sd3")
    assert flux.bundled_variant(["model.diffusion_model.guidance_in.in_layer.weight"]) == (
        "flux.1-dev"
    )
    assert flux.bundled_variant(["double_blocks.0.img_attn.qkv.weight"]) == "flux.1-schnell"
    assert sd3.bundled_variant(["joint_blocks.3.x_block.attn2.qkv.weight"]) == "sd3.5-medium"
    assert sd3.bundled_variant(["joint_blocks.37.x_block.mlp.fc1.weight"]) == "sd3.5-large"
    with pytest.raises(BaseModelError, match="SD3 Medium"):
        sd3.bundled_variant(["joint_blocks.23.x_block.mlp.fc1.weight"])
    assert bundled.variants() == [
        "flux.1-dev", "flux.1-schnell", "sd3.5-large", "sd3.5-medium", "sdxl-base-1.0",
    ]  # fmt: skip
    total = sum(f.stat().st_size for f in bundled.CONFIGS.rglob("*") if f.is_file())
    assert total < 100_000 and not any(bundled.CONFIGS.rglob("*.model"))  # JSON only, small


# published parameter counts (the hub repositories' model cards / safetensors indexes)
PUBLISHED = {
    ("sdxl-base-1.0", "unet"): 2_567_463_684,
    ("sdxl-base-1.0", "text_encoder_2"): 694_659_840,
    ("sdxl-base-1.0", "vae"): 83_653_863,
    ("flux.1-dev", "transformer"): 11_901_408_320,
    ("flux.1-dev", "text_encoder_2"): 4_762_310_656,
}


@pytest.mark.parametrize("variant", ["sdxl-base-1.0", "flux.1-dev"])
def test_full_size_configs_build_the_published_architectures(variant):
    import diffusers
    import transformers

    index = json.loads((bundled.CONFIGS / variant / "model_index.json").read_text())
    for (v, name), want in PUBLISHED.items():
        if v != variant:
            continue
        lib, cls = index[name]
        folder = bundled.CONFIGS / variant / name
        with torch.device("meta"):
            if lib == "diffusers":
                klass = getattr(diffusers, cls)
                model = klass.from_config(klass.load_config(folder))
            else:
                klass = getattr(transformers, cls)
                model = klass(klass.config_class.from_pretrained(folder))
        assert sum(p.numel() for p in model.parameters()) == want, (variant, name)


def test_bundled_folder_is_written_once_per_vocabulary(t5_tokenizer):
    first = bundled.bundled_config_folder("flux.1-schnell")
    assert (first / "tokenizer" / "vocab.json").is_file()
    assert (first / "tokenizer_2" / "spiece.model").is_file()
    assert bundled.bundled_config_folder("flux.1-schnell") == first
    sdxl = bundled.bundled_config_folder("sdxl-base-1.0")  # no T5: no vocabulary asked for
    pad = json.loads((sdxl / "tokenizer_2" / "special_tokens_map.json").read_text())["pad_token"]
    assert pad == "!"
