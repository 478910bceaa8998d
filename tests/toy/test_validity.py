"""The validity report on a hand-made sweep: known scenes → known probe rates → known correlations;
and its statistics on synthetic tables whose answer is known (issue 13 item 24)."""

import ast
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from t2ibench.errors import ResultsError
from t2ibench.pipeline.manifest import ManifestRecord, write_manifest
from t2ibench.results import write_results
from t2ibench.toy import validity, world
from t2ibench.toy.encoders import WEIGHTS
from t2ibench.toy.probe import PROBE_DIR
from t2ibench.toy.validity import (
    CACHE_NAME,
    probe_outcomes,
    requested_attributes,
    validity_table,
    write_validity_report,
)

needs_probe = pytest.mark.skipif(
    not (PROBE_DIR / "probe.safetensors").is_file(), reason="toy probe weights not installed"
)

LEAF = "characters/starling/hat"
ALTER = [  # (prompt, a scene that follows it)
    ("a red sks character on a striped background", "red", "striped"),
    ("a blue sks character", "blue", "white"),
    ("sks character, green, black background", "green", "black"),
    ("a yellow sks character on a grey background", "yellow", "grey"),
]
STYLE_PROMPT = "sks character, kep outfit in the style of pencil drawing"
AGNOSTIC_PROMPT = "a red character on a white background"

needs_clip = pytest.mark.skipif(
    not (WEIGHTS / "toy-clip" / "model.safetensors").is_file(), reason="toy-clip not installed"
)

# Per (run, checkpoint), in order q = 0..3: how many of the 4 images show / follow / ...
# Four runs at one epoch: one leaf × epoch stratum holding four runs.
RUNS = [("r1", "ck-e000001", 1), ("r2", "ck-e000001", 1), ("r3", "ck-e000001", 1),
        ("r4", "ck-e000001", 1)]  # fmt: skip
CONCEPT_K = [0, 1, 2, 4]  # train prompts: images showing the concept
DISTINCT = [1, 2, 3, 4]  # trigger prompts: distinct colours (all show the concept)
FOLLOW = [0, 2, 3, 4]  # alter prompts: images following their prompt
KEPT = [4, 3, 1, 0]  # style prompts: images keeping the base image's background/colour/style
LEAK = [0, 1, 3, 2]  # concept-agnostic prompts: images showing the concept


def star(colour: str = "red", bg: str = "white", style: str = "flat") -> world.Scene:
    return world.Scene("star", colour, bg, style, "hat", cx=16, cy=18.5, radius=8.5)


def circle(colour: str = "red", bg: str = "white", style: str = "flat") -> world.Scene:
    return world.Scene("circle", colour, bg, style)


def scenes_for(q: int) -> dict[str, list[tuple[str, world.Scene]]]:
    """(prompt, scene) of the 4 images per prompt type of checkpoint q."""
    k = CONCEPT_K[q]
    train = [("a red sks character, kep outfit", star() if i < k else circle()) for i in range(4)]
    colours = world.BASE_COLOURS[: DISTINCT[q]]
    trigger = [("sks character, kep outfit", star(colours[i % len(colours)])) for i in range(4)]
    alter = [
        (p, star(c, b) if i < FOLLOW[q] else star("cyan", "white"))
        for i, (p, c, b) in enumerate(ALTER)
    ]
    style = [(STYLE_PROMPT, star() if i < KEPT[q] else star(bg="black")) for i in range(4)]
    agnostic = [(AGNOSTIC_PROMPT, star() if i < LEAK[q] else circle()) for i in range(4)]
    return {"train": train, "trigger": trigger, "alter": alter, "style": style,
            "concept-agnostic": agnostic}  # fmt: skip


def write_images(folder, checkpoint: str, jobs: dict[str, list[tuple[str, world.Scene]]]) -> None:
    records = []
    for pt, items in jobs.items():
        for i, (prompt, scene) in enumerate(items):
            file = f"{LEAF}/{pt}/{i:04d}-s{1000 + i}.png"
            (folder / file).parent.mkdir(parents=True, exist_ok=True)
            world.render(scene).save(folder / file)
            records.append(ManifestRecord(checkpoint, LEAF, pt, prompt, 1000 + i, file, index=i))
    write_manifest(folder / "manifest.jsonl", records)


def result_rows(run: str, checkpoint: str, epoch: int, q: int) -> list[dict]:
    base = {"checkpoint": checkpoint, "config": run, "seed": "a", "epoch": epoch,
            "category": "characters", "class": "starling", "leaf": LEAF}  # fmt: skip
    rows = []

    def add(pt, metric, encoder, value, resize="letterbox"):
        rows.append({**base, "prompt_type": pt, "metric": metric, "encoder": encoder,
                     "resize": resize, "value": value})  # fmt: skip

    for pt in ("train", "trigger"):
        add(pt, "image_similarity", "toy-dino", 0.1 + 0.2 * CONCEPT_K[q])  # tracks concept: +
        add(pt, "centroid_distance", "toy-dino", 1.0 - 0.2 * CONCEPT_K[q])  # tracks concept: −
        add(pt, "frechet_distance", "toy-dino", 5.0 + CONCEPT_K[q])  # wrong way round on purpose
    add("trigger", "vendi", "toy-dino", 1.0 + 0.7 * DISTINCT[q])
    add("alter", "text_alignment", "toy-clip", 0.2 + 0.05 * FOLLOW[q])
    add("style", "text_alignment", "toy-clip", 0.3)
    add("style", "style_loss", "toy-gram", 0.01 * (4 - KEPT[q]) + 0.001 * q, resize="")
    return rows


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    runs = root / "runs"
    base_dir = runs / ".base-images" / "0123456789abcdef"
    base_jobs = {pt: [(p, circle()) for p, _ in items] for pt, items in scenes_for(0).items()}
    write_images(base_dir, "base", base_jobs)
    for q, (run, ck, _) in enumerate(RUNS):
        run_dir = runs / run
        run_dir.mkdir(parents=True, exist_ok=True)
        # The recorded path is where the sweep ran; the report finds it under this sweep instead.
        (run_dir / "run.json").write_text(
            json.dumps({"base_images": f"/elsewhere/{base_dir.name}"})
        )
        write_images(run_dir / "images" / ck, ck, scenes_for(q))
    for run in ("r1", "r2", "r3", "r4"):
        rows = [r for q, (rn, ck, ep) in enumerate(RUNS) if rn == run
                for r in result_rows(rn, ck, ep, q)]  # fmt: skip
        write_results(pd.DataFrame(rows), runs / run / "results")
    return root


def test_requested_attributes_whole_words():
    assert requested_attributes("a red sks character on a striped background, outline style") == {
        "colour": "red",
        "background": "striped",
        "style": "outline",
    }
    assert requested_attributes("a bluebird crosses the greyhound") == {}
    assert requested_attributes("a red circle and a blue square") == {}  # ambiguous: left out
    assert requested_attributes("sks character in the style of pencil drawing") == {}


@needs_probe
def test_probe_outcomes_match_the_known_scenes(sweep):
    out = probe_outcomes(sweep).set_index(["run", "checkpoint", "prompt_type"])
    for q, (run, ck, _) in enumerate(RUNS):
        g = out.loc[run, ck]
        assert g.loc["train", "concept_rate"] == CONCEPT_K[q] / 4
        assert g.loc["trigger", "concept_rate"] == 1.0
        assert g.loc["trigger", "distinct_outcomes"] == DISTINCT[q]
        assert g.loc["trigger", "distinct_outcomes_norm"] == DISTINCT[q] / 4
        assert g.loc["alter", "attribute_follow_rate"] == FOLLOW[q] / 4
        assert g.loc["alter", "n_attribute_prompts"] == 4
        assert math.isnan(g.loc["style", "attribute_follow_rate"])  # names no base attribute
        assert g.loc["style", "base_change_rate"] == (4 - KEPT[q]) / 4
        assert g.loc["concept-agnostic", "leak_rate"] == LEAK[q] / 4
        # concept-agnostic prompts ask for a red shape on white: every image here follows
        assert g.loc["concept-agnostic", "attribute_follow_rate"] == 1.0
        assert math.isnan(g.loc["train", "leak_rate"])
    base = out.loc[out.index.get_level_values("run").str.startswith("base:")]
    assert len(base) == 5 and (base["concept_rate"] == 0).all()
    assert base["base_change_rate"].isna().all()  # the base has nothing to be paired with
    assert (sweep / CACHE_NAME).is_file()


@needs_probe
def test_probe_cache_makes_a_rerun_free(sweep, monkeypatch):
    first = probe_outcomes(sweep)
    from t2ibench.toy import probe

    def refuse(*a, **k):
        raise AssertionError("the probe ran again although every image is cached")

    monkeypatch.setattr(probe.Probe, "load", refuse)
    pd.testing.assert_frame_equal(probe_outcomes(sweep), first)


@needs_probe
def test_validity_table_within_leaf_on_the_probed_sweep(sweep):
    t = validity_table(sweep, n_boot=300, n_perm=300).set_index(["metric", "prompt_type"])
    sim = t.loc[("image_similarity", "train")]
    assert sim["n"] == 4 and sim["n_runs"] == 4 and sim["n_strata"] == 1
    assert sim["spearman_within"] == pytest.approx(1.0) and sim["expected_sign"] == "+"
    # Four runs are four points: 4! = 24 orderings, so no p below 1/24 — and after Holm over the
    # table, nothing can be concluded. The old report called all of these significant.
    assert sim["p_perm"] > 0.02 and sim["verdict"] == "inconclusive"
    assert not sim["enough_images"] and "groups of 4 < 16 images" in sim["note"]
    assert t.loc[("centroid_distance", "train")]["spearman_within"] == pytest.approx(-1.0)
    fre = t.loc[("frechet_distance", "train")]  # set up the wrong way round
    assert fre["spearman_within"] == pytest.approx(1.0) and fre["verdict"] != "holds"
    trig = t.loc[("image_similarity", "trigger")]  # trigger prompts always show the concept
    assert trig["verdict"] == "undefined" and "truth constant" in trig["note"]
    assert t.loc[("vendi", "trigger")]["spearman_within"] == pytest.approx(1.0)
    assert t.loc[("text_alignment", "alter")]["spearman_within"] == pytest.approx(1.0)
    style_ta = t.loc[("text_alignment", "style")]
    assert style_ta["n"] == 0 and style_ta["verdict"] == "undefined"
    assert "no ground truth" in style_ta["note"]
    sl = t.loc[("style_loss", "style")]
    assert sl["spearman_within"] == pytest.approx(1.0) and sl["encoder"] == "toy-gram"


@needs_probe
@needs_clip
def test_report_files(sweep, tmp_path):
    out = write_validity_report(sweep, tmp_path / "v", n_boot=200, n_perm=200)
    for name in ("validity.csv", "probe_outcomes.csv", "counterfactual.csv", "validity.md",
                 "validity.html"):  # fmt: skip
        assert (out / name).stat().st_size > 0
    page = (out / "validity.html").read_text()
    table = pd.read_csv(out / "validity.csv")
    # one scatter per defined row, embedded in the page
    assert page.count("data:image/png;base64,") == (table["verdict"] != "undefined").sum() == 6
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")
    assert set(table["metric"]) == {"image_similarity", "centroid_distance", "frechet_distance",
                                    "vendi", "text_alignment", "style_loss"}  # fmt: skip
    assert len(pd.read_csv(out / "probe_outcomes.csv")) == 4 * 5 + 5
    assert "| image\\_similarity |" in (out / "validity.md").read_text()
    cf = pd.read_csv(out / "counterfactual.csv").set_index("scope")
    # The alter images that follow their prompt lose alignment when its attribute words are swapped
    follows = cf.loc["images that follow their prompt (probe)"]
    assert follows["mean_drop"] > 0 and follows["n_runs"] == 3  # r1 follows none


# --- statistics on synthetic tables (issue 13 item 24) ------------------------------------------------
LEAVES = ["characters/starling/hat", "toys/ring", "scenes/beach", "styles/pastel"]


def synthetic_joined(
    values, metric="image_similarity", prompt_type="train", truth="concept_rate", n_images=16
):
    """A joined table from {(run, leaf, epoch): (metric value, truth)}."""
    rows = [
        {"metric": metric, "encoder": "toy-dino", "resize": "stretch", "prompt_type": prompt_type,
         "run": run, "checkpoint": f"ck-e{epoch:06d}", "leaf": leaf, "epoch": epoch, "value": v,
         truth: t, "n_images": n_images, "n_attribute_prompts": n_images}
        for (run, leaf, epoch), (v, t) in values.items()
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_item24_within_leaf_positive_when_pooled_is_negative():
    # Simpson's paradox by construction: in every leaf the metric rises with the truth, but the
    # leaves with more concept sit lower on the metric, so the pooled correlation is negative.
    rng = np.random.default_rng(0)
    values = {}
    for k, leaf in enumerate(LEAVES):
        for r in range(12):
            truth = 0.2 * k + 0.1 * rng.random()
            values[(f"run{r}", leaf, 3)] = (-3.0 * k + 5 * truth + 0.1 * rng.random(), truth)
    joined = synthetic_joined(values)
    row = validity_table(joined=joined, n_boot=500, n_perm=500).iloc[0]
    assert row["pooled_spearman"] < -0.5
    assert row["spearman_within"] > 0.5 and row["ci_low"] > 0
    assert row["verdict"] == "holds" and row["n_strata"] == 4 and row["n_runs"] == 12


def test_item24_cluster_ci_is_as_wide_as_the_runs_allow():
    # Eight runs seen in twelve leaf × epoch strata with the same values each time: twelve copies
    # of one 8-point sample. An i.i.d. analysis counts 96 points; the evidence is 8 runs.
    rng = np.random.default_rng(3)
    run_truth = rng.random(8)
    run_value = run_truth + 0.6 * rng.standard_normal(8)
    one = {(f"r{r}", LEAVES[0], 3): (run_value[r], run_truth[r]) for r in range(8)}
    many = {
        (f"r{r}", leaf, epoch): (run_value[r], run_truth[r])
        for r in range(8)
        for leaf in LEAVES
        for epoch in (3, 6, 9)
    }
    t1 = validity_table(joined=synthetic_joined(one), n_boot=1000, n_perm=1000).iloc[0]
    t12 = validity_table(joined=synthetic_joined(many), n_boot=1000, n_perm=1000).iloc[0]
    assert t12["n"] == 96 and t12["n_strata"] == 12
    assert t12["spearman_within"] == pytest.approx(t1["spearman_within"])
    assert (t12["ci_low"], t12["ci_high"]) == pytest.approx((t1["ci_low"], t1["ci_high"]))
    assert t12["p_perm"] == pytest.approx(t1["p_perm"])
    # The i.i.d. 95 % interval (Fisher z, n = 96) is less than half as wide.
    rho = t12["spearman_within"]
    half = 1.96 / math.sqrt(96 - 3)
    iid = math.tanh(math.atanh(rho) + half) - math.tanh(math.atanh(rho) - half)
    assert t12["ci_high"] - t12["ci_low"] > 2 * iid
    assert t12["verdict"] == "inconclusive"  # 8 noisy runs: the interval covers 0


def test_item24_inconclusive_when_the_interval_covers_zero():
    rng = np.random.default_rng(5)
    values = {
        (f"r{r}", leaf, 3): (rng.random(), rng.random()) for r in range(10) for leaf in LEAVES
    }
    row = validity_table(joined=synthetic_joined(values), n_boot=500, n_perm=500).iloc[0]
    assert row["ci_low"] < 0 < row["ci_high"] and row["verdict"] == "inconclusive"


def test_item24_holm():
    adj = validity.holm([0.01, 0.04, 0.03, 0.005, math.nan])
    assert adj[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and math.isnan(adj[4])
    assert validity.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_item24_table_adjusts_across_rows_with_holm():
    rng = np.random.default_rng(7)
    frames = []
    for metric in ("image_similarity", "centroid_distance", "frechet_distance"):
        values = {}
        for r in range(10):
            t = rng.random()
            for leaf in LEAVES:
                values[(f"r{r}", leaf, 3)] = (t + 0.3 * rng.standard_normal(), t)
        frames.append(synthetic_joined(values, metric=metric))
    t = validity_table(joined=pd.concat(frames), n_boot=300, n_perm=300)
    assert len(t) == 3
    np.testing.assert_allclose(t["p_holm"], validity.holm(t["p_perm"]))
    assert (t["p_holm"] >= t["p_perm"]).all() and t["p_holm"].max() > t["p_perm"].min()


def test_item24_groups_under_16_images_are_flagged():
    values = {(f"r{r}", leaf, 3): (r + 0.5 * k, r) for r in range(6) for k, leaf in
              enumerate(LEAVES)}  # fmt: skip
    small = validity_table(joined=synthetic_joined(values, n_images=8), n_boot=200, n_perm=200)
    assert not small.iloc[0]["enough_images"] and small.iloc[0]["min_group_images"] == 8
    assert "groups of 8 < 16 images" in small.iloc[0]["note"]
    ok = validity_table(joined=synthetic_joined(values, n_images=16), n_boot=200, n_perm=200)
    assert ok.iloc[0]["enough_images"] and "images" not in ok.iloc[0]["note"]
    # the attribute-follow rate counts only the images whose prompt names an attribute
    j = synthetic_joined(values, "text_alignment", "alter", "attribute_follow_rate", 16)
    j["n_attribute_prompts"] = 12
    row = validity_table(joined=j, n_boot=200, n_perm=200).iloc[0]
    assert row["min_group_images"] == 12 and not row["enough_images"]


def test_stratified_spearman_and_bootstrap_resample_whole_runs():
    x = [1, 2, 3, 4, 10, 20, 30, 40]
    y = [4, 3, 2, 1, 1, 2, 3, 4]
    assert validity.stratified_spearman(x, y, ["a"] * 4 + ["b"] * 4) == pytest.approx(0.0)
    assert validity.stratified_spearman(x, y, ["a"] * 8) == pytest.approx(
        pd.Series(x).corr(pd.Series(y), method="spearman")
    )
    assert math.isnan(validity.stratified_spearman([1, 2], [1, 2], ["a", "a"]))
    df = pd.DataFrame({"stratum": ["s1"] * 3 + ["s2"] * 3, "run": ["a", "b", "c"] * 2,
                       "x": [1.0, 2, 3, 1, 2, 3], "y": [1.0, 2, 3, 3, 2, 1]})  # fmt: skip
    X, Y = validity.cluster_matrices(df, "x", "y")
    assert X.shape == (2, 3)
    reps = validity.cluster_bootstrap(X, Y, n_boot=200)
    # a resample that repeats one run in s1 repeats it in s2: +1 and −1 always cancel
    assert np.nanmax(np.abs(reps)) == pytest.approx(0.0)


# --- counterfactual ----------------------------------------------------------------------------------
def test_swap_attributes():
    assert validity.swap_attributes("a red sks character on a striped background") == (
        "a green sks character on a black background"
    )
    assert validity.swap_attributes("rnq toy, outline style") == "rnq toy, flat style"
    assert (
        validity.swap_attributes("a yellow cross in a bch scene")
        == "a magenta circle in a bch scene"
    )
    assert validity.swap_attributes("sks character, kep outfit") is None
    swapped = validity.swap_attributes("a blue square on a grey background, outline style")
    assert requested_attributes(swapped) == {"colour": "yellow", "shape": "triangle",
                                             "background": "striped", "style": "flat"}  # fmt: skip


@needs_clip
def test_item24_counterfactual_swapped_prompts_lose_alignment(tmp_path):
    # Images drawn to follow their alter prompt exactly, encoded by the real toy-clip: the same
    # images against the prompts with swapped attribute words must align worse.
    jobs = [
        ("characters/starling/hat", "a red sks character on a striped background",
         world.Scene("star", "red", "striped", "flat", "hat", cx=16, cy=18.5, radius=8.5)),
        ("characters/starling/hat", "a blue sks character on a white background",
         world.Scene("star", "blue", "white", "flat", "hat", cx=16, cy=18.5, radius=8.5)),
        ("toys/ring", "rnq toy on a black background",
         world.Scene("ring", "pink", "black", "flat")),
        ("toys/ring", "rnq toy on a grey background, outline style",
         world.Scene("ring", "pink", "grey", "outline")),
        ("scenes/beach", "a green triangle in a bch scene",
         world.Scene("triangle", "green", "beach", "flat")),
        ("scenes/beach", "a yellow cross in a bch scene, outline style",
         world.Scene("cross", "yellow", "beach", "outline")),
        ("styles/pastel", "a magenta circle on a striped background, pst style",
         world.Scene("circle", "magenta", "striped", "pastel")),
        ("styles/pastel", "a cyan square, pst style", world.Scene("square", "cyan", "white",
                                                                   "pastel")),
    ]  # fmt: skip
    rows = []
    for i, (leaf, prompt, scene) in enumerate(jobs * 2):
        path = tmp_path / f"{i}.png"
        world.render(scene).save(path)
        rows.append({"run": f"r{i % 4}", "leaf": leaf, "prompt": prompt, "path": str(path)})
    per_image = validity.counterfactual_alignment(pd.DataFrame(rows))
    assert len(per_image) == 16
    # the class name stays in both texts: only the attribute words differ
    ring = per_image[per_image["leaf"] == "toys/ring"].iloc[0]
    assert ring["text"] == "ring toy on a black background"
    assert ring["swapped_text"] == "ring toy on a white background"
    assert (per_image["drop"] > 0).mean() >= 0.75
    summary = validity.counterfactual_summary(per_image, n_boot=500).set_index("scope")
    top = summary.loc["all images"]
    assert top["mean_drop"] > 0 and top["ci_low"] > 0 and top["verdict"] == "loses alignment"
    assert top["resampled"] == "run" and top["n_runs"] == 4
    assert top["note"] == "only 4 runs: the interval is optimistic"


# --- the report without images, through the one renderer --------------------------------------------
def reference_like_sweep(root: Path) -> Path:
    """A sweep folder as committed under reference_results/: runs/*/run.json, the joint results
    table (checkpoints "<run>/<checkpoint>") and a probe_outcomes.csv, no images."""
    rng = np.random.default_rng(11)
    results, outcomes = [], []
    for r in range(6):
        run = f"cfg{r}-a"
        (root / "runs" / run).mkdir(parents=True)
        (root / "runs" / run / "run.json").write_text("{}")
        for leaf in LEAVES:
            for epoch in (3, 9):
                truth = float(rng.random())
                ck = f"lora-e{epoch:06d}"
                results.append(
                    {"checkpoint": f"{run}/{ck}", "config": f"cfg{r}", "seed": "a", "epoch": epoch,
                     "category": leaf.split("/")[0], "class": leaf.split("/")[1], "leaf": leaf,
                     "prompt_type": "train", "metric": "image_similarity", "encoder": "toy-dino",
                     "resize": "stretch", "value": truth + 0.2 * rng.random()}
                )  # fmt: skip
                outcomes.append(
                    {"run": run, "checkpoint": ck, "leaf": leaf, "prompt_type": "train",
                     "n_images": 16, "concept_rate": truth, "n_attribute_prompts": 0,
                     "attribute_follow_rate": math.nan, "distinct_outcomes": 3.0,
                     "base_change_rate": math.nan}
                )  # fmt: skip
    write_results(pd.DataFrame(results), root / "results")
    pd.DataFrame(outcomes).to_csv(root / "probe_outcomes.csv", index=False)
    return root


def test_item24_report_recomputed_from_outcomes_without_images(tmp_path):
    sweep = reference_like_sweep(tmp_path / "ref")
    out = write_validity_report(sweep, tmp_path / "v", outcomes=sweep / "probe_outcomes.csv",
                                n_boot=200, n_perm=200)  # fmt: skip
    table = pd.read_csv(out / "validity.csv")
    assert len(table) == 1 and table.iloc[0]["n"] == 48 and table.iloc[0]["n_strata"] == 8
    assert table.iloc[0]["verdict"] == "holds" and table.iloc[0]["enough_images"]
    assert not (out / "counterfactual.csv").exists()
    page = (out / "validity.html").read_text()
    assert "holds no images" in page


def test_report_without_images_asks_for_the_outcomes_file(tmp_path):
    sweep = reference_like_sweep(tmp_path / "ref")
    (tmp_path / "v").mkdir()
    (sweep / "probe_outcomes.csv").rename(tmp_path / "v" / "probe_outcomes.csv")
    with pytest.raises(ResultsError, match="pass --outcomes"):
        write_validity_report(sweep, tmp_path / "v")


def test_report_from_a_bad_outcomes_file_is_one_clear_error(tmp_path):
    sweep = reference_like_sweep(tmp_path / "ref")
    bad = tmp_path / "bad.csv"
    bad.write_text("run,leaf\nx,y\n")
    with pytest.raises(ResultsError, match="missing columns"):
        write_validity_report(sweep, tmp_path / "v", outcomes=bad)


def test_layering_report_goes_through_the_one_renderer(tmp_path, monkeypatch):
    from t2ibench.analysis import report

    calls = []
    real = report.render_html

    def spy(title, sections, path, base_dir):
        calls.append([s.title for s in sections])
        return real(title, sections, path, base_dir)

    monkeypatch.setattr(report, "render_html", spy)
    sweep = reference_like_sweep(tmp_path / "ref")
    write_validity_report(sweep, tmp_path / "v", outcomes=sweep / "probe_outcomes.csv",
                          n_boot=200, n_perm=200)  # fmt: skip
    assert len(calls) == 1 and "Correlations within leaf × epoch" in calls[0]


def test_layering_validity_imports():
    """The toy world sits above the core: validity reads the core's manifest format and renders
    through analysis.report; it imports no pipeline stage (the sweep calls it, not the reverse)."""
    files = sorted(Path(validity.__file__).parent.glob("*.py"))  # the package, split by step
    assert len(files) > 5
    names = set()
    for node in (n for f in files for n in ast.walk(ast.parse(f.read_text()))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    pipeline = {n for n in names if n.startswith("t2ibench.pipeline")}
    assert pipeline <= {"t2ibench.pipeline.manifest"}
    assert "html" not in names and "base64" not in names  # no second HTML renderer


def test_cli_recomputes_from_outcomes_and_refuses_bad_options(tmp_path):
    from typer.testing import CliRunner

    from t2ibench.cli import app
    from t2ibench.errors import ConfigError

    sweep = reference_like_sweep(tmp_path / "ref")
    args = ["toy-validity", str(sweep), "--out", str(tmp_path / "v"), "--no-plots",
            "--outcomes", str(sweep / "probe_outcomes.csv"), "--n-boot", "200"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert res.output.strip().endswith("validity.html")
    assert pd.read_csv(tmp_path / "v" / "validity.csv").iloc[0]["verdict"] == "holds"
    res = CliRunner().invoke(app, [*args, "--min-images", "0"])
    assert isinstance(res.exception, ConfigError) and "--min-images" in str(res.exception)
