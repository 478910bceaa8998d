"""``t2ibench sweep --grid paper --dry-run``: the paper sweep's work and GPU-hours, projected."""

import json

import pytest
from typer.testing import CliRunner

from t2ibench.cli import app
from t2ibench.pipeline.plan import TABLE5_HOURS, measured_throughput, sweep_plan
from t2ibench.pipeline.sweep import load_grid


@pytest.fixture(scope="module")
def paper():
    return sweep_plan(load_grid("paper"), throughput=None)


def test_paper_grid_counts(paper):
    assert paper["runs"] == 78 and paper["checkpoints"] == 234
    # 50 epochs × ceil(5,560 samples / batch 8) = 34,750 steps a run.
    assert paper["work"]["after"]["training steps"] == 78 * 34_750
    # 39 leaves × 100 × (train, trigger, alter, concept-agnostic) + 32 non-style leaves × 100 style
    assert paper["dataset"]["images_per_checkpoint"] == 18_800
    per_ck, style = 18_800, 3_200
    assert paper["work"]["before"]["images generated"] == 234 * per_ck + 78 * per_ck
    assert paper["work"]["after"]["images generated"] == 234 * per_ck + per_ck
    assert paper["work"]["after"]["Gram computations"] == 234 * style + style
    assert paper["work"]["before"]["Gram computations"] == 2 * 234 * style
    # 3 image encoders (DINOv2, CLIP, ConvNeXt) over tuned images + the 1,706 references once.
    assert paper["work"]["after"]["encoder passes"] == 3 * (234 * per_ck + 1706)


def test_paper_cost_is_table5(paper):
    assert 78 * min(TABLE5_HOURS.values()) <= paper["paper_train_h"]
    assert paper["paper_train_h"] <= 78 * max(TABLE5_HOURS.values())
    # Training at the paper's own rate: the same hours as the paper's.
    assert paper["gpu_hours"]["after"]["training steps"] == pytest.approx(paper["paper_train_h"])
    before = sum(paper["gpu_hours"]["before"].values())
    after = sum(paper["gpu_hours"]["after"].values())
    assert after < before


def test_measured_table_replaces_defaults(tmp_path):
    (tmp_path / "gpu_2026-01-01.json").write_text(
        json.dumps({"gpu": "X", "image_s": 0.5, "train_step_s": {"lora": 0.1}})
    )
    (tmp_path / "gpu_2026-02-01.json").write_text(json.dumps({"dry": True, "image_s": 9.0}))
    tp = measured_throughput(tmp_path)
    assert tp["image_s"] == 0.5 and tp["source"] == "measured: gpu_2026-01-01.json"
    p = sweep_plan(load_grid("paper"), throughput=tp)
    assert p["gpu_hours"]["after"]["images generated"] == pytest.approx(
        p["work"]["after"]["images generated"] * 0.5 / 3600
    )


def test_cli_dry_run_prints_the_projection(tmp_path):
    res = CliRunner().invoke(app, ["sweep", "--grid", "paper", "--dry-run", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "exp-1001-sd15-lora8a4-a" in res.output
    assert "GPU-h before" in res.output and "Table 5" in res.output
    assert not (tmp_path / "runs").exists()


def test_counts_come_from_a_given_dataset(tmp_path):
    from t2ibench.data import load_dataset, make_demo_dataset
    from t2ibench.prompts import jobs_for

    root = make_demo_dataset(tmp_path / "demo")
    grid = tmp_path / "g.toml"
    grid.write_text(
        '[grid]\nname = "g"\nseeds = [1, 2]\nprofile = "tiny"\n'
        f'[common]\nbase = "tiny"\ndataset = "{root}"\nepochs = 3\nsave_epochs = [1, 3]\n'
        "batch_size = 4\ngenerate.images_per_leaf = 2\n"
        '[[config]]\nname = "a"\ntrainer = "lora"\n[[config]]\nname = "b"\ntrainer = "loha"\n'
    )
    p = sweep_plan(load_grid(grid))
    ds = load_dataset(root)
    jobs = jobs_for(ds, None, 2)
    samples = sum(ds.repeats(im.concept) for im in ds.images)
    assert p["runs"] == 4 and p["checkpoints"] == 8
    assert p["work"]["after"]["training steps"] == 4 * 3 * -(-samples // 4)
    assert p["work"]["after"]["images generated"] == 9 * len(jobs)
    assert p["dataset"]["style_images_per_checkpoint"] == sum(
        j.prompt_type == "style" for j in jobs
    )


# --- the makespan on N GPUs (``--gpus N``) ----------------------------------------------------------


def test_makespan_small_cases_by_hand():
    from t2ibench.pipeline.plan import makespan

    runs = [
        {"train_h": 4.0, "generate_h": 2.0, "evaluate_h": 1.0},
        {"train_h": 2.0, "generate_h": 2.0, "evaluate_h": 1.0},
    ]
    none = {"generate_h": 0.0, "evaluate_h": 0.0}
    # One GPU: everything in a row.
    one = makespan(runs, none, 1)
    assert one["makespan_h"] == pytest.approx(12.0) and one["utilisation"] == pytest.approx(1.0)
    # Two GPUs, one each: the longer chain (4 + 2 + 1) decides.
    two = makespan(runs, none, 2)
    assert two["makespan_h"] == pytest.approx(7.0) and two["lower_bound_h"] == pytest.approx(7.0)
    # Sharded over both: never worse here, never below the bound, the same GPU-hours.
    sharded = makespan(runs, none, 2, shards=2)
    assert sharded["makespan_h"] <= two["makespan_h"] + 1e-9
    assert sharded["makespan_h"] >= sharded["lower_bound_h"] - 1e-9
    assert sharded["gpu_hours"] == pytest.approx(12.0)
    # A run never generates before it is trained: one run on many GPUs is its chain.
    solo = makespan(runs[:1], none, 8, shards=8)
    assert solo["makespan_h"] == pytest.approx(4.0 + 2.0 / 8 + 1.0 / 8)
    # Shared work (base images, references) comes before every evaluation.
    shared = makespan(runs[:1], {"generate_h": 10.0, "evaluate_h": 0.0}, 2)
    assert shared["makespan_h"] == pytest.approx(10.0 + 1.0)


@pytest.mark.parametrize("gpus", [1, 3, 16, 100])
def test_paper_makespan_is_within_list_scheduling_bounds(gpus):
    p = sweep_plan(load_grid("paper"), throughput=None, gpus=gpus)
    total = sum(p["gpu_hours"]["after"].values())
    for key in ("one_gpu_per_run", "sharded"):
        s = p["schedule"][key]
        assert s["gpu_hours"] == pytest.approx(total)
        # Graham: a list schedule is within (busy / m) + longest chain of the optimum's bound
        assert s["lower_bound_h"] - 1e-6 <= s["makespan_h"] <= total / gpus + s["lower_bound_h"]
    one, sharded = p["schedule"]["one_gpu_per_run"], p["schedule"]["sharded"]
    assert sharded["makespan_h"] <= one["makespan_h"] + 1e-6
    if gpus == 1:
        assert one["makespan_h"] == pytest.approx(total)


def test_cli_dry_run_with_gpus_prints_the_makespan(tmp_path):
    args = ["sweep", "--grid", "paper", "--dry-run", "--gpus", "8", "--out", str(tmp_path)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "makespan on 8 GPU(s)" in res.output and "sharded over up to 8 GPUs" in res.output
    assert "benchmarks/gpu.sh" in res.output
    bad = CliRunner().invoke(app, [*args[:-4], "--gpus", "0"])
    assert bad.exit_code != 0


# --- issue 19 item 6: the modern grid, each base at its own figures --------------------------------


@pytest.fixture(scope="module")
def modern():
    return sweep_plan(load_grid("modern"), gpus=16)


def test_modern_grid_is_methods_by_bases():
    g = load_grid("modern")
    bases = {c["base"] for c in g.configs}
    assert bases == {"sdxl", "sd3", "flux"} and g.seed_labels == ["a", "b", "c"]
    methods = {b: {c["trainer"] for c in g.configs if c["base"] == b} for b in bases}
    assert methods["sdxl"] == methods["sd3"] == methods["flux"]
    assert {"lora", "dora", "lycoris-loha", "lycoris-lokr", "lycoris-oft"} <= methods["flux"]


def test_modern_dry_run_costs_each_base_at_its_own_figures(modern):
    from t2ibench.architectures import get_architecture
    from t2ibench.pipeline.plan import PAPER_DATASET

    rows = {r["base"]: r for r in modern["per_base"]}
    assert list(rows) == ["sdxl", "sd3", "flux", "references (shared)"]
    per_ck = modern["dataset"]["images_per_checkpoint"]
    for base in ("sdxl", "sd3", "flux"):
        fig, r = get_architecture(base).cost, rows[base]
        assert r["image_s"] == fig.image_s and r["runs"] == 21 and r["checkpoints"] == 63
        # its checkpoints' images and its own base model's, at its own rate
        assert r["generate_h"] == pytest.approx((63 + 1) * per_ck * fig.image_s / 3600)
        # LoRA's 3 runs: 50 epochs of ceil(5,560 / 8) steps of 8 samples at its rate
        steps = 50 * -(-PAPER_DATASET["samples_per_epoch"] // 8)
        assert r["train_h"] > 21 * 0.9 * steps * 8 * fig.train_sample_s / 3600
    # the bases differ, and the rows add up to the total after sharing
    assert rows["sdxl"]["total_h"] < rows["flux"]["total_h"] < rows["sd3"]["total_h"]
    after = sum(modern["gpu_hours"]["after"].values())
    assert sum(r["total_h"] for r in rows.values()) == pytest.approx(after)
    assert modern["schedule"]["sharded"]["gpu_hours"] == pytest.approx(after)


def test_cli_modern_dry_run_prints_per_base_rows_and_totals(tmp_path):
    args = ["sweep", "--grid", "modern", "--dry-run", "--gpus", "16", "--out", str(tmp_path)]
    res = CliRunner().invoke(app, args, terminal_width=400)
    assert res.exit_code == 0, res.output
    out = res.output
    plan = sweep_plan(load_grid("modern"), gpus=16)
    for r in plan["per_base"][:3]:
        line = next(ln for ln in out.splitlines() if ln.startswith(f"| {r['base']} |"))
        assert r["source"] in line and f"{r['total_h']:,.1f} |" in line
    total = sum(plan["gpu_hours"]["after"].values())
    assert f"**{total:,.1f}**" in out.split("per base")[1]  # the per-base table's total row
    assert "makespan on 16 GPU(s)" in out
    assert "paper's own cost" not in out  # Table 5 is SD1.5's: not compared here
