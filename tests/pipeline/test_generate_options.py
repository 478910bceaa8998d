"""Generation speed options: a fused adapter makes the unfused images (to a stated tolerance) and
leaves the base exactly as it was; channels-last, SDPA and compile run and are undone; a changed
dtype is refused in a folder of fp32 images and names another run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2ibench.errors import ConfigError, T2IBenchError
from t2ibench.pipeline.generate import (
    SPEED_DEFAULTS,
    GenerationSettings,
    checkpoint_on_base,
    generate_batch,
    generate_images,
    sampling_options,
)
from t2ibench.prompts import GenerationJob

SETTINGS = GenerationSettings(steps=2, height=64, width=64, batch_size=2)
JOBS = [
    GenerationJob("toys/bear", "trigger", p, 1000 + k, k)
    for k, p in enumerate(["a teddy bear", "a bear on a beach"])
]
#: fused vs applied adapter, pixels in [0, 1] before 8-bit rounding: the two differ only by the
#: float rounding of W + m·ΔW (formed once in float32 vs per call; LoRA: its bypass form)
FUSED_ATOL = 1e-4


@pytest.fixture(autouse=True, scope="module")
def one_thread(t2ibench_cache):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _random_adapter(pipe, algo, path):
    from t2ibench.adapters import get_trainer
    from t2ibench.adapters.files import build_metadata, save_adapter

    spec = get_trainer(algo)
    cfg = spec.config([("test", {"preset": "full"})])
    net = spec.build_network({"unet": pipe.unet, "te": pipe.text_encoder}, cfg)
    g = torch.Generator().manual_seed(0)
    scale = {"lora": 0.05, "loha": 0.3}[algo]  # LoHa's ΔW is a product of four factors
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    save_adapter(net, path, build_metadata(cfg, None, epoch=1))
    return path


@pytest.fixture(scope="module", params=["tiny", "toy"])
def base(request, tmp_path_factory):
    """The tiny SD1.5 look-alike and the toy world's trained base, each with a LoRA and a LoHa."""
    from t2ibench.models import load_base

    if request.param == "toy":
        from t2ibench.toy.plugin import base_installed

        if not base_installed():
            pytest.skip("the toy base is not installed")
    pipe = load_base(request.param)
    folder = tmp_path_factory.mktemp(f"adapters-{request.param}")
    adapters = {a: _random_adapter(pipe, a, folder / f"{a}.safetensors") for a in ("lora", "loha")}
    return pipe, adapters


def _images(pipe, settings=SETTINGS):
    """Pixels in [0, 1] as the sampler returns them (before 8-bit rounding)."""
    with sampling_options(pipe, settings):
        out = pipe(
            prompt=[j.prompt for j in JOBS],
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance_scale,
            height=settings.height,
            width=settings.width,
            generator=[torch.Generator().manual_seed(j.seed) for j in JOBS],
            output_type="np",
        )
    return out.images


@pytest.mark.parametrize("algo", ["lora", "loha"])
def test_fused_adapter_equals_applied_and_restores_the_base(base, algo):
    pipe, adapters = base
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    te_before = {k: v.clone() for k, v in pipe.text_encoder.state_dict().items()}
    plain = _images(pipe)
    with checkpoint_on_base(pipe, adapters[algo]) as p:
        applied = _images(p)
    with checkpoint_on_base(pipe, adapters[algo], fuse=True) as p:
        fused = _images(p)
    assert np.abs(applied - plain).max() > 0.01  # the adapter does change the images
    assert np.abs(fused - applied).max() <= FUSED_ATOL
    after = pipe.unet.state_dict()
    assert set(after) == set(before)  # no bias left behind
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit for bit
    assert all(torch.equal(te_before[k], v) for k, v in pipe.text_encoder.state_dict().items())


@pytest.fixture
def tiny():
    """A tiny base of its own (this test changes its attention processors and layout)."""
    from t2ibench.models import load_base

    return load_base("tiny")


def spy_call(pipe, monkeypatch):
    """What the pipeline looks like while it samples: (denoiser class, channels-last conv
    weights, attention processor class) per call."""
    seen = []
    real_call = type(pipe).__call__

    def spy(self, *a, **kw):
        seen.append(
            (
                type(self.unet).__name__,
                self.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last),
                type(next(iter(self.unet.attn_processors.values()))).__name__,
            )
        )
        return real_call(self, *a, **kw)

    monkeypatch.setattr(type(pipe), "__call__", spy)
    return seen


def test_channels_last_and_sdpa_run_and_are_undone(tiny, monkeypatch):
    from diffusers.models.attention_processor import AttnProcessor

    pipe, unet = tiny, tiny.unet
    plain = _images(pipe)
    fast = GenerationSettings(steps=2, height=64, width=64, channels_last=True, attention="sdpa")
    seen = spy_call(pipe, monkeypatch)
    fast_images = _images(pipe, fast)
    assert seen == [("UNet2DConditionModel", True, "AttnProcessor2_0")]
    # SDPA and channels-last change the kernels, not the maths: equal up to float rounding
    assert np.abs(fast_images - plain).max() <= 1e-3
    assert pipe.unet is unet
    assert unet.conv_in.weight.is_contiguous()
    assert all(isinstance(p, AttnProcessor) for p in unet.attn_processors.values())


def test_dtype_loads_the_base_in_it_and_is_checked(tmp_path):
    from t2ibench.models import load_base

    bf16 = GenerationSettings(steps=2, height=64, width=64, batch_size=2, dtype="bf16")
    pipe = load_base("tiny", **bf16.load_kwargs())
    assert pipe.unet.dtype == torch.bfloat16
    images = generate_batch(pipe, JOBS, bf16)
    assert len(images) == 2 and images[0].size == (64, 64)
    with pytest.raises(
        ConfigError, match="is torch.bfloat16 but the settings ask for dtype 'fp32'"
    ):
        with sampling_options(pipe, SETTINGS):
            pass


def test_resume_refuses_images_of_another_dtype(base, tmp_path):
    pipe, _ = base
    generate_images(pipe, JOBS[:1], tmp_path, checkpoint="base", settings=SETTINGS, progress=False)
    line = (tmp_path / "manifest.jsonl").read_text()
    assert '"dtype"' not in line  # fp32, the default: recorded as before the option existed
    bf16 = GenerationSettings(steps=2, height=64, width=64, batch_size=2, dtype="bf16")
    with pytest.raises(T2IBenchError, match="holds images of other settings.*needs its own folder"):
        generate_images(pipe, JOBS, tmp_path, checkpoint="base", settings=bf16, progress=False)


def test_settings_key_keeps_old_runs_and_separates_new_ones():
    # the keys every run hash and manifest had before the speed options existed
    old = {"steps", "guidance_scale", "height", "width", "negative_prompt", "scheduler", "eta"}
    assert set(GenerationSettings().image_settings()) == old
    assert set(GenerationSettings().key()) == old | {"batch_size"}
    for name, value in [("dtype", "bf16"), ("dtype", "fp16"), ("channels_last", True),
                        ("compile", True), ("fuse_adapter", True), ("attention", "sdpa")]:  # fmt: skip
        changed = GenerationSettings(**{name: value})
        assert changed.image_settings()[name] == value
        assert changed.key() != GenerationSettings().key()
    with pytest.raises(ConfigError, match="dtype must be one of fp32, fp16, bf16"):
        GenerationSettings(dtype="fp8")


def test_run_config_declares_every_speed_option_with_the_same_default():
    from t2ibench.runconfig import GenerateConfig, RunConfig

    fields = GenerateConfig.model_fields
    assert {k: fields[k].default for k in SPEED_DEFAULTS} == SPEED_DEFAULTS
    cfg = RunConfig.model_validate({"generate": {"dtype": "bf16", "fuse_adapter": True}})
    assert (cfg.generate.dtype, cfg.generate.fuse_adapter) == ("bf16", True)


@pytest.mark.parametrize("command", ["run", "sweep", "evaluate-checkpoints"])
def test_commands_take_the_speed_options(command):
    from typer.main import get_command

    from t2ibench.cli import app

    params = {
        opt for p in get_command(app).commands[command].params for opt in p.opts
    }  # fmt: skip
    flags = {"--dtype", "--channels-last", "--compile", "--fuse-adapter", "--attention"}
    assert flags <= params


def test_a_changed_dtype_is_another_run_and_is_recorded(tmp_path):
    from t2ibench.pipeline.record import RunRecord
    from t2ibench.pipeline.run import RunOptions, _record_fields, resolve, set_layers

    def resolved(*overrides, name=None):
        quick = {"trainer": "lora", "generate.images_per_leaf": 1, "generate.steps": 2}
        return resolve(
            RunOptions(
                layers=[("test", quick), *set_layers(overrides)],
                profile="tiny",
                out=str(tmp_path),
                name=name,
                progress=False,
            )
        )

    default = resolved()
    explicit = resolved(
        *(f"generate.{k}={v!r}".replace("'", '"') for k, v in SPEED_DEFAULTS.items())
    )
    bf16 = resolved("generate.dtype=bf16", "generate.fuse_adapter=true")
    assert explicit.run_hash == default.run_hash  # the defaults name the run they always did
    assert bf16.run_dir != default.run_dir
    assert (bf16.generation.dtype, bf16.generation.fuse_adapter) == ("bf16", True)
    options = _record_fields(bf16)["generation_options"]
    assert options == {**SPEED_DEFAULTS, "dtype": "bf16", "fuse_adapter": True}
    # the base model has no adapter to fuse: its shared images are the default run's, made and
    # recorded with fuse_adapter off; a dtype changes its pixels, so it gets its own folder
    from t2ibench.pipeline.generate import shared_base_images

    fused = resolved("generate.fuse_adapter=true")
    assert fused.run_dir != default.run_dir
    assert shared_base_images(fused, []) == shared_base_images(default, [])
    assert shared_base_images(bf16, []) != shared_base_images(default, [])
    assert fused.generation.of_checkpoint("base") == default.generation
    assert fused.generation.of_checkpoint(tmp_path / "lora-e1.safetensors") == fused.generation
    # the same run name (a sweep's fixed names): refused in one line, never mixed
    RunRecord(default.run_dir / "run.json", default.run_hash).update({"run_hash": default.run_hash})
    same_name = resolved("generate.dtype=bf16", name=default.run_dir.name)
    with pytest.raises(T2IBenchError, match="holds a run with a different config"):
        RunRecord(same_name.run_dir / "run.json", same_name.run_hash)


def test_cli_generate_records_its_options(tiny, tmp_path):
    """``t2ibench generate`` samples with its --dtype and --attention (once load-time only, now
    set for the call and recorded) and fuses adapters with --fuse-adapter."""
    from typer.testing import CliRunner

    from t2ibench.cli import app
    from t2ibench.data.demo import make_demo_dataset
    from t2ibench.pipeline.manifest import read_manifest

    lora = _random_adapter(tiny, "lora", tmp_path / "lora.safetensors")
    data = make_demo_dataset(tmp_path / "data")
    args = ["generate", str(lora), "--dataset", str(data), "--prompt-types", "style"]
    args += ["--images-per-leaf", "1", "--size", "64", "--steps", "2", "--out", str(tmp_path / "o")]
    args += ["--no-progress", "--device", "cpu", "--dtype", "bfloat16", "--attention", "sdpa"]
    result = CliRunner().invoke(app, [*args, "--fuse-adapter"])
    assert result.exit_code == 0, result.output
    (record, *_) = read_manifest(tmp_path / "o" / "lora" / "manifest.jsonl")
    assert {k: record.settings[k] for k in ("dtype", "attention", "fuse_adapter")} == {
        "dtype": "bf16",
        "attention": "sdpa",
        "fuse_adapter": True,
    }
