"""Training on the tiny base: the loss really goes down, base weights stay bit-identical, files
carry kohya keys + metadata, save → load gives identical outputs, resume equals an uninterrupted
run, and a NaN loss stops with a clear error that keeps the last good checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from adapters_testutil import unet_te_outputs
from t2ibench.adapters import (
    TrainingDivergedError,
    apply_adapter,
    fixed_loss,
    load_trainer_config,
    read_adapter,
    train,
    train_run,
)
from t2ibench.adapters import training as training_mod
from t2ibench.adapters.files import build_metadata, save_adapter

FAST = ["resolution=64", "batch_size=8", "warmup_steps=0", "lr=2e-3"]


@pytest.fixture(scope="module")
def lora_run(adapters_cache, demo_dataset, tmp_path_factory):
    """One LoRA run of 3 epochs (checkpoints 1 and 3) on the tiny base, base snapshot around it."""
    from t2ibench.models import load_base

    pipe = load_base("tiny")
    before = {
        part: {k: v.clone() for k, v in getattr(pipe, part).state_dict().items()}
        for part in ("unet", "text_encoder", "vae")
    }
    out = tmp_path_factory.mktemp("lora-run")
    cfg = load_trainer_config("lora", overrides=FAST)
    result = train_run(
        "lora",
        demo_dataset,
        "tiny",
        out,
        cfg,
        epochs=3,
        save_epochs=(1, 3),
        progress=False,
        pipe=pipe,
    )
    return {"pipe": pipe, "before": before, "out": out, "cfg": cfg, "result": result}


def test_checkpoints_and_metadata(lora_run) -> None:
    from t2ibench.models import base_fingerprint

    res = lora_run["result"]
    assert [p.name for p in res.checkpoints] == [
        "lora-e000001.safetensors",
        "lora-e000003.safetensors",
    ]
    assert res.epochs_trained == 3 and res.steps == len(res.losses) > 0
    tensors, meta = read_adapter(res.checkpoints[-1])
    assert all(v.dtype == torch.float16 for v in tensors.values())
    stems = {k.split(".")[0] for k in tensors}
    suffixes = {k.split(".", 1)[1] for k in tensors}
    assert suffixes == {"lora_down.weight", "lora_up.weight", "alpha"}
    assert any(s.startswith("lora_unet_down_blocks_0_attentions_0_") for s in stems)
    assert any(s.startswith("lora_te_text_model_encoder_layers_0_mlp_fc1") for s in stems)
    import t2ibench

    cfg = json.loads(meta["t2ibench_trainer_config"])
    assert cfg["dim"] == 8 and cfg["alpha"] == 4.0 and cfg["lr"] == 2e-3 and cfg["epochs"] == 3
    assert meta["t2ibench_version"] == t2ibench.__version__
    fp = base_fingerprint("tiny")
    assert meta["t2ibench_base_model"] == "tiny" and meta["t2ibench_base_sha256"] == fp["sha256"]
    assert meta["t2ibench_epoch"] == "3" and meta["ss_network_module"] == "lycoris.kohya"
    # the up matrices trained away from their zero init
    assert all(tensors[f"{s}.lora_up.weight"].abs().sum() > 0 for s in stems)


def test_base_weights_bit_identical(lora_run) -> None:
    pipe, before = lora_run["pipe"], lora_run["before"]
    for part, state in before.items():
        now = getattr(pipe, part).state_dict()
        assert now.keys() == state.keys()
        for k, v in state.items():
            assert torch.equal(now[k], v), f"{part}.{k} changed"
    # and no adapter is left attached
    assert all("forward" not in m.__dict__ for m in pipe.unet.modules())


def test_training_lowers_the_loss(lora_run, demo_dataset) -> None:
    """The objective on fixed noise and timesteps: base vs base + the trained LoRA."""
    pipe = lora_run["pipe"]
    before = fixed_loss(pipe, demo_dataset, seed=5, draws=2)
    with apply_adapter(pipe, lora_run["result"].checkpoints[-1]):
        after = fixed_loss(pipe, demo_dataset, seed=5, draws=2)
    assert after < 0.95 * before, (before, after)
    # and the per-step training loss trends down too
    losses = lora_run["result"].losses
    k = max(3, len(losses) // 4)
    assert sum(losses[-k:]) / k < sum(losses[:k]) / k


def test_save_load_identical_outputs(lora_run, tmp_path: Path) -> None:
    from t2ibench.models import load_base

    pipe = lora_run["pipe"]
    ckpt = lora_run["result"].checkpoints[-1]
    with apply_adapter(pipe, ckpt) as handle:
        first = unet_te_outputs(pipe)
        again = tmp_path / "again.safetensors"
        save_adapter(handle.network, again, build_metadata(lora_run["cfg"], None))
    other = load_base("tiny")
    with apply_adapter(other, again):
        second = unet_te_outputs(other)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    t1, _ = read_adapter(ckpt)
    t2, _ = read_adapter(again)
    assert t1.keys() == t2.keys() and all(torch.equal(t1[k], t2[k]) for k in t1)


def test_resume_equals_uninterrupted(lora_run, demo_dataset, tmp_path: Path) -> None:
    """1 epoch, stop, then resume to 3: the same tensors as the 3-epoch run, bit for bit."""
    cfg = lora_run["cfg"]
    first = train(
        "lora", demo_dataset, "tiny", tmp_path, cfg, epochs=1, save_epochs=(1, 3), progress=False
    )
    assert [p.name for p in first] == ["lora-e000001.safetensors"]
    # gradient checkpointing changes memory, not results
    gc = train(
        "lora",
        demo_dataset,
        "tiny",
        tmp_path / "gc",
        cfg.replace(gradient_checkpointing=True),
        epochs=1,
        save_epochs=(1,),
        progress=False,
    )
    a, _ = read_adapter(first[0])
    b, _ = read_adapter(gc[0])
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-3) for k in a)
    res = train_run(
        "lora", demo_dataset, "tiny", tmp_path, cfg, epochs=3, save_epochs=(1, 3), progress=False
    )
    assert res.epochs_trained == 2  # epoch 1 was not redone
    a, _ = read_adapter(res.checkpoints[-1])
    b, _ = read_adapter(lora_run["result"].checkpoints[-1])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a finished run resumes to nothing; another config in the same folder is refused
    assert (
        train_run(
            "lora", demo_dataset, "tiny", tmp_path, cfg, epochs=3, progress=False
        ).epochs_trained
        == 0
    )
    from t2ibench.errors import ConfigError

    with pytest.raises(ConfigError, match="different config.*dim"):
        train("lora", demo_dataset, "tiny", tmp_path, cfg.replace(dim=4), epochs=4, progress=False)


def test_nan_loss_stops_and_keeps_last_checkpoint(
    adapters_cache, demo_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_trainer_config("loha", overrides=FAST)
    train("loha", demo_dataset, "tiny", tmp_path, cfg, epochs=1, save_epochs=(1, 2), progress=False)
    good = tmp_path / "loha-e000001.safetensors"
    saved = good.read_bytes()
    state = (tmp_path / "loha-state.pt").read_bytes()

    real = training_mod.diffusion_loss
    calls = {"n": 0}

    def nan_on_third(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(training_mod, "diffusion_loss", nan_on_third)
    with pytest.raises(
        TrainingDivergedError,
        match=r"loss became nan at epoch 2.*loha-e000001\.safetensors \(kept\)",
    ):
        train(
            "loha",
            demo_dataset,
            "tiny",
            tmp_path,
            cfg,
            epochs=2,
            save_epochs=(1, 2),
            progress=False,
        )
    assert good.read_bytes() == saved  # the last good checkpoint is untouched
    assert (tmp_path / "loha-state.pt").read_bytes() == state  # resume point too
    assert not (tmp_path / "loha-e000002.safetensors").exists()


def test_real_divergence_is_caught(adapters_cache, demo_dataset, tmp_path: Path) -> None:
    """An absurd learning rate really blows the loss up (no mocking)."""
    cfg = load_trainer_config("lokr", overrides=[*FAST, "lr=1e30", "max_grad_norm=0"])
    with pytest.raises(TrainingDivergedError, match="training stopped. Last good checkpoint: none"):
        train("lokr", demo_dataset, "tiny", tmp_path, cfg, epochs=2, progress=False)
    assert not list(tmp_path.glob("*.safetensors"))


@pytest.mark.parametrize("trainer", ["loha", "lokr", "native"])
def test_other_trainers_train_and_save(
    adapters_cache, demo_dataset, tmp_path: Path, trainer: str
) -> None:
    from t2ibench.models import load_base

    pipe = load_base("tiny")
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    over = [*FAST, "lr=1e-4"] if trainer == "native" else FAST
    cfg = load_trainer_config(trainer, overrides=[*over, "preset=full", "te_preset=attn-only"])
    res = train_run(
        trainer, demo_dataset, "tiny", tmp_path, cfg, epochs=1, progress=False, pipe=pipe
    )
    assert all(torch.equal(before[k], v) for k, v in pipe.unet.state_dict().items())
    tensors, meta = read_adapter(res.checkpoints[0])
    want = {"loha": "hada_w1_a", "lokr": "lokr_w1", "native": "diff"}[trainer]
    assert any(k.endswith("." + want) for k in tensors)
    assert any(k.startswith("lora_unet_conv_in.") for k in tensors)  # full preset on the UNet
    assert not any("mlp_fc1" in k for k in tensors)  # attn-only on the text encoder
    with apply_adapter(pipe, res.checkpoints[0]):
        out, _ = unet_te_outputs(pipe)
    assert not torch.equal(out, unet_te_outputs(pipe)[0])


def test_v_prediction_target(tiny_pipe) -> None:
    """With a v-prediction scheduler the loss regresses the velocity, not the noise."""
    from diffusers import DDPMScheduler
    from t2ibench.adapters.training import diffusion_loss

    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    caps = ["a sks toy", ""]
    for pred in ("epsilon", "v_prediction"):
        sched = DDPMScheduler(prediction_type=pred)
        with torch.no_grad():
            got = diffusion_loss(tiny_pipe, latents, caps, torch.Generator().manual_seed(0), sched)
            g = torch.Generator().manual_seed(0)
            noise = torch.randn(latents.shape, generator=g)
            t = torch.randint(0, 1000, (2,), generator=g)
            ids = tiny_pipe.tokenizer(
                caps, padding="max_length", max_length=77, return_tensors="pt"
            ).input_ids
            out = tiny_pipe.unet(
                sched.add_noise(latents, noise, t), t, tiny_pipe.text_encoder(ids)[0]
            ).sample
        target = sched.get_velocity(latents, noise, t) if pred == "v_prediction" else noise
        torch.testing.assert_close(got, torch.nn.functional.mse_loss(out, target))


def test_native_full_diffusers_checkpoint(adapters_cache, demo_dataset, tmp_path: Path) -> None:
    from t2ibench.models import load_base

    pipe = load_base("tiny")
    base_out, _ = unet_te_outputs(pipe)
    cfg = load_trainer_config("native", overrides=[*FAST, "lr=1e-4", "native_save=diffusers"])
    res = train_run(
        "native", demo_dataset, "tiny", tmp_path, cfg, epochs=1, progress=False, pipe=pipe
    )
    folder = res.checkpoints[0]
    assert folder.name == "native-e000001" and (folder / "model_index.json").is_file()
    meta = json.loads((folder / "t2ibench_metadata.json").read_text())
    assert json.loads(meta["t2ibench_trainer_config"])["native_save"] == "diffusers"
    assert torch.equal(unet_te_outputs(pipe)[0], base_out)  # the live base was swapped back
    tuned = load_base(folder)
    assert not torch.allclose(unet_te_outputs(tuned)[0], base_out)
