"""Training on the tiny base: the loss really goes down, base weights stay bit-identical, files
carry kohya keys + metadata, save → load gives identical outputs, resume equals an uninterrupted
run, and a NaN loss stops with a clear error that keeps the last good checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import stat
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
# The LoRA runs the module shares: 6 steps per epoch; a one-step warm-up (step 0 at lr 0), which
# the clamp (a quarter of the run) leaves alone at 1 and at 3 epochs, so a resumed or extended run
# that restarted its schedule would take a second zero-lr step and differ.
LORA = [*FAST, "warmup_steps=1"]


@pytest.fixture(scope="module")
def lora_run(tiny_base, demo_dataset, tmp_path_factory):
    """One LoRA run of 3 epochs (checkpoints 1 and 3) on the tiny base, base snapshot around it."""
    pipe = tiny_base()
    before = {
        part: {k: v.clone() for k, v in getattr(pipe, part).state_dict().items()}
        for part in ("unet", "text_encoder", "vae")
    }
    out = tmp_path_factory.mktemp("lora-run")
    cfg = load_trainer_config("lora", overrides=LORA)
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


@pytest.fixture(scope="module")
def first_epoch(adapters_cache, lora_run, demo_dataset, tmp_path_factory):
    """The same LoRA run stopped after 1 epoch (``epochs=1``, checkpoints 1 and 3 asked for),
    through ``train`` (which loads the base itself), written under umask 022. Tests that change
    its folder work on a copy."""
    out = tmp_path_factory.mktemp("first-epoch")
    old = os.umask(0o022)
    try:
        ckpts = train(
            "lora",
            demo_dataset,
            "tiny",
            out,
            lora_run["cfg"],
            epochs=1,
            save_epochs=(1, 3),
            progress=False,
        )
    finally:
        os.umask(old)
    return {"out": out, "checkpoints": ckpts}


@pytest.fixture(scope="module")
def extended_run(first_epoch, lora_run, demo_dataset, tmp_path_factory):
    """A copy of ``first_epoch``'s folder continued to 3 epochs (``--epochs 3`` on a finished
    1-epoch run): (folder, TrainResult)."""
    out = tmp_path_factory.mktemp("extended") / "run"
    shutil.copytree(first_epoch["out"], out)
    res = train_run(
        "lora", demo_dataset, "tiny", out, lora_run["cfg"], epochs=3, save_epochs=(1, 3),
        progress=False,
    )  # fmt: skip
    return out, res


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


def test_save_load_identical_outputs(lora_run, tiny_base, tmp_path: Path) -> None:
    pipe = lora_run["pipe"]
    ckpt = lora_run["result"].checkpoints[-1]
    with apply_adapter(pipe, ckpt) as handle:
        first = unet_te_outputs(pipe)
        again = tmp_path / "again.safetensors"
        save_adapter(handle.network, again, build_metadata(lora_run["cfg"], None))
    other = tiny_base()
    with apply_adapter(other, again):
        second = unet_te_outputs(other)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    t1, _ = read_adapter(ckpt)
    t2, _ = read_adapter(again)
    assert t1.keys() == t2.keys() and all(torch.equal(t1[k], t2[k]) for k in t1)


def test_resume_equals_uninterrupted(
    lora_run, first_epoch, extended_run, demo_dataset, tmp_path: Path
) -> None:
    """1 epoch, stop, then resume to 3: the same tensors as the 3-epoch run, bit for bit."""
    cfg = lora_run["cfg"]
    first = first_epoch["checkpoints"]
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
    folder, res = extended_run
    assert res.epochs_trained == 2  # epoch 1 was not redone
    a, _ = read_adapter(res.checkpoints[-1])
    b, _ = read_adapter(lora_run["result"].checkpoints[-1])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a finished run resumes to nothing; another config in the same folder is refused
    assert (
        train_run(
            "lora", demo_dataset, "tiny", folder, cfg, epochs=3, progress=False
        ).epochs_trained
        == 0
    )
    from t2ibench.errors import ConfigError

    with pytest.raises(ConfigError, match="different config.*dim"):
        train("lora", demo_dataset, "tiny", folder, cfg.replace(dim=4), epochs=4, progress=False)


def test_nan_loss_stops_and_keeps_last_checkpoint(
    tiny_base, demo_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_trainer_config("loha", overrides=FAST)
    pipe = tiny_base()
    train_run(
        "loha", demo_dataset, "tiny", tmp_path, cfg, epochs=1, save_epochs=(1, 2), progress=False,
        pipe=pipe,
    )  # fmt: skip
    good = tmp_path / "loha-e000001.safetensors"
    saved = good.read_bytes()
    state = (tmp_path / "loha-state.json").read_bytes()

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
        train_run(
            "loha",
            demo_dataset,
            "tiny",
            tmp_path,
            cfg,
            epochs=2,
            save_epochs=(1, 2),
            progress=False,
            pipe=pipe,
        )
    assert good.read_bytes() == saved  # the last good checkpoint is untouched
    assert (tmp_path / "loha-state.json").read_bytes() == state  # resume point too
    assert not (tmp_path / "loha-e000002.safetensors").exists()


def test_real_divergence_is_caught(tiny_base, demo_dataset, tmp_path: Path) -> None:
    """An absurd learning rate really blows the loss up (no mocking)."""
    cfg = load_trainer_config("lokr", overrides=[*FAST, "lr=1e30", "max_grad_norm=0"])
    with pytest.raises(TrainingDivergedError, match="training stopped. Last good checkpoint: none"):
        train_run(
            "lokr", demo_dataset, "tiny", tmp_path, cfg, epochs=2, progress=False, pipe=tiny_base()
        )
    assert not list(tmp_path.glob("*.safetensors"))


@pytest.mark.parametrize("trainer", ["loha", "lokr", "native"])
def test_other_trainers_train_and_save(
    tiny_base, demo_dataset, tmp_path: Path, trainer: str
) -> None:
    pipe = tiny_base()
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


def test_native_full_diffusers_checkpoint(tiny_base, demo_dataset, tmp_path: Path) -> None:
    from t2ibench.models import load_base

    pipe = tiny_base()
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


# ---------------------------------------------------------------------------------------------
# issue 13, items 10, 11, 13, 15, 18


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors read directly (no t2ibench checks in the way)."""
    from safetensors.torch import load_file

    return load_file(str(path))


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def _same_tensors(a: Path, b: Path) -> bool:
    ta, tb = _tensors(a), _tensors(b)
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_item10_extending_a_run_equals_a_straight_run(
    lora_run, extended_run, tiny_base, demo_dataset, tmp_path: Path
) -> None:
    """1 epoch, then the same folder with --epochs 3 == a straight 3-epoch run, bit for bit, every
    checkpoint (a one-step warm-up the clamp leaves alone at both lengths: ``LORA``); when the
    warm-up clamp would change with the length, extending is refused with a clear message."""
    from t2ibench.errors import ConfigError

    straight = lora_run["result"].checkpoints
    _, res = extended_run
    assert res.epochs_trained == 2
    assert [p.name for p in res.checkpoints] == [p.name for p in straight]
    for a, b in zip(straight, res.checkpoints, strict=True):
        assert _same_tensors(a, b), b.name

    # the default warm-up (3500 steps) is clamped to a quarter of the run: 1 epoch and 2 epochs
    # give different warm-ups, so continuing to 2 would not be the 2-epoch run
    clamped = load_trainer_config("lora", overrides=[*FAST, "warmup_steps=3500"])
    train_run(
        "lora", demo_dataset, "tiny", tmp_path / "c", clamped, epochs=1, progress=False,
        pipe=tiny_base(),
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"warm-up.*would not give a 2-epoch run"):
        train("lora", demo_dataset, "tiny", tmp_path / "c", clamped, epochs=2, progress=False)


def test_item11_checkpoints_follow_the_umask(first_epoch, tiny_base, tmp_path: Path) -> None:
    """Checkpoints, resume state and native diffusers folders get the modes of any file the user
    writes (umask), not mkstemp's owner-only 0600 / 0700."""
    from t2ibench.adapters import get_trainer
    from t2ibench.adapters.training import _save_native_diffusers

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    # first_epoch's run was written under umask 022
    ckpt = first_epoch["checkpoints"][0]
    written = [p for p in first_epoch["out"].iterdir() if p.is_file()]
    assert ckpt in written and len(written) >= 3  # checkpoint + state JSON + state tensors
    assert {p.name: mode(p) for p in written} == {p.name: 0o644 for p in written}

    pipe = tiny_base()
    ncfg = load_trainer_config("native", overrides=["preset=attn-only"])
    net = get_trainer("native").build_network({"unet": pipe.unet, "te": None}, ncfg)
    old = os.umask(0o027)
    try:
        folder = _save_native_diffusers(pipe, net, tmp_path / "native-e000001", {"x": "1"})
    finally:
        os.umask(old)
    assert mode(folder) == 0o750
    assert all(mode(p) == (0o750 if p.is_dir() else 0o640) for p in folder.rglob("*"))


def test_item13_buckets_match_kohya_on_a_size_grid() -> None:
    """Bucket choice equals sd-scripts' BucketManager (an exact size is its own bucket, else the
    smallest *linear* aspect-ratio error, first in sorted order on a tie) on every size of a grid;
    the bucket list equals make_bucket_resolutions."""
    import math

    from t2ibench.adapters.training import assign_bucket, make_buckets

    def kohya_resolutions(max_reso, min_size, max_size, divisible):
        # re-statement of library/model_util.py make_bucket_resolutions
        max_area = max_reso[0] * max_reso[1]
        resos = set()
        width = int(math.sqrt(max_area) // divisible) * divisible
        resos.add((width, width))
        width = min_size
        while width <= max_size:
            height = min(max_size, int((max_area // width) // divisible) * divisible)
            if height >= min_size:
                resos.add((width, height))
                resos.add((height, width))
            width += divisible
        return sorted(resos)

    def kohya_select(resos, w, h):
        # re-statement of library/train_util.py BucketManager.select_bucket (upscaling allowed)
        if (w, h) in set(resos):
            return (w, h)
        errors = [abs(bw / bh - w / h) for bw, bh in resos]
        return resos[errors.index(min(errors))]  # numpy argmin: the first minimum

    buckets = make_buckets(512, 320, 960, 64)
    assert buckets == kohya_resolutions((512, 512), 320, 960, 64)
    sizes = [(w, h) for w in range(64, 2049, 32) for h in range(64, 2049, 32)]
    sizes += [(w, h) for w in range(300, 1000, 7) for h in (333, 512, 640, 777, 1000)]
    moved = [s for s in sizes if assign_bucket(s, buckets) != kohya_select(buckets, *s)]
    assert not moved, f"{len(moved)} of {len(sizes)} sizes differ, e.g. {moved[:5]}"


class _Killed(BaseException):
    """Stands for kill -9 / a full disk at one precise moment."""


def test_item15_resume_after_kill_between_checkpoint_and_state(
    lora_run, tiny_base, demo_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed right after checkpoint 1 is written, before its resume state: the rerun must not
    continue from the fp16 checkpoint with a fresh optimizer; both checkpoints equal an
    uninterrupted run's (``lora_run``), bit for bit (tensors and metadata; safetensors orders the
    metadata keys differently from one write to the next, so the file bytes are not compared)."""
    cfg = lora_run["cfg"]
    clean = lora_run["result"].checkpoints
    pipe = tiny_base()

    real_save = training_mod.save_adapter

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise _Killed

    monkeypatch.setattr(training_mod, "save_adapter", save_then_die)
    with pytest.raises(_Killed):
        train_run(
            "lora",
            demo_dataset,
            "tiny",
            tmp_path / "killed",
            cfg,
            epochs=3,
            save_epochs=(1, 3),
            progress=False,
            pipe=pipe,
        )
    assert (tmp_path / "killed" / "lora-e000001.safetensors").is_file()
    monkeypatch.undo()
    again = train(
        "lora",
        demo_dataset,
        "tiny",
        tmp_path / "killed",
        cfg,
        epochs=3,
        save_epochs=(1, 3),
        progress=False,
    )
    assert [p.name for p in again] == [p.name for p in clean]
    for a, b in zip(clean, again, strict=True):
        assert _same_tensors(a, b), b.name
        assert _metadata(a) == _metadata(b)
    # the resume state is safetensors + JSON, never a pickle
    names = sorted(p.name for p in (tmp_path / "killed").iterdir())
    assert names == [
        "lora-e000001.safetensors",
        "lora-e000003.safetensors",
        "lora-state-e000003.safetensors",
        "lora-state.json",
    ]


@pytest.mark.parametrize("which", ["record", "tensors"])
def test_item15_damaged_resume_state_is_one_clear_error(
    lora_run, first_epoch, tiny_base, demo_dataset, tmp_path: Path, which: str
) -> None:
    """A truncated resume state ends in one clear line (a T2IBenchError naming the file and what to
    do), not a raw reader traceback."""
    from t2ibench.errors import T2IBenchError

    folder = tmp_path / "run"
    shutil.copytree(first_epoch["out"], folder)  # 1 epoch of LoRA, with its resume state
    states = [p for p in folder.iterdir() if p.name.startswith("lora-state")]
    assert states
    for p in states:
        if which == "record" or p.suffix != ".json":
            data = p.read_bytes()
            p.write_bytes(data[: len(data) // 2])
    with pytest.raises(T2IBenchError, match=r"lora-state.*(damaged|truncated).*retrain"):
        train_run(
            "lora",
            demo_dataset,
            "tiny",
            folder,
            lora_run["cfg"],
            epochs=2,
            save_epochs=(1, 2),
            progress=False,
            pipe=tiny_base(),
        )


def test_item18_divergence_never_keeps_an_inf_checkpoint(
    tiny_base, demo_dataset, tmp_path: Path
) -> None:
    """lr=1e9: the weights stay finite in fp32 but overflow fp16; the run must stop before writing
    such a checkpoint, and whatever it keeps is finite."""
    # batch 64: one step per epoch, so epoch 1 ends with finite fp32 weights ~1e9 (the loss is
    # still finite) whose fp16 checkpoint would be inf; epoch 2's loss is NaN
    cfg = load_trainer_config("lora", overrides=[*FAST, "batch_size=64", "lr=1e9"])
    with pytest.raises(TrainingDivergedError, match="training stopped"):
        train_run(
            "lora",
            demo_dataset,
            "tiny",
            tmp_path,
            cfg,
            epochs=2,
            save_epochs=(1, 2),
            progress=False,
            pipe=tiny_base(),
        )
    for p in tmp_path.glob("lora-e*.safetensors"):
        bad = [k for k, v in _tensors(p).items() if not torch.isfinite(v).all()]
        assert not bad, f"{p.name}: {len(bad)} non-finite tensors kept"


def test_item18_nan_base_is_refused_before_training(
    tiny_base, demo_dataset, tmp_path: Path
) -> None:
    from t2ibench.adapters import AdapterFileError

    pipe = tiny_base()
    with torch.no_grad():
        pipe.unet.conv_in.weight[0, 0, 0, 0] = float("nan")
    cfg = load_trainer_config("lora", overrides=FAST)
    with pytest.raises(AdapterFileError, match=r"base model .*unet.*NaN or inf.*conv_in"):
        train_run("lora", demo_dataset, "tiny", tmp_path, cfg, epochs=1, progress=False, pipe=pipe)
