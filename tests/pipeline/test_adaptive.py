"""``--budget adaptive``: rounds in the fixed seeded image order, stopping, resuming mid-round."""

import json

import pandas as pd
import pytest

from t2ibench.pipeline import adaptive
from t2ibench.pipeline.checkpoints import CheckpointsOptions, evaluate_checkpoints
from t2ibench.pipeline.manifest import read_manifest
from t2ibench.pipeline.run import set_layers
from t2ibench.results import read_results

SETS = [
    "epochs=1",
    "save_epochs=[1]",
    "generate.images_per_leaf=4",
    "generate.steps=1",
    # 5: batches straddle prompt types and rounds, as the byte-for-byte claim must survive
    "generate.batch_size=5",
    'generate.prompt_types=["train", "trigger"]',
    'evaluate.encoders=["dinov2-l@tiny"]',
    'evaluate.metrics=["image_similarity"]',
]
ADAPTIVE = {"budget": {"mode": "adaptive", "width": 0.02, "round_images": 2}}


def _random_lora(path):
    """A LoRA file with random weights on the tiny base (no training: seconds, not a run)."""
    import torch

    from t2ibench.adapters import get_trainer
    from t2ibench.adapters.files import build_metadata, save_adapter
    from t2ibench.models import load_base

    pipe = load_base("tiny")
    spec = get_trainer("lora")
    cfg = spec.config([("test", {"preset": "full"})])
    net = spec.build_network({"unet": pipe.unet, "te": pipe.text_encoder}, cfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    save_adapter(net, path, build_metadata(cfg, None, epoch=1))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """On one checkpoint, under one --out (the base model's images shared): a full evaluation and
    two adaptive ones, one uninterrupted, one killed in the middle of round 2 and restarted."""
    out = tmp_path_factory.mktemp("adaptive")
    cks = out / "cks"
    cks.mkdir()
    _random_lora(cks / "lora-e000001.safetensors")

    def evaluate(name, *budget):
        return evaluate_checkpoints(
            CheckpointsOptions(folder=str(cks), profile="tiny", name=name, out=str(out),
                               layers=[*set_layers(SETS), *budget], progress=False,
                               analyze=False)
        )  # fmt: skip

    full = evaluate("full")
    whole = evaluate("whole", ("test", ADAPTIVE))
    calls, real = [], adaptive.per_image_values

    def killed_in_round_2(run_, names):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # after round 2's images, before its decisions
        return real(run_, names)

    mp = pytest.MonkeyPatch()
    mp.setattr(adaptive, "per_image_values", killed_in_round_2)
    with pytest.raises(KeyboardInterrupt):
        evaluate("resumed", ("test", ADAPTIVE))
    mp.undo()
    assert json.loads((out / "resumed" / "adaptive.json").read_text())["round"] == 1
    resumed = evaluate("resumed", ("test", ADAPTIVE))
    return full, whole, resumed


def test_adaptive_images_are_the_full_runs_first_images(runs):
    full, whole, _ = runs
    budget = pd.read_csv(whole / "results" / "budget.csv", keep_default_na=False)
    assert (budget["images"] < budget["images_full"]).any() and budget["rounds"].max() >= 2
    assert set(budget["rule"]) <= {"width", "all images", "not judged", "settled"}
    full_sha = {r.file: r.sha256 for r in read_manifest(full / "images" / "lora-e000001" /
                                                        "manifest.jsonl")}  # fmt: skip
    mine = read_manifest(whole / "images" / "lora-e000001" / "manifest.jsonl")
    assert len(mine) == budget["images"].sum() < len(full_sha)
    assert all(full_sha[r.file] == r.sha256 for r in mine)  # byte for byte
    # the results say how many images each leaf mean is over
    df = read_results(whole / "results")
    per_type = df[df["checkpoint"] == "lora-e000001"].groupby("prompt_type")["n_images"].max()
    assert (per_type < 4).any()


def test_killed_mid_round_resumes_to_the_same_results(runs):
    _, whole, resumed = runs
    a = (whole / "results" / "budget.csv").read_text()
    assert a == (resumed / "results" / "budget.csv").read_text()
    cols = ["checkpoint", "leaf", "prompt_type", "metric", "encoder", "value", "n_images"]
    key = cols[:5]
    x = read_results(whole / "results")[cols].sort_values(key).reset_index(drop=True)
    y = read_results(resumed / "results")[cols].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(x, y)
    lines = (resumed / "images" / "lora-e000001" / "manifest.jsonl").read_text().splitlines()
    files = [json.loads(line)["file"] for line in lines]
    assert len(files) == len(set(files))  # nothing made twice


GRID = """
[grid]
name = "adaptive-mini"
seeds = [23]
seed_labels = ["a"]
profile = "tiny"

[common]
epochs = 1
save_epochs = [1]
generate.images_per_leaf = 4
generate.steps = 1
generate.batch_size = 2
generate.prompt_types = ["train", "trigger"]
evaluate.encoders = ["dinov2-l@tiny"]
# per-image measures only: a set measure (Vendi) compared at unequal image counts is biased
# (docs/budget.md), so the criterion compared here is fidelity
evaluate.metrics = ["image_similarity"]

[[config]]
name = "mini-lora"
trainer = "lora"

[[config]]
name = "mini-native"
trainer = "native"
lr = 1e-2
"""


def _best(results):
    from t2ibench.analysis import rank_normalise
    from t2ibench.analysis.budget import conclusions, criteria_of, criterion_scores

    df = read_results(results)
    df = df[df["checkpoint"] != "base"]
    heads = criteria_of(df)
    found = conclusions(criterion_scores(rank_normalise(df), heads))
    return {k: v for k, v in found.items() if k.startswith("best:")}


@pytest.mark.slow
def test_adaptive_sweep_uses_fewer_images_and_picks_the_same_best(tmp_path):
    from t2ibench.pipeline.sweep import load_grid, run_sweep

    path = tmp_path / "grid.toml"
    path.write_text(GRID)
    grid = load_grid(path)
    run_sweep(grid, out=tmp_path / "full", progress=False)
    result = run_sweep(grid, out=tmp_path / "adaptive", progress=False,
                       budget={"mode": "adaptive", "width": 0.08, "round_images": 1})  # fmt: skip
    assert not result.failed
    budget = pd.read_csv(tmp_path / "adaptive" / "results" / "budget.csv", keep_default_na=False)
    assert budget["images"].sum() < budget["images_full"].sum()
    best = _best(tmp_path / "full" / "results")
    assert best and best == _best(tmp_path / "adaptive" / "results")
    report = (result.report / "report.html").read_text(encoding="utf-8")
    assert "Adaptive budget" in report and "which rule stopped what" in report
    print(budget.to_string())


def test_race_entities_pairs_images_across_checkpoints():
    """Checkpoints a and b on the same 30 image jobs, b 0.05 better on every image of clearly
    varying values: paired by image, b's place is settled at the first look; c, equal to a, ties."""
    import numpy as np

    from t2ibench.pipeline.adaptive import race_entities

    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.2, 30)
    rows = []
    for ck, shift in (("a", 0.0), ("b", 0.05), ("c", 0.0)):
        for i, v in enumerate(base + shift + rng.normal(0, 0.005, 30)):
            rows.append(dict(checkpoint=ck, criterion="fidelity", metric="image_similarity",
                             prompt_type="train", encoder="dinov2-l", image=f"x/{i}.png",
                             value=v))  # fmt: skip
    got = race_entities(pd.DataFrame(rows), "checkpoint", look=1, alpha=0.05)
    assert got == {
        "a": "settled: fidelity out: beaten by b",
        "b": "settled: fidelity winner",
        "c": "settled: fidelity out: beaten by b",
    }


def test_paper_dry_run_projects_both_budgets():
    from t2ibench.pipeline.plan import adaptive_projection, sweep_plan
    from t2ibench.pipeline.sweep import load_grid

    plan = sweep_plan(load_grid("paper"))
    evidence = {"fraction": 0.5, "agrees": "1 of 1", "source": "test"}
    a = adaptive_projection(plan, evidence)
    shape = plan["dataset"]["per_prompt_type"]
    # judged prompt types at half, the others (trigger, concept-agnostic) at one round of 4 / 100
    want = sum(
        c * (0.04 if p in ("trigger", "concept-agnostic") else 0.5) for p, c in shape.items()
    )
    assert a["adaptive_images_per_checkpoint"] == round(want)
    images_h = a["plain_h"] - a["training_h"]
    assert a["adaptive_h"] == pytest.approx(a["training_h"] + images_h * want / sum(shape.values()))


def test_paper_dry_run_cli_prints_the_committed_projection():
    from typer.testing import CliRunner

    from t2ibench.cli import app

    res = CliRunner().invoke(app, ["sweep", "--grid", "paper", "--dry-run", "--budget", "adaptive"])
    assert res.exit_code == 0, res.output
    assert "| full |" in res.output and "| adaptive |" in res.output
    assert "adaptive_2026-12-07.csv" in res.output and "half" in res.output


def test_adaptive_with_ray_workers_is_one_clear_line(tmp_path):
    from t2ibench.errors import ConfigError
    from t2ibench.pipeline.run import RunOptions, resolve

    layers = [*set_layers([*SETS, "generate.workers=2"]), ("test", ADAPTIVE)]
    with pytest.raises(ConfigError, match="--budget adaptive: generate.workers"):
        resolve(RunOptions(layers=layers, profile="tiny", out=str(tmp_path)))
    # a full run of the same settings keeps its name (the budget is in the hash only when adaptive)
    full = resolve(RunOptions(layers=set_layers(SETS), profile="tiny", out=str(tmp_path)))
    assert "budget" not in full.identity()
    mine = resolve(RunOptions(layers=[*set_layers(SETS), ("t", ADAPTIVE)], profile="tiny",
                              out=str(tmp_path)))  # fmt: skip
    assert mine.identity()["budget"]["mode"] == "adaptive" and mine.run_hash != full.run_hash


def test_a_changed_checkpoint_restarts_the_rounds(tmp_path):
    """Racing compares every checkpoint: when one file changes, the adaptive decisions go (the
    images of the others stay)."""
    from types import SimpleNamespace

    from t2ibench.pipeline.adaptive import BUDGET_TABLE, STATE_NAME, VALUES_NAME
    from t2ibench.pipeline.checkpoints import CHECKPOINTS_RECORD, forget_changed

    run_dir = tmp_path / "run"
    kept = run_dir / "images" / "b" / "x.png"
    for f in (
        run_dir / STATE_NAME,
        run_dir / VALUES_NAME,
        run_dir / "results" / BUDGET_TABLE,
        kept,
    ):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("x")
    (run_dir / CHECKPOINTS_RECORD).write_text(json.dumps({"a": "1" * 64, "b": "2" * 64}))
    found = [SimpleNamespace(name="a", sha256="3" * 64), SimpleNamespace(name="b", sha256="2" * 64)]
    assert forget_changed(run_dir, found) == ["a"]
    assert not (run_dir / STATE_NAME).exists() and not (run_dir / VALUES_NAME).exists()
    assert not (run_dir / "results" / BUDGET_TABLE).exists() and kept.is_file()
