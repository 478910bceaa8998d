"""Trainer configs: paper defaults, TOML files, overrides, clear errors; the trainer registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from t2ibench.adapters import (
    TrainerConfig,
    TrainerSpec,
    get_trainer,
    list_trainers,
    load_trainer_config,
    register_trainer,
)
from t2ibench.adapters.registry import TRAINERS
from t2ibench.adapters.training import assign_bucket, effective_warmup, lr_factor, make_buckets
from t2ibench.errors import ConfigError


def test_builtin_trainers_and_entry_point_group() -> None:
    assert {"lora", "loha", "lokr", "native"} <= set(list_trainers())
    assert TRAINERS.entry_point_group == "t2ibench.trainers"
    with pytest.raises(ConfigError, match="unknown trainer 'lorra'.*Did you mean 'lora'"):
        get_trainer("lorra")


def test_paper_defaults() -> None:
    lora, loha, lokr, native = (load_trainer_config(t) for t in ("lora", "loha", "lokr", "native"))
    assert (lora.dim, lora.alpha, lora.lr) == (8, 4.0, 5e-4)
    assert (loha.dim, loha.alpha, loha.lr) == (4, 2.0, 5e-4)
    assert (lokr.factor, lokr.dim, lokr.alpha, lokr.lr) == (8, 10000, 1.0, 5e-4)
    assert native.lr == 1e-6
    for c in (lora, loha, lokr, native):
        assert c.weight_decay == 0.1 and c.warmup_steps == 3500 and c.batch_size == 8
        assert c.resolution == 512 and c.caption_dropout == 0.1 and c.epochs == 50
        assert c.save_epochs == (10, 30, 50) and c.optimizer == "adamw8bit"
        assert c.mixed_precision == "bf16" and c.train_text_encoder and c.preset == "attn-mlp"
        assert c.lrs() == {"unet": c.lr, "te": c.lr}  # same lr for UNet and text encoder
        assert c.betas == (0.9, 0.99) and c.max_grad_norm == 1.0 and not c.gradient_checkpointing


def test_toml_file_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "loha.toml"
    f.write_text(
        'trainer = "loha"\ndim = 16\nalpha = 8\nsave_epochs = [1, 2]\nte_preset = "attn-only"\n'
    )
    cfg = load_trainer_config("loha", f, ["lr=1e-3", "te_lr=5e-5", "use_tucker=true", "name=run-a"])
    assert (cfg.dim, cfg.alpha, cfg.save_epochs, cfg.lr) == (16, 8.0, (1, 2), 1e-3)
    assert cfg.presets() == {"unet": "attn-mlp", "te": "attn-only"}
    assert cfg.lrs() == {"unet": 1e-3, "te": 5e-5}
    assert cfg.use_tucker and cfg.output_name == "run-a"
    nested = tmp_path / "nested.toml"
    nested.write_text("[trainer]\nfactor = 4\n")
    assert load_trainer_config("lokr", nested).factor == 4
    assert load_trainer_config(
        "lora", overrides=["save_epochs=5,7", "unet_preset=none"]
    ).save_epochs == (5, 7)


def test_unknown_keys_are_named(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("dim = 4\nlearning_rate = 1e-4\nnetwork_dim = 3\n")
    with pytest.raises(
        ConfigError, match=r"bad\.toml: unknown keys 'learning_rate', 'network_dim'"
    ):
        load_trainer_config("lora", f)
    with pytest.raises(ConfigError, match="--set dimm=4: unknown key 'dimm'"):
        load_trainer_config("lora", overrides=["dimm=4"])


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("dim=abc", "'dim' must be an integer"),
        ("dim=2.5", "'dim' must be an integer"),
        ("lr=fast", "'lr' must be a number"),
        ("use_tucker=maybe", "'use_tucker' must be true or false"),
        ("preset=attention", "'preset' must be one of"),
        ("optimizer=sgd", "'optimizer' must be one of"),
        ("resolution=500", "'resolution' must be a positive multiple"),
        ("caption_dropout=2", "'caption_dropout' must be <= 1"),
        ("dim", "expected key=value"),
    ],
)
def test_bad_values(override: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_trainer_config("lora", overrides=[override])


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_trainer_config("lora", tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("dim = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_trainer_config("lora", bad)
    other = tmp_path / "other.toml"
    other.write_text('trainer = "lokr"\n')
    with pytest.raises(ConfigError, match="'trainer' is 'lokr'"):
        load_trainer_config("lora", other)


def test_config_json_roundtrip() -> None:
    import json

    from t2ibench.adapters import config_from_dict

    cfg = load_trainer_config("lokr", overrides=["factor=4", "save_epochs=1,2"])
    again = config_from_dict(json.loads(cfg.to_json()))
    assert again == cfg and isinstance(again, TrainerConfig)


def test_warmup_clamp_and_schedule() -> None:
    cfg = load_trainer_config("lora")
    assert effective_warmup(cfg, 40_000) == 3500  # a paper-sized run keeps the paper's warm-up
    assert effective_warmup(cfg, 20) == 5  # a short run: a quarter of its steps
    assert effective_warmup(cfg.replace(warmup_steps=0), 20) == 0
    assert [lr_factor(s, 4) for s in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_factor(0, 0) == 1.0


def test_buckets() -> None:
    b = make_buckets(512, 320, 960, 64)
    assert (512, 512) in b and (320, 768) in b and (768, 320) in b
    assert all(w % 64 == 0 and h % 64 == 0 and w * h <= 512 * 512 for w, h in b)
    assert all(320 <= w <= 960 and 320 <= h <= 960 for w, h in b)
    assert assign_bucket((1000, 1000), b) == (512, 512)
    assert assign_bucket((400, 1000), b) == (320, 768)
    assert make_buckets(64, 320, 960, 64) == [(64, 64)]  # the tiny base's resolution


def test_register_third_party_trainer() -> None:
    """A trainer from a module factory: rank-1 LoRA on the text encoder's q_proj only."""
    import torch.nn as nn

    from t2ibench.adapters.trainers.lora import LoRAModule

    def factory(name: str, layer: nn.Module, cfg: TrainerConfig):
        return LoRAModule(name, layer, 1, 1.0) if name.endswith("q_proj") else None

    spec = register_trainer(
        TrainerSpec("q-lora-test", "test trainer", module_factory=factory, defaults={"lr": 1e-3}),
        overwrite=True,
    )
    assert get_trainer("q-lora-test") is spec
    cfg = load_trainer_config("q-lora-test", overrides=["preset=attn-only"])
    assert cfg.lr == 1e-3 and cfg.trainer == "q-lora-test"
    from t2ibench.models.sd15 import build_sd15

    unet, te = build_sd15("meta")
    net = spec.build_network({"unet": unet, "te": te}, cfg)
    assert len(net) == 12 and all(n.endswith("self_attn_q_proj") for n in net.adapters)
    assert all(n.startswith("lora_te_text_model_encoder_layers_") for n in net.adapters)
