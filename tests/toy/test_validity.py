"""The validity report on a hand-made sweep: known scenes → known probe rates → known correlations."""

import json
import math

import pandas as pd
import pytest

from t2ibench.pipeline.manifest import ManifestRecord, write_manifest
from t2ibench.results import write_results
from t2ibench.toy import world
from t2ibench.toy.probe import PROBE_DIR
from t2ibench.toy.validity import (
    CACHE_NAME,
    _html_table,
    _md_table,
    correlate,
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

# Per (run, checkpoint), in order q = 0..3: how many of the 4 images show / follow / ...
RUNS = [("r1", "ck-e000001", 1), ("r1", "ck-e000002", 2), ("r2", "ck-e000001", 1),
        ("r2", "ck-e000002", 2)]  # fmt: skip
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
    for run in ("r1", "r2"):
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


def test_correlate_signs_and_undefined():
    assert correlate([1, 2, 3, 4], [2, 4, 5, 9])["spearman"] == pytest.approx(1.0)
    assert correlate([1, 2, 3, 4], [9, 5, 4, 2])["pearson"] < -0.9
    assert math.isnan(correlate([1, 2, 3], [1, 1, 1])["spearman"])
    assert correlate([1, 2], [3, 4])["n"] == 2 and math.isnan(correlate([1, 2], [3, 4])["pearson"])


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
def test_validity_table_signs(sweep):
    t = validity_table(sweep).set_index(["metric", "prompt_type"])
    sim = t.loc[("image_similarity", "train")]
    assert sim["n"] == 4 and sim["spearman"] == pytest.approx(1.0) and sim["holds"]
    assert sim["expected_sign"] == "+" and sim["pearson"] > 0.9
    cen = t.loc[("centroid_distance", "train")]
    assert cen["spearman"] == pytest.approx(-1.0) and cen["holds"]
    fre = t.loc[("frechet_distance", "train")]  # set up the wrong way round: must not hold
    assert fre["spearman"] == pytest.approx(1.0) and fre["holds"] is False
    # trigger prompts always show the concept: no correlation to speak of
    trig = t.loc[("image_similarity", "trigger")]
    assert trig["holds"] is None and "truth constant" in trig["note"]
    assert t.loc[("vendi", "trigger")]["spearman"] == pytest.approx(1.0)
    assert t.loc[("text_alignment", "alter")]["spearman"] == pytest.approx(1.0)
    style_ta = t.loc[("text_alignment", "style")]
    assert (
        style_ta["n"] == 0 and style_ta["holds"] is None and "no ground truth" in style_ta["note"]
    )
    sl = t.loc[("style_loss", "style")]
    assert sl["spearman"] == pytest.approx(1.0) and sl["holds"] and sl["encoder"] == "toy-gram"


@needs_probe
def test_report_files(sweep, tmp_path):
    out = write_validity_report(sweep, tmp_path / "v")
    for name in ("validity.csv", "probe_outcomes.csv", "validity.md", "validity.html"):
        assert (out / name).stat().st_size > 0
    page = (out / "validity.html").read_text()
    # one scatter per metric/ground-truth row with ≥ 3 points: all but text alignment on style
    assert page.count("data:image/png;base64,") == 9
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")
    table = pd.read_csv(out / "validity.csv")
    assert set(table["metric"]) == {"image_similarity", "centroid_distance", "frechet_distance",
                                    "vendi", "text_alignment", "style_loss"}  # fmt: skip
    assert len(pd.read_csv(out / "probe_outcomes.csv")) == 4 * 5 + 5
    assert "| image\\_similarity |" in (out / "validity.md").read_text()


def test_tables_escape_data_strings():
    df = pd.DataFrame({"metric": ["<script>alert(1)</script>"], "note": ["a|b_c"]})
    assert "<script>" not in _html_table(df) and "&lt;script&gt;" in _html_table(df)
    assert "a\\|b\\_c" in _md_table(df) and "<script>" not in _md_table(df)
