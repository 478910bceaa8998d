"""`t2ibench agreement`: human ratings readers, the statistics, their intervals, the outputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from t2ibench.analysis import agreement as A

# --- the hand-checked example ---------------------------------------------------------------------
# Five images, two raters, one system (so pairwise accuracy runs over all pairs of images).
#   rater r1: 1 2 3 4 5      rater r2: 2 1 3 5 4      mean: 1.5 1.5 3 4.5 4.5
#   metric:   0.1 0.3 0.2 0.5 0.4
R1 = [1, 2, 3, 4, 5]
R2 = [2, 1, 3, 5, 4]
METRIC = [0.1, 0.3, 0.2, 0.5, 0.4]


def _hand_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [("score", "", f"im{i}.png", r, s)
            for r, scores in (("r1", R1), ("r2", R2)) for i, s in enumerate(scores)]  # fmt: skip
    ratings = pd.DataFrame(rows, columns=list(A.RATING_COLUMNS))
    scores = A.prepare_scores(
        pd.DataFrame({"image": [f"im{i}.png" for i in range(5)], "metric": "m", "value": METRIC})
    )
    return ratings, scores


def test_hand_checked_example_against_scipy_and_by_hand():
    from scipy.stats import kendalltau, spearmanr

    ratings, scores = _hand_tables()
    table = A.agreement(ratings, scores, n_boot=200, judges=["m"])
    row = table[table["metric"] == "m"].iloc[0]
    human = (np.array(R1) + np.array(R2)) / 2
    # Spearman: metric ranks 1 3 2 5 4, human ranks 1.5 1.5 3 4.5 4.5; centred: (-2 0 -1 2 1) and
    # (-1.5 -1.5 0 1.5 1.5); Σ products 7.5, Σ squares 10 and 9 → 7.5 / sqrt(90) = 0.790569.
    assert row["spearman"] == pytest.approx(7.5 / math.sqrt(90), abs=1e-12)
    assert row["spearman"] == pytest.approx(spearmanr(METRIC, human).statistic, abs=1e-12)
    # Kendall τ-b: 10 pairs, humans tie (im0, im1) and (im3, im4); of the other 8 the metric
    # orders 7 the same way (only (im1, im2) is reversed): (7 − 1) / sqrt(10 · 8) = 0.670820.
    assert row["kendall"] == pytest.approx(6 / math.sqrt(80), abs=1e-12)
    assert row["kendall"] == pytest.approx(kendalltau(METRIC, human).statistic, abs=1e-12)
    # Pairwise accuracy: 7 of the 8 pairs the humans tell apart.
    assert row["pairwise_accuracy"] == pytest.approx(7 / 8)
    assert row["n_pairs"] == 8
    # α humans: D_o = (2·(1+1+0+1+1)) / 10 = 0.8; D_e over the 10 values (Σv 30, Σv² 110):
    # (2·10·110 − 2·30²) / (10·9) = 400 / 90; α = 1 − 0.8·90/400 = 0.82.
    assert row["alpha_humans"] == pytest.approx(0.82, abs=1e-12)
    # The metric mapped to the ratings' mean 3 and SD sqrt(2): z·sqrt(2)+3 = 1 3 2 5 4. Units
    # (1,2,1) (2,1,3) (3,3,2) (4,5,5) (5,4,4): D_o = (2+6+2+2+2)/15; values Σ 45, Σv² 165:
    # D_e = (2·15·165 − 2·45²) / (15·14) = 900/210; α = 1 − (14/15)/(900/210) = 0.782222.
    assert row["alpha_with_metric"] == pytest.approx(1 - (14 / 15) / (900 / 210), abs=1e-12)
    assert row["kind"] == "judge"
    # Ceiling, two raters: each against the other. Spearman 1 − 6·4/(5·24) = 0.8; Kendall: 2 of
    # 10 pairs reversed → 0.6; pairwise accuracy 8/10.
    top = table[table["kind"] == "human"].iloc[0]
    assert top["spearman"] == pytest.approx(0.8)
    assert top["kendall"] == pytest.approx(0.6)
    assert top["pairwise_accuracy"] == pytest.approx(0.8)


def test_krippendorff_alpha_matches_the_reference_package_with_missing_values():
    krippendorff = pytest.importorskip("krippendorff")
    data = np.array([[1, 2, np.nan, 4, 5, 2], [2, 1, 3, 5, np.nan, 2], [1, 3, 2, np.nan, 4, 1]])
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="interval")
    assert A.krippendorff_alpha_interval(data) == pytest.approx(expected, abs=1e-12)


def test_concordance_large_sample_path_equals_the_sign_matrix_path():
    # n > 300 takes scipy's O(n log n) τ-b plus tie counts; the same data, cut to n ≤ 300 in two
    # halves, is not comparable, so compare against scipy and a direct pair count instead.
    from scipy.stats import kendalltau

    rng = np.random.default_rng(3)
    x = rng.integers(0, 20, 400).astype(float)  # many ties in both
    y = x + rng.integers(-5, 6, 400)
    tau, acc = A.concordance(x, y)
    assert tau == pytest.approx(kendalltau(x, y).statistic, abs=1e-12)
    i, j = np.triu_indices(400, 1)
    score, counted = A.pairwise_agreement(x, y, i, j)
    assert acc == pytest.approx(score[counted].mean(), abs=1e-12)
    small_tau, small_acc = A.concordance(x[:300], y[:300])
    i, j = np.triu_indices(300, 1)
    score, counted = A.pairwise_agreement(x[:300], y[:300], i, j)
    assert small_acc == pytest.approx(score[counted].mean(), abs=1e-12)
    assert small_tau == pytest.approx(kendalltau(x[:300], y[:300]).statistic, abs=1e-12)


# --- coverage -------------------------------------------------------------------------------------


def _synthetic_ratings_csv(path, seed: int, n: int = 60, rho_s: float = 0.6) -> pd.DataFrame:
    """A ratings CSV whose raters' mean has population Spearman ρ = ``rho_s`` with the returned
    metric: bivariate normal with Pearson r = 2 sin(π ρ_s / 6) (Spearman's ρ of a bivariate
    normal is (6/π) arcsin(r/2)); each rater is the mean plus noise that cancels across raters."""
    rng = np.random.default_rng(seed)
    r = 2 * math.sin(math.pi * rho_s / 6)
    z = rng.multivariate_normal([0, 0], [[1, r], [r, 1]], size=n)
    noise = rng.normal(0, 1, size=(n, 2))
    noise -= noise.mean(1, keepdims=True)
    rows = [{"image": f"img{i}.png", "prompt": f"p{i}", "rater": f"r{k}", "score": z[i, 1] + noise[i, k]}
            for i in range(n) for k in range(2)]  # fmt: skip
    pd.DataFrame(rows).to_csv(path, index=False)
    return pd.DataFrame(
        {"image": [f"img{i}.png" for i in range(n)], "metric": "x", "value": z[:, 0]}
    )


def test_known_spearman_is_inside_its_95_interval_in_at_least_93_of_100_repetitions(tmp_path):
    hits = 0
    for rep in range(100):
        scores = _synthetic_ratings_csv(tmp_path / "r.csv", seed=1000 + rep)
        ratings = A.read_ratings(tmp_path / "r.csv")
        table = A.agreement(ratings, A.prepare_scores(scores), n_boot=400, seed=rep, ceiling=False)
        row = table.iloc[0]
        hits += bool(row["spearman_low"] <= 0.6 <= row["spearman_high"])
    assert hits >= 93, hits


# --- readers --------------------------------------------------------------------------------------


def test_dreambench_pp_raw_and_merged_layouts(tmp_path):
    raw = tmp_path / "data_human_rating" / "raw_data"
    for group, offset in (("group_a", 0), ("group_b", 1)):
        (raw / group).mkdir(parents=True)
        for method in ("dreambooth_sd", "emu2"):
            data = {f"object_0{k}_can-{p}": [k + offset, (p + offset) % 5]
                    for k in range(3) for p in range(2)}  # fmt: skip
            (raw / group / f"batch1-{method}.json").write_text(json.dumps(data))
    df = A.read_ratings(tmp_path / "data_human_rating")
    assert set(df["criterion"]) == {"concept_preservation", "prompt_following"}
    assert set(df["system"]) == {"dreambooth_sd", "emu2"}
    assert set(df["rater"]) == {"group_a", "group_b"}
    row = df[(df.rater == "group_b") & (df.item == "object_02_can-1") & (df.system == "emu2")]
    assert dict(zip(row.criterion, row.score, strict=True)) == {
        "concept_preservation": 3.0,
        "prompt_following": 2.0,
    }
    merged = tmp_path / "merged" / "g1"
    merged.mkdir(parents=True)
    (merged / "emu2-cp.json").write_text(json.dumps({"style_00_x-0": 2, "style_00_x-1": 4}))
    df = A.read_ratings(tmp_path / "merged", "dreambench-pp")
    assert list(df["criterion"].unique()) == ["concept_preservation"]
    assert sorted(df["score"]) == [2.0, 4.0]


def test_imagenhub_rater_tsvs(tmp_path):
    task = tmp_path / "Subject-Driven_IG"
    task.mkdir()
    for k, cells in ((1, ["[0, 1]", "[1,0.5]"]), (2, ["[0.5, 1]", "[1, 1]"])):
        (task / f"Subject-Driven_IG_rater{k}.tsv").write_text(
            "uid\tDreamBooth\tSuTI\n" + f"sample_0.jpg\t{cells[0]}\t{cells[1]}\n"
        )
    df = A.read_ratings(tmp_path)
    assert set(df["rater"]) == {"rater1", "rater2"}
    got = df[(df.rater == "rater1") & (df.system == "SuTI")].set_index("criterion")["score"]
    assert got["semantic_consistency"] == 1 and got["perceptual_quality"] == 0.5
    assert got["overall"] == pytest.approx(math.sqrt(0.5))


def test_bad_input_is_one_clear_error(tmp_path):
    (tmp_path / "r.csv").write_text("image,rater\na.png,r1\n")
    with pytest.raises(A.AgreementError, match="missing column"):
        A.read_ratings(tmp_path / "r.csv")
    (tmp_path / "r.csv").write_text("image,rater,score\na.png,r1,3\na.png,r1,4\n")
    with pytest.raises(A.AgreementError, match="twice"):
        A.read_ratings(tmp_path / "r.csv")
    bad = tmp_path / "T"
    bad.mkdir()
    (bad / "T_rater1.tsv").write_text("uid\tM\ns.jpg\t__import__('os')\n")
    with pytest.raises(A.AgreementError, match=r"expected \[SC, PQ\]"):
        A.read_ratings(bad)
    ratings, _ = _hand_tables()
    other = A.prepare_scores(pd.DataFrame({"image": ["x.png"], "metric": "m", "value": [1.0]}))
    with pytest.raises(A.AgreementError, match="no metric value joins"):
        A.agreement(ratings, other, n_boot=50)


def test_systems_join_by_method_slug_and_lower_is_better_is_negated():
    # DreamBench++: ratings name the method slug, the images folder adds its settings.
    rows = []
    for item in range(6):
        for system, base in (("dreambooth_sd", 0), ("emu2", 1)):
            for rater, jitter in (("g1", 0.0), ("g2", 0.5)):
                rows.append(("cp", system, f"k-{item}", rater, base + item + jitter))
    ratings = pd.DataFrame(rows, columns=list(A.RATING_COLUMNS))
    scores = pd.DataFrame(
        {
            "system": [s for _ in range(6) for s in ("dreambooth_sd_gs7_5_step100", "emu2_gs3")],
            "item": [f"k-{i}" for i in range(6) for _ in range(2)],
            "metric": "centroid_distance",  # registered lower-is-better
            "value": [-(b + i) for i in range(6) for b in (0, 1)],
        }
    )
    table = A.agreement(ratings, A.prepare_scores(scores), n_boot=100)
    row = table[table["metric"] == "centroid_distance"].iloc[0]
    # Lower distance where humans rate higher: negated, it agrees perfectly (unnegated: ρ = −1).
    assert row["n_units"] == 12 and row["spearman"] == pytest.approx(1.0)
    # Within-item pairs: emu2 is rated above dreambooth on every item, and so is its distance.
    assert row["n_pairs"] == 6 and row["pairwise_accuracy"] == 1.0


def test_outputs_are_escaped_and_neutralised(tmp_path):
    ratings, scores = _hand_tables()
    scores["judge"] = '=HYPERLINK("x")<script>'
    table = A.agreement(ratings, scores, n_boot=50)
    csv_path, html_path = A.write_agreement(table, tmp_path, n_boot=50)
    assert "'=HYPERLINK" in csv_path.read_text()
    page = html_path.read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "Fewer than 20 rated items" in page  # 5 items: the intervals are flagged


def test_cli_writes_csv_and_html_and_refuses_bad_input_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from t2ibench.cli import app

    ratings, _ = _hand_tables()
    ratings.rename(columns={"item": "image"}).to_csv(tmp_path / "r.csv", index=False)
    pd.DataFrame({"image": [f"im{i}.png" for i in range(5)], "metric": "m", "value": METRIC}
                 ).to_csv(tmp_path / "s.csv", index=False)  # fmt: skip
    runner = CliRunner()
    args = ["agreement", str(tmp_path / "r.csv"), "--scores", str(tmp_path / "s.csv")]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "o"), "--n-boot", "50"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "o" / "agreement.csv")
    assert table.loc[table.metric == "m", "spearman"].item() == pytest.approx(7.5 / math.sqrt(90))
    assert (tmp_path / "o" / "agreement.html").is_file()
    result = runner.invoke(app, ["agreement", str(tmp_path / "r.csv"), "--out", str(tmp_path)])
    assert isinstance(result.exception, A.AgreementError)


def test_cli_scores_dreambench_pp_images_per_image_and_joins_the_released_ratings(tmp_path):
    """End to end: a DreamBench++ method folder scored per image under the judges profile (tiny
    random-weight encoders), joined to ratings in the released raw layout by method slug and
    <collection_id>-<prompt index>."""
    from PIL import Image
    from typer.testing import CliRunner

    from t2ibench.cli import app

    method = tmp_path / "samples" / "dreambooth_sd_gs7_5_step100_seed42_torch_float16"
    rng = np.random.default_rng(0)
    keys = []
    for inst in ("object_00_can", "live_subject_animal_01_cat"):
        src = Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
        for p in range(3):
            for part in ("src_image", "tgt_image", "text"):
                (method / part / inst).mkdir(parents=True, exist_ok=True)
            src.save(method / "src_image" / inst / f"{p}_0.jpg")
            gen = Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
            gen.save(method / "tgt_image" / inst / f"{p}_0.jpg")
            (method / "text" / inst / f"{p}_0.txt").write_text(f"a {inst.split('_')[-1]} {p}")
            keys.append(f"{inst}-{p}")
    raw = tmp_path / "data_human_rating" / "raw_data"
    for g, shift in (("g1", 0), ("g2", 1)):
        (raw / g).mkdir(parents=True)
        data = {k: [(i + shift) % 5, (2 * i + shift) % 5] for i, k in enumerate(keys)}
        (raw / g / "part1-dreambooth_sd.json").write_text(json.dumps(data))
    out = tmp_path / "o"
    tiny = "dinov2-l@tiny,clip-l14@tiny,pickscore@tiny,hpsv2@tiny,imagereward@tiny"
    result = CliRunner().invoke(app, [
        "agreement", str(tmp_path / "data_human_rating"), "--images", str(method),
        "--layout", "dreambench-pp", "--encoders", tiny, "--out", str(out), "--n-boot", "50",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    per_image = pd.read_parquet(out / "per_image_scores.parquet")
    assert set(per_image["metric"]) == {"image_similarity", "text_alignment", "pickscore", "hpsv2",
                                        "imagereward"}  # fmt: skip
    assert len(per_image[per_image.metric == "pickscore"]) == 6
    table = pd.read_csv(out / "agreement.csv")
    judged = table[table.kind != "human"]
    assert set(judged["criterion"]) == {"concept_preservation", "prompt_following"}
    assert set(judged["metric"]) == {"DINOv2 similarity", "CLIP-T", "PickScore", "HPSv2.1",
                                     "ImageReward"}  # fmt: skip
    assert (judged["n_units"] == 6).all()
    assert set(table[table.kind == "judge"]["metric"]) == {"PickScore", "HPSv2.1", "ImageReward"}


def test_image_ratings_average_the_systems_scores_of_one_image():
    # Ratings name images only; the scores table has two systems for the same image file name
    # (ImagenHub-style keys): the unit's value is their mean, not whichever row came last.
    ratings, _ = _hand_tables()
    rows = [{"system": s, "image": f"{s}/im{i}.png", "metric": "m", "value": v + off}
            for s, off in (("a", 0.0), ("b", 10.0)) for i, v in enumerate(METRIC)]  # fmt: skip
    scores = A.prepare_scores(pd.DataFrame(rows), fmt="imagenhub")
    merged = A.match_systems(ratings, scores)
    assert len(merged) == 5
    assert merged.set_index("item")["value"]["im0.png"] == pytest.approx(0.1 + 5.0)
