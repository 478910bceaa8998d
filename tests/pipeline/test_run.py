"""End to end on tiny models: train 2 epochs (a checkpoint each), generate every prompt type,
compute every metric the selected encoders feed, analyse; then a rerun redoes nothing."""

import json
import math

import pytest

from t2ibench.metrics import get_metric
from t2ibench.pipeline.run import RunOptions, execute, resolve, set_layers
from t2ibench.prompts import list_prompt_types
from t2ibench.results import read_results
from t2ibench.testing import run_cli

ENCODERS = ["dinov2-l@tiny", "clip-l14@tiny", "vgg19@tiny"]


def tiny_options(tmp_path, overrides=(), **kw) -> RunOptions:
    quick = {
        "trainer": "lora",
        "evaluate.encoders": ENCODERS,
        "generate.images_per_leaf": 2,
        "generate.steps": 2,
        "trainer.epochs": 2,
        "trainer.save_epochs": [1, 2],
    }
    base = dict(profile="tiny", out=str(tmp_path / "results"), progress=False)
    base.update(kw)
    return RunOptions(layers=[("test", quick), *set_layers(overrides)], **base)


@pytest.fixture(scope="module")
def finished_run(tiny_run):
    """The session's tiny run (tests/conftest.py): the options of ``tiny_options``."""
    resolved, run_dir = tiny_run
    assert resolved.run_hash == resolve(tiny_options(run_dir.parent.parent)).run_hash
    return resolved, run_dir


def expected_metrics(prompt_type: str) -> set[str]:
    kinds = {"dinov2-l": "image", "clip-l14": "image-text", "vgg19": "gram"}
    out = set()
    for name in ["image_similarity", "centroid_distance", "frechet_distance", "vendi"]:
        out.add(name)
    out.add("text_alignment")
    if prompt_type == "style":
        out.add("style_loss")
    assert all(get_metric(m) for m in out) and kinds
    return out


def test_every_expected_value_is_finite(finished_run):
    resolved, run_dir = finished_run
    df = read_results(run_dir / "results")
    # the base model is scored too, as checkpoint "base" at epoch 0 (the report's floor)
    assert sorted(df["checkpoint"].unique()) == ["base", "lora-e000001", "lora-e000002"]
    assert sorted(df["epoch"].unique()) == [0, 1, 2]
    checkpoints = ["lora-e000001", "lora-e000002"]
    for ck in checkpoints:
        for leaf_key, leaf in resolved.dataset.leaves.items():
            for pt in list_prompt_types():
                if pt == "style" and leaf.concept.kind == "style":
                    continue
                rows = df[(df.checkpoint == ck) & (df.leaf == leaf_key) & (df.prompt_type == pt)]
                got = set(rows["metric"])
                assert expected_metrics(pt) <= got, (ck, leaf_key, pt, got)
                for v in rows["value"]:
                    assert math.isfinite(v), (ck, leaf_key, pt)
    assert set(df[df.checkpoint != "base"]["algorithm"]) == {"lora"}
    assert (run_dir / "report" / "report.html").is_file()


def test_results_name_their_base(finished_run, tmp_path):
    """Every row of a run's results (checkpoints and the base model) names the base the run used,
    as a sweep's joint table does, so results of several runs analyse by base alike; `evaluate`
    of a run's images folder names that run's base, outside images 'unknown'."""
    from t2ibench.cli.evaluate import UNKNOWN_BASE, images_base
    from t2ibench.results import run_base

    resolved, run_dir = finished_run
    df = read_results(run_dir / "results")
    assert set(df["base"]) == {resolved.config.base} == {run_base(run_dir)}
    assert df["base"].notna().all() and resolved.config.base
    # the parts too (what evaluate-checkpoints merges the same way)
    part = read_results(run_dir / "results" / "parts" / "lora-e000002")
    assert set(part["base"]) == {resolved.config.base}
    assert images_base(run_dir / "images" / "lora-e000002") == resolved.config.base
    assert images_base(tmp_path) == UNKNOWN_BASE


def test_records(finished_run):
    resolved, run_dir = finished_run
    record = json.loads((run_dir / "run.json").read_text())
    assert record["run_hash"] == resolved.run_hash
    assert record["dataset"]["sha256"] == resolved.dataset.sha256
    assert record["versions"]["torch"]
    assert set(record["timings"]) >= {"train", "generate", "evaluate", "analyze"}
    assert record["resolved"]["trainer_config"]["trainer"] == "lora"
    assert (run_dir / "run.log").read_text().count("checkpoints:") >= 1
    # Cost: one train segment with its time and peak memory; the report reads it with the
    # checkpoint's parameters, counted here from the network the trainer builds on the same base.
    (seg,) = record["cost"]["train_segments"]
    assert seg["finished"] and seg["epochs_trained"] == 2 and seg["steps"] > 0
    assert 0 < seg["seconds"] <= record["timings"]["train"]
    assert seg["peak_rss_bytes"] > 100 * 2**20 and seg["peak_cuda_bytes"] is None
    from t2ibench.adapters.sizes import network_shapes
    from t2ibench.analysis.cost import run_cost
    from t2ibench.models import load_base

    pipe = load_base(resolved.base)
    cfg = {k: v for k, v in resolved.trainer_config.to_dict().items() if k != "trainer"}
    shapes = network_shapes("lora", parts={"unet": pipe.unet, "te": pipe.text_encoder}, **cfg)
    want = sum(math.prod(s) for k, s in shapes.items() if not k.endswith(".alpha"))
    cost = run_cost(run_dir)
    assert cost["params"] == want and cost["train_s"] == seg["seconds"]
    assert "<h2>Cost</h2>" in (run_dir / "report" / "report.html").read_text()


def test_rerun_redoes_nothing(finished_run):
    resolved, run_dir = finished_run
    files = sorted(p for p in (run_dir / "images").rglob("*.png"))
    before = {p: p.stat().st_mtime_ns for p in files}
    manifests = {p: p.read_text() for p in (run_dir / "images").rglob("manifest.jsonl")}
    parts = {p: p.stat().st_mtime_ns for p in (run_dir / "results" / "parts").rglob("*.parquet")}
    ckpts = {p: p.stat().st_mtime_ns for p in (run_dir / "checkpoints").glob("*.safetensors")}
    rows = len(read_results(run_dir / "results"))
    merged = (run_dir / "results" / "results.parquet").stat().st_mtime_ns
    assert [s.name for s in resolved.stages] == ["train", "generate", "evaluate", "analyze"]
    log_before = (run_dir / "run.log").read_text()
    execute(resolve(resolved.options))
    # every stage says it was done before and kept its outputs; the merged table is untouched
    log = (run_dir / "run.log").read_text()[len(log_before) :]
    for stage in ("train", "generate", "evaluate", "analyze"):
        assert f"{stage}: " in log and "kept" in log.split(f"{stage}: ", 1)[1].splitlines()[0]
    assert (run_dir / "results" / "results.parquet").stat().st_mtime_ns == merged
    assert {p: p.stat().st_mtime_ns for p in files} == before
    assert {p: p.read_text() for p in manifests} == manifests
    assert {p: p.stat().st_mtime_ns for p in parts} == parts
    assert {p: p.stat().st_mtime_ns for p in ckpts} == ckpts
    assert len(read_results(run_dir / "results")) == rows
    # Nothing was trained: no second cost segment.
    assert len(json.loads((run_dir / "run.json").read_text())["cost"]["train_segments"]) == 1


def test_changed_config_is_a_new_run(finished_run, tmp_path):
    resolved, run_dir = finished_run
    other = resolve(tiny_options(run_dir.parent.parent, overrides=["lr=2e-3"]))
    assert other.run_dir != run_dir
    same_name = resolve(
        tiny_options(run_dir.parent.parent, overrides=["lr=2e-3"], name=run_dir.name)
    )
    from t2ibench.errors import T2IBenchError

    with pytest.raises(T2IBenchError, match="different config"):
        execute(same_name)


def test_kill_during_generation_and_resume(tmp_path, monkeypatch):
    """A real SIGKILL to ``t2ibench run`` mid-generation, then the same command again (which
    loads the encoders once: the checkpoints' scoring and the anchors share them). The killed
    process is a fork of this one (tests/forked.py: a real process, without a fresh Python's
    imports)."""
    import os
    import signal
    import time

    from tests.forked import forked_cli

    out = tmp_path / "results"
    args = [
        "run",
        "--trainer",
        "lora",
        "--profile",
        "tiny",
        "--no-progress",
        "--encoders",
        ",".join(ENCODERS),
        "--images-per-leaf",
        "2",
        "--steps",
        "2",
        "--epochs",
        "1",
        "--save-epochs",
        "1",
        "--batch-size",
        "1",
        "--out",
        str(out),
    ]
    proc = forked_cli(*args, folder=tmp_path)
    manifest = None
    deadline = time.time() + 600
    while time.time() < deadline:
        found = list(out.glob("*/images/lora-e000001/manifest.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 5:
            manifest = found[0]
            break
        if proc.poll() is not None:
            pytest.fail(f"run ended before it could be killed: {proc.stderr[-2000:]}")
        time.sleep(0.05)
    assert manifest is not None, "generation never started"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    images = manifest.parent
    done_before = {
        json.loads(line)["file"]: None
        for line in manifest.read_text().splitlines()
        if line.endswith("}")
    }
    mtimes = {f: (images / f).stat().st_mtime_ns for f in done_before}

    import t2ibench.pipeline.load_encoders as load_encoders

    loads = []
    plain = load_encoders.create_encoders
    monkeypatch.setattr(
        load_encoders, "create_encoders", lambda *a, **k: loads.append(a) or plain(*a, **k)
    )
    rerun = run_cli(*args)  # the same command again (in this process: t2ibench/testing.py)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert len(loads) == 1, loads
    lines = manifest.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    files = [r["file"] for r in records]
    assert len(files) == len(set(files)), "a manifest line was duplicated"
    total_jobs = len(list(images.rglob("*.png")))
    assert total_jobs == len(files), "an image is missing from the manifest or vice versa"
    leftovers = [p.name for p in images.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers in ([], [".generate.lock"]), leftovers  # the writer lock may stay
    for f, mtime in mtimes.items():
        assert (images / f).stat().st_mtime_ns == mtime, f"{f} was redone"
    run_dir = manifest.parents[2]
    df = read_results(run_dir / "results")
    assert not df.duplicated(
        ["checkpoint", "leaf", "prompt_type", "metric", "encoder", "resize"]
    ).any()


def test_native_diffusers_checkpoint_end_to_end(tmp_path):
    """``native_save=diffusers`` (the native trainer's own key) saves a full diffusers folder; the
    run generates its images by loading that folder (not as an adapter file) and scores them."""
    options = tiny_options(
        tmp_path,
        overrides=[
            "trainer=native",
            "native_save=diffusers",
            "trainer.epochs=1",
            "trainer.save_epochs=[1]",
            "generate.images_per_leaf=1",
            'generate.prompt_types=["trigger"]',
            'evaluate.encoders=["dinov2-l@tiny"]',
            'evaluate.metrics=["image_similarity"]',
        ],
    )
    resolved = resolve(options)
    assert resolved.trainer_config.native_save == "diffusers"
    run_dir = execute(resolved)
    folder = run_dir / "checkpoints" / "native-e000001"
    assert (folder / "model_index.json").is_file()
    manifest = run_dir / "images" / "native-e000001" / "manifest.jsonl"
    assert len(manifest.read_text().splitlines()) == len(resolved.dataset.leaves)
    df = read_results(run_dir / "results")
    assert set(df["checkpoint"]) == {"base", "native-e000001"}  # the base model is scored too
    assert set(df[df["checkpoint"] != "base"]["algorithm"]) == {"native"}
    assert df["value"].notna().all()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["config"]["trainer"]["native_save"] == "diffusers"


def test_dotted_overrides_and_errors(tmp_path):
    from t2ibench.errors import ConfigError

    r = resolve(tiny_options(tmp_path, overrides=["trainer.dim=16", "generate.steps=3", "alpha=2"]))
    assert (r.trainer_config.dim, r.trainer_config.alpha, r.generation.steps) == (16, 2.0, 3)
    with pytest.raises(
        ConfigError, match=r"--set generate.steps=many: field 'generate.steps' must be an integer"
    ):
        resolve(tiny_options(tmp_path, overrides=["generate.steps=many"]))
    with pytest.raises(
        ConfigError, match=r"--set trainer.dim=x: field 'trainer.dim' must be an integer"
    ):
        resolve(tiny_options(tmp_path, overrides=["trainer.dim=x"]))
    with pytest.raises(ConfigError, match=r"unknown key 'generate.stepz'"):
        resolve(tiny_options(tmp_path, overrides=["generate.stepz=3"]))
    with pytest.raises(ConfigError, match=r"unknown key 'trainer.native_save' for trainer 'lora'"):
        resolve(tiny_options(tmp_path, overrides=["native_save=diffusers"]))


def test_item29_metric_profile_file_end_to_end(tmp_path):
    """``t2ibench run --metric-profile FILE.toml`` (issue 22 item 29): the file loaded at the
    start defines the evaluate stage's measures; it is not looked up again by its name ('mp',
    registered nowhere) after training and generation."""
    from typer.testing import CliRunner

    from t2ibench.cli import app

    profile = tmp_path / "mine.toml"
    profile.write_text(
        'name = "mp"\ndescription = "one DINO measure"\nreference = "a test"\n\n'
        '[[measure]]\nlabel = "DINO"\nmetric = "image_similarity"\nencoder = "dino-vits16"\n'
        'weights = "facebook/dino-vits16"\nresize = "center-crop"\nsize = 224\n'
    )
    out = tmp_path / "results"
    args = ["run", "--profile", "tiny", "--trainer", "lora", "--no-progress", "--epochs", "1",
            "--save-epochs", "1", "--images-per-leaf", "1", "--steps", "2",
            "--prompt-types", "trigger", "--encoders", "dinov2-l@tiny",
            "--metric-profile", str(profile), "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
    (run_dir,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    df = read_results(run_dir / "results")
    assert set(df["metric_profile"]) == {"mp"} and set(df["measure"]) == {"DINO"}
    assert set(df["checkpoint"]) == {"base", "lora-e000001"}
    assert set(df["encoder"]) == {"dino-vits16"} and df["value"].notna().all()
    assert json.loads((run_dir / "run.json").read_text())["metric_profile"] == "mp"
    assert (run_dir / "report" / "report.html").is_file()
