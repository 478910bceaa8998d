"""``t2ibench evaluate-checkpoints``: a folder of adapters saved by t2ibench (LoRA, LoHa, LoKr), by
lycoris-lora's own ``LycorisNetwork.save_weights``, by peft (``save_pretrained``) and by diffusers
(``save_lora_adapter``) on the tiny base is found, ordered, generated, scored and recommended; a
corrupt file and a file of unknown keys stop with one line; a rerun redoes nothing; and a
lycoris-saved file gives the same ΔW as lycoris-lora's modules, with the tensors t2ibench's own
trainer classes would save for those layers."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import sys
from pathlib import Path

import pytest
import torch

from t2ibench.adapters import get_trainer
from t2ibench.adapters.files import build_metadata, network_for, save_adapter
from t2ibench.pipeline.checkpoints import (
    CheckpointsOptions,
    evaluate_checkpoints,
    find_checkpoints,
    position_from_name,
)
from t2ibench.results import read_results

QUICK = {  # the fewest images that still score every checkpoint
    "generate.images_per_leaf": 1,
    "generate.steps": 2,
    "generate.prompt_types": ["train", "alter"],
    "evaluate.encoders": ["dinov2-l@tiny", "clip-l14@tiny"],
}


@pytest.fixture(scope="module")
def pipe():
    from t2ibench.models import load_base

    return load_base("tiny")


def _randomize(module: torch.nn.Module, seed: int, std: float = 0.05) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)


def _save_t2ibench(pipe, path: Path, algo: str, epoch: int | None, seed: int, **keys) -> None:
    spec = get_trainer(algo)
    cfg = spec.config([("test", {"preset": "full", **keys})])
    net = spec.build_network({"unet": pipe.unet, "te": pipe.text_encoder}, cfg)
    _randomize(net, seed)
    save_adapter(net, path, build_metadata(cfg, None, epoch=epoch))


@contextlib.contextmanager
def _lycoris_presets_kept():
    """lycoris-lora keeps its module selection in class attributes: put them back afterwards."""
    from lycoris import LycorisNetwork
    from lycoris.kohya import LycorisNetworkKohya

    saved = [(cls, dict(vars(cls))) for cls in (LycorisNetwork, LycorisNetworkKohya)]
    try:
        yield
    finally:
        for cls, attrs in saved:
            for key, value in attrs.items():
                if key.isupper():
                    setattr(cls, key, value)


def _lycoris_network(model: torch.nn.Module, algo: str, seed: int, **kw):
    from lycoris import LycorisNetwork, create_lycoris
    from lycoris.wrapper import PRESET

    logging.getLogger("LyCORIS").setLevel(logging.ERROR)
    with _lycoris_presets_kept():
        LycorisNetwork.apply_preset(PRESET["full"])  # conv layers and every linear
        dim = kw.pop("dim", 4)
        net = create_lycoris(model, 1.0, linear_dim=dim, linear_alpha=2, algo=algo, **kw)
    net.apply_to()
    _randomize(net, seed)
    return net


@pytest.fixture(scope="module")
def checkpoint_folder(pipe, tmp_path_factory) -> Path:
    from peft import LoraConfig, get_peft_model

    folder = tmp_path_factory.mktemp("ckpts") / "my-run"
    folder.mkdir()
    # t2ibench's trainers; the first file's name says nothing, its metadata says epoch 1
    _save_t2ibench(pipe, folder / "final.safetensors", "lora", 1, 1)
    _save_t2ibench(pipe, folder / "run-e000002.safetensors", "loha", 2, 2)
    _save_t2ibench(pipe, folder / "run-e000003.safetensors", "lokr", 3, 3, factor=4, dim=10000)
    # lycoris-lora's own file (unet only, as SimpleTuner saves it), no metadata: the name orders it
    net = _lycoris_network(pipe.unet, "loha", 4)
    net.save_weights(str(folder / "lyco-000004.safetensors"), torch.float32, None)
    net.restore()
    # a PEFT folder pair (unet + text encoder), as peft's save_pretrained writes it
    peft_dir = folder / "peft-epoch5"
    for sub, model, targets in (
        ("unet", pipe.unet, ["to_q", "to_k", "to_v", "to_out.0", "conv1"]),
        ("text_encoder", pipe.text_encoder, ["q_proj", "v_proj"]),
    ):
        cfg = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False,
                         rank_pattern={"to_k": 2}, alpha_pattern={"conv1": 1})  # fmt: skip
        get_peft_model(copy.deepcopy(model), cfg).save_pretrained(str(peft_dir / sub))
    # diffusers' save_lora_adapter: pytorch_lora_weights.safetensors, peft keys without a prefix
    unet = copy.deepcopy(pipe.unet)
    unet.add_adapter(LoraConfig(r=2, lora_alpha=4, target_modules=["to_q", "to_v"],
                                init_lora_weights=False))  # fmt: skip
    unet.save_lora_adapter(str(folder / "diffusers-epoch6"))
    (folder / "notes.txt").write_text("not an adapter")
    return folder


def test_finds_and_orders_every_layout(checkpoint_folder):
    found = find_checkpoints(checkpoint_folder)
    assert [f.name for f in found] == [
        "final",
        "run-e000002",
        "run-e000003",
        "lyco-000004",
        "peft-epoch5",
        "diffusers-epoch6",
    ]
    assert [f.epoch for f in found] == [1, 2, 3, 4, 5, 6]
    assert [f.order_from for f in found] == ["metadata"] * 3 + ["name"] * 3
    assert [f.source_format for f in found] == [
        "kohya", "kohya", "kohya", "lycoris", "peft", "diffusers"
    ]  # fmt: skip
    assert [f.algorithm for f in found] == ["lora", "loha", "lokr", "loha", "lora", "lora"]
    assert all(f.modules > 0 for f in found)


@pytest.mark.parametrize(
    ("stem", "place"),
    [
        ("mychar-000010", (10, None)),  # kohya sd-scripts' epoch files
        ("mychar-step00000500", (None, 500)),  # kohya's step files
        ("checkpoint-1500", (None, 1500)),  # diffusers / accelerate
        ("lora_epoch12", (12, None)),
        ("lora-e000003", (3, None)),  # t2ibench
        ("final", (None, None)),
    ],
)
def test_place_from_name(stem, place):
    assert position_from_name(stem) == place


@pytest.fixture(scope="module")
def finished(checkpoint_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    options = CheckpointsOptions(
        folder=str(checkpoint_folder),
        profile="tiny",
        out=str(out),
        progress=False,
        layers=[("test", QUICK)],
    )
    return options, evaluate_checkpoints(options)


def test_generates_scores_and_recommends(finished, checkpoint_folder):
    from t2ibench.results import run_base

    _, run_dir = finished
    df = read_results(run_dir / "results")
    per = df.drop_duplicates("checkpoint").set_index("checkpoint")
    names = [f.name for f in find_checkpoints(checkpoint_folder)]
    assert sorted(per.index) == sorted(["base", *names])
    assert [int(per.loc[n, "epoch"]) for n in names] == [1, 2, 3, 4, 5, 6]
    assert per.loc["lyco-000004", "source_format"] == "lycoris"
    assert set(df.loc[df.checkpoint != "base", "config"]) == {"my-run"}
    # every row names the base the checkpoints were evaluated on, the base model's too
    assert set(df["base"]) == {run_base(run_dir)} and df["base"].notna().all()
    assert run_base(run_dir) != "base"
    # every checkpoint has its own images, seed-paired with the base model's
    for name in names:
        manifest = run_dir / "images" / name / "manifest.jsonl"
        rows = [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()]
        assert rows and all(r["checkpoint"] == name for r in rows)
    # the adapters change the images: each differs from the base model's of the same seed
    record = json.loads((run_dir / "run.json").read_text())
    base_dir = Path(record["base_images"])
    for name in names:
        first = sorted((run_dir / "images" / name).rglob("*.png"))[0]
        same = base_dir / first.relative_to(run_dir / "images" / name)
        assert first.read_bytes() != same.read_bytes(), name
    rec = (run_dir / "report" / "recommendation.csv").read_text()
    assert "recommended" in rec.splitlines()[0]
    summary = (run_dir / "report" / "summary.md").read_text()
    assert "Recommended checkpoint:" in summary
    chosen = summary.split("Recommended checkpoint: ")[1].split(" ")[0]
    assert chosen in names
    assert (run_dir / "report" / "plots" / "checkpoint_line.png").is_file()
    assert [c["name"] for c in record["checkpoints"]] == names
    assert record["metric_profile"] == "lycoris2024"  # the default


def test_rerun_redoes_nothing_and_a_changed_file_is_redone(finished, pipe):
    options, run_dir = finished
    kept = [run_dir / "images", run_dir / "results" / "parts", run_dir / "report"]
    stamp = {p: p.stat().st_mtime_ns for d in kept for p in d.rglob("*") if p.is_file()}
    assert evaluate_checkpoints(options) == run_dir
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp
    # a checkpoint rewritten in place (same name, new weights) is generated and scored again
    folder = Path(options.folder)
    old = (run_dir / "images" / "run-e000002" / "manifest.jsonl").stat().st_mtime_ns
    copies = run_dir / "results" / "anchors" / "copies.parquet"
    old_copies = copies.stat().st_mtime_ns
    _save_t2ibench(pipe, folder / "run-e000002.safetensors", "loha", 2, 99)
    evaluate_checkpoints(options)
    assert (run_dir / "images" / "run-e000002" / "manifest.jsonl").stat().st_mtime_ns != old
    assert copies.stat().st_mtime_ns != old_copies  # copy detection sees the new images
    final = run_dir / "images" / "final" / "manifest.jsonl"
    assert final.stat().st_mtime_ns == stamp[final]


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    from t2ibench.cli import main

    monkeypatch.setattr(sys, "argv", ["t2ibench", "evaluate-checkpoints", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return int(exc.value.code or 0), capsys.readouterr().err


def test_corrupt_file_is_one_line(checkpoint_folder, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ok-000001.safetensors").write_bytes(
        (checkpoint_folder / "final.safetensors").read_bytes()
    )
    (bad / "broken-000002.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    code, err = _cli(monkeypatch, capsys, str(bad), "--dry-run")
    assert code == 2
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "broken-000002.safetensors" in lines[0], err


def test_unknown_key_is_one_line(pipe, tmp_path, monkeypatch, capsys):
    from safetensors.torch import save_file

    bad = tmp_path / "bad"
    bad.mkdir()
    _save_t2ibench(pipe, bad / "a-000001.safetensors", "lora", 1, 1)
    stem = "lora_unet_down_blocks_0_attentions_0_proj_in"
    save_file(  # an extra tensor next to LoRA's (LyCORIS' norm tensor): never silently dropped
        {f"{stem}.lora_up.weight": torch.ones(32, 4, 1, 1), f"{stem}.lora_down.weight":
         torch.ones(4, 32, 1, 1), f"{stem}.w_norm": torch.ones(32)},
        bad / "b-000002.safetensors",
    )  # fmt: skip
    code, err = _cli(monkeypatch, capsys, str(bad), "--dry-run")
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1, err
    assert "b-000002.safetensors" in lines[0] and f"{stem}.w_norm" in lines[0]
    # a layer no trainer's signature matches (PEFT's FourierFT: no trainer reads it)
    (bad / "b-000002.safetensors").unlink()
    save_file({f"{stem}.fourierft_spectrum": torch.ones(4, 8)}, bad / "c-000003.safetensors")
    code, err = _cli(monkeypatch, capsys, str(bad), "--dry-run")
    assert code == 2 and f"{stem}.fourierft_spectrum" in err and "c-000003.safetensors" in err
    assert "no registered trainer" in err and len(err.strip().splitlines()) == 1
    # a file in no known key layout at all
    (bad / "c-000003.safetensors").unlink()
    save_file({"model.diffusion_model.input_blocks.weight": torch.ones(2)}, bad / "d-4.safetensors")
    code, err = _cli(monkeypatch, capsys, str(bad), "--dry-run")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "d-4.safetensors" in err and "model.diffusion_model.input_blocks.weight" in err


def test_dry_run_lists_the_order(checkpoint_folder, monkeypatch, capsys):
    from t2ibench.cli import main

    monkeypatch.setattr(
        sys, "argv", ["t2ibench", "evaluate-checkpoints", str(checkpoint_folder), "--dry-run"]
    )
    with pytest.raises(SystemExit) as exc:
        main()
    assert not exc.value.code
    out = capsys.readouterr().out
    assert out.index("final") < out.index("run-e000002") < out.index("diffusers-epoch6")


def _lycoris_delta(algo: str, module) -> torch.Tensor:
    # LoCon's get_diff_weight is ΔW·scale; LoHa/LoKr's scales twice in lycoris-lora 4.1.3, their
    # get_weight (what their forward uses) once (as in tests/adapters/test_parity.py).
    if algo == "lora":
        return module.get_diff_weight()[0].reshape(module.shape)
    return module.get_weight(module.shape)


@pytest.mark.parametrize(
    ("algo", "kw"),
    [("lora", {}), ("loha", {}), ("lokr", {"factor": 4}), ("lokr", {"factor": 4, "dim": 2,
                                                                      "decompose_both": True})],
)  # fmt: skip
def test_lycoris_file_same_delta_as_lycoris(pipe, tmp_path, algo, kw):
    """Files from ``LycorisNetwork.save_weights`` on the UNet (conv layers included) and on the
    text encoder: every module loads, ΔW equals lycoris-lora's own, and t2ibench's trainer class
    would save the same tensors (keys and shapes) for that layer."""
    spec = get_trainer(algo)
    for i, model in enumerate((pipe.unet, pipe.text_encoder)):
        net = _lycoris_network(model, algo, 10 + i, **dict(kw))
        path = tmp_path / f"{algo}-{i}.safetensors"
        net.save_weights(str(path), torch.float32, None)
        net.restore()  # the shared pipe's layers get their own forward back
        ref = {m.lora_name.removeprefix("lycoris_"): m for m in net.loras}
        ours, _ = network_for(pipe, path)
        assert len(ours) == len(ref) > 0
        assert any(m.is_conv for m in ours) == (i == 0)
        cfg = spec.config([("test", {"dim": kw.get("dim", 4), "alpha": 2, **{
            k: v for k, v in kw.items() if k != "dim"}})])  # fmt: skip
        for m in ours:
            short = m.lora_name.removeprefix("lora_unet_").removeprefix("lora_te_text_model_")
            r = ref.pop(short)
            torch.testing.assert_close(m.delta_weight(), _lycoris_delta(algo, r), rtol=1e-5,
                                       atol=1e-7)  # fmt: skip
            own = spec.module_class.create(m.lora_name, m.org, cfg)
            shapes = {k: tuple(v.shape) for k, v in own.state_items().items()}
            assert shapes == {k: tuple(v.shape) for k, v in m.state_items().items()}
        assert not ref


def test_peft_and_diffusers_files_same_delta_as_peft(pipe, tmp_path):
    """A PEFT folder (rank and alpha patterns, rsLoRA) and diffusers' save_lora_adapter file
    give peft's own ΔW per layer."""
    from peft import LoraConfig, get_peft_model

    cases = [
        ("peft", LoraConfig(r=4, lora_alpha=8, target_modules=["to_q", "to_k", "conv1", "proj_in"],
                            rank_pattern={"to_k": 2}, alpha_pattern={"conv1": 1},
                            init_lora_weights=False)),
        ("rslora", LoraConfig(r=4, lora_alpha=3, use_rslora=True, target_modules=["to_v"],
                              init_lora_weights=False)),
        ("diffusers", LoraConfig(r=2, lora_alpha=6, target_modules=["to_out.0"],
                                 init_lora_weights=False)),
    ]  # fmt: skip
    for kind, cfg in cases:
        unet = copy.deepcopy(pipe.unet)
        if kind == "diffusers":
            unet.add_adapter(cfg)
            unet.save_lora_adapter(str(tmp_path / kind))
            model = unet
        else:
            model = get_peft_model(unet, cfg)
            model.save_pretrained(str(tmp_path / kind))
        peft_layers = {
            n.removeprefix("base_model.model."): m
            for n, m in model.named_modules()
            if hasattr(m, "get_delta_weight")
        }
        ours, meta = network_for(pipe, tmp_path / kind)
        by_layer = {id(m): n for n, m in pipe.unet.named_modules()}
        assert len(ours) == len(peft_layers) > 0
        for m in ours:
            peft_delta = peft_layers[by_layer[id(m.org)]].get_delta_weight("default")
            torch.testing.assert_close(m.delta_weight(), peft_delta, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("algo", "keys"),
    [("lora", {}), ("loha", {}), ("lokr", {"factor": 4, "dim": 10000}),
     ("lokr", {"factor": 4, "dim": 2, "alpha": 3})],
)  # fmt: skip
def test_t2ibench_peft_export_reads_back_the_same(pipe, tmp_path, algo, keys):
    """``t2ibench export --format peft`` folders (unet/ + text_encoder/) read back as the file
    they came from: same modules, same ΔW (LoKr with both blocks full: peft's scale folded in)."""
    from t2ibench.adapters.export import export_peft

    src = tmp_path / f"{algo}.safetensors"
    spec = get_trainer(algo)
    cfg = spec.config([("test", {"preset": "attn-mlp", **keys})])
    net = spec.build_network({"unet": pipe.unet, "te": pipe.text_encoder}, cfg)
    _randomize(net, 5)
    save_adapter(net, src, build_metadata(cfg, None, epoch=7), dtype=torch.float32)
    export_peft(copy.deepcopy(pipe), src, tmp_path / "peft")
    want, _ = network_for(pipe, src)
    got, meta = network_for(pipe, tmp_path / "peft")
    assert meta["t2ibench_epoch"] == "7" and meta["t2ibench_source_format"] == "peft"
    assert sorted(m.lora_name for m in got) == sorted(m.lora_name for m in want)
    deltas = {m.lora_name: m.delta_weight() for m in want}
    for m in got:
        torch.testing.assert_close(m.delta_weight(), deltas[m.lora_name], rtol=1e-5, atol=1e-7)


def test_step_checkpoints_curve_by_step(pipe, finished, tmp_path):
    """Checkpoints known only by step (diffusers' checkpoint-N folders): ordered by step, the
    epoch column empty, the step column and the curve's x axis the step."""
    from t2ibench.analysis.checkpoints import progress_column

    options, run_dir = finished
    folder = tmp_path / "steps"
    for i, step in enumerate((1500, 500), 1):
        _save_t2ibench(pipe, tmp_path / "x.safetensors", "lora", None, i)
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        (tmp_path / "x.safetensors").rename(
            folder / f"checkpoint-{step}" / "pytorch_lora_weights.safetensors"
        )
    found = find_checkpoints(folder)
    assert [(f.name, f.epoch, f.step) for f in found] == [
        ("checkpoint-500", None, 500), ("checkpoint-1500", None, 1500)
    ]  # fmt: skip
    # the same --out as the other run: the base model's images are shared, not made again
    step_options = CheckpointsOptions(**{**options.__dict__, "folder": str(folder)})
    step_run = evaluate_checkpoints(step_options, found)
    df = read_results(step_run / "results")
    ck = df[df.checkpoint != "base"].drop_duplicates("checkpoint").set_index("checkpoint")
    assert ck["epoch"].isna().all() and ck.loc["checkpoint-1500", "step"] == 1500
    assert progress_column(df) == "step"
    assert (step_run / "report" / "plots" / "checkpoint_line.png").is_file()
    assert "checkpoint-500" in (step_run / "report" / "recommendation.csv").read_text()


def _found(name: str, epoch=None, step=None):
    from t2ibench.pipeline.checkpoints import FoundCheckpoint

    return FoundCheckpoint(Path(name), name, "kohya", "lora", 1, epoch, step, "name", "")


def test_order_errors_are_one_line():
    from t2ibench.errors import ConfigError
    from t2ibench.pipeline.checkpoints import order_checkpoints

    with pytest.raises(ConfigError, match="final: cannot tell its epoch or step"):
        order_checkpoints([_found("a", epoch=1), _found("final")])
    with pytest.raises(ConfigError, match="b and a are both at epoch 1"):
        order_checkpoints([_found("a", epoch=1), _found("b", epoch=1)])
    with pytest.raises(
        ConfigError, match="b: gives only a step where other checkpoints give an epoch"
    ):
        order_checkpoints([_found("a", epoch=1), _found("b", step=10)])
    # epochs everywhere, steps too: by epoch
    got = order_checkpoints([_found("b", 2, 10), _found("a", 1, 20)])
    assert [f.name for f in got] == ["a", "b"]


@pytest.mark.parametrize("algo", ["loha", "lokr"])
def test_lycoris_kohya_wrapper_file_same_delta(pipe, tmp_path, algo):
    """lycoris-lora's kohya wrapper (``lycoris.kohya.create_network``, what sd-scripts runs) names
    the text encoder's layers ``lora_te_encoder_...`` under transformers >= 5; read as
    ``lora_te_text_model_...``, every module loads with lycoris-lora's ΔW."""
    from lycoris.kohya import create_network

    logging.getLogger("LyCORIS").setLevel(logging.ERROR)
    with _lycoris_presets_kept():
        net = create_network(1.0, 4, 2, pipe.vae, pipe.text_encoder, pipe.unet, algo=algo,
                             factor=4, preset="attn-mlp")  # fmt: skip
        net.apply_to(pipe.text_encoder, pipe.unet, True, True)
    _randomize(net, 3)
    path = tmp_path / "kohya-000002.safetensors"
    net.save_weights(str(path), torch.float32, {"ss_epoch": "2"})
    for m in net.text_encoder_loras + net.unet_loras:
        m.restore()  # the shared pipe's layers get their own forward back
    ref = {}
    for m in net.text_encoder_loras + net.unet_loras:
        ref[m.lora_name.replace("lora_te_", "lora_te_text_model_", 1)
            if m.lora_name.startswith("lora_te_encoder") else m.lora_name] = m  # fmt: skip
    ours, meta = network_for(pipe, path)
    assert meta["ss_epoch"] == "2" and any(n.startswith("lora_te_text_model_") for n in ref)
    assert sorted(m.lora_name for m in ours) == sorted(ref)
    for m in ours:
        torch.testing.assert_close(m.delta_weight(), _lycoris_delta(algo, ref[m.lora_name]),
                                   rtol=1e-5, atol=1e-7)  # fmt: skip


def test_metric_profile_goes_to_the_run(checkpoint_folder, tmp_path):
    """``--metric-profile`` is the run's (its evaluate stage computes it, run.json records it);
    an unknown name is one line before anything is made."""
    from t2ibench.errors import T2IBenchError
    from t2ibench.pipeline.checkpoints import resolve_checkpoints

    found = find_checkpoints(checkpoint_folder)

    def options(name):
        return CheckpointsOptions(folder=str(checkpoint_folder), profile="tiny", out=str(tmp_path),
                                  metric_profile=name, progress=False, layers=[("test", QUICK)])  # fmt: skip

    default = resolve_checkpoints(options(None), found)
    assert default.metric_profile == "lycoris2024"
    drift = resolve_checkpoints(options("peft-drift"), found)
    assert drift.metric_profile == "peft-drift" and drift.run_dir != default.run_dir
    with pytest.raises(T2IBenchError, match="no-such-profile"):
        resolve_checkpoints(options("no-such-profile"), found)
    assert not list(tmp_path.iterdir())


def _peft_with_pattern(checkpoint_folder: Path, folder: Path, key: str) -> Path:
    """A copy of the fixture's PEFT folder whose rank_pattern tries ``key`` first."""
    import shutil

    folder.mkdir()
    shutil.copytree(checkpoint_folder / "peft-epoch5", folder / "peft-epoch5")
    for cfg_path in (folder / "peft-epoch5").rglob("adapter_config.json"):
        cfg = json.loads(cfg_path.read_text())
        cfg["rank_pattern"] = {key: 2, **cfg.get("rank_pattern", {})}
        cfg_path.write_text(json.dumps(cfg))
    return folder


def test_item31_pathological_rank_pattern_is_bounded(checkpoint_folder, tmp_path):
    """``(.+)+b`` backtracks for hours under ``re`` on a module name; under the bounded matcher
    the dry run takes seconds and reads the same adapter; a key that is slow even so is refused
    in one line. Each command runs in a process (a fork of this one, tests/forked.py) that a hang
    would not outlive."""
    import subprocess
    import time

    from t2ibench.adapters.files import read_adapter
    from tests.forked import forked_cli

    def dry_run(folder):
        proc = forked_cli("evaluate-checkpoints", str(folder), "--dry-run", folder=tmp_path)
        proc.wait(timeout=120)
        return proc

    folder = _peft_with_pattern(checkpoint_folder, tmp_path / "nested", "(.+)+b")
    t0 = time.perf_counter()
    try:
        proc = dry_run(folder)
    except subprocess.TimeoutExpired:
        pytest.fail("evaluate-checkpoints --dry-run hangs on rank_pattern (.+)+b")
    assert proc.returncode == 0, proc.stderr
    assert time.perf_counter() - t0 < 60 and "peft-epoch5" in proc.stdout
    got, _ = read_adapter(folder / "peft-epoch5")
    want, _ = read_adapter(checkpoint_folder / "peft-epoch5")
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k])

    slow = _peft_with_pattern(checkpoint_folder, tmp_path / "slow", r"(?:\w|\w\w|.)*\W")
    t0 = time.perf_counter()
    proc = dry_run(slow)
    lines = [x for x in proc.stderr.splitlines() if x.startswith("error")]  # not kernels' warnings
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "rank_pattern key" in lines[0] and "too long" in lines[0] and "peft-epoch5" in lines[0]
    assert time.perf_counter() - t0 < 60


def test_item7_kohya_unnumbered_final_file_is_the_last_epoch(pipe, tmp_path, caplog):
    """kohya's ``save_weights`` without metadata: ``mylora-000001``, ``mylora-000002`` and the
    final ``mylora``; the documented convention (docs/evaluate-checkpoints.md): the unnumbered file
    is the last epoch, after the highest number (by one saving interval), and the log says so."""
    from t2ibench.pipeline.checkpoints import order_checkpoints

    doc = Path(__file__).parents[2] / "docs" / "evaluate-checkpoints.md"
    assert "unnumbered final file" in " ".join(doc.read_text(encoding="utf-8").split())
    folder = tmp_path / "kohya"
    folder.mkdir()
    for stem in ("mylora-000001", "mylora-000002", "mylora"):
        _save_t2ibench(pipe, folder / f"{stem}.safetensors", "lora", None, 1)
    with caplog.at_level(logging.INFO, logger="t2ibench.checkpoints"):
        found = find_checkpoints(folder)
    assert [(f.name, f.epoch) for f in found] == [
        ("mylora-000001", 1), ("mylora-000002", 2), ("mylora", 3)
    ]  # fmt: skip
    assert found[-1].order_from == "name (kohya's final file)"
    assert "mylora.safetensors" in caplog.text and "last epoch" in caplog.text
    # saved every 2 epochs: one interval after the highest; a lone unnumbered file still refused
    got = order_checkpoints([_found("x-000002", 2), _found("x-000004", 4), _found("x")])
    assert [(f.name, f.epoch) for f in got] == [("x-000002", 2), ("x-000004", 4), ("x", 6)]
    from t2ibench.errors import ConfigError

    with pytest.raises(ConfigError, match="final: cannot tell"):
        order_checkpoints([_found("x-000002", 2), _found("final")])
