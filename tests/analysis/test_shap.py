import math

import numpy as np
import pandas as pd
import pytest

from t2ibench.analysis import Target, capacity_of, fit_shap, rank_normalise
from t2ibench.analysis.synthetic import synthetic_results


@pytest.fixture(scope="module")
def scores():
    return rank_normalise(synthetic_results(seeds=("a", "b")))


def test_capacity_levels():
    assert capacity_of({"algorithm": "lora", "dim": 8, "alpha": 4}, _defaults()) == 1
    assert capacity_of({"algorithm": "lora", "dim": 32, "alpha": 16}, _defaults()) == 2
    assert np.isnan(capacity_of({"algorithm": "lora", "dim": 32, "alpha": 1}, _defaults()))
    assert capacity_of({"algorithm": "lokr", "factor": 4}, _defaults()) == 2
    assert np.isnan(capacity_of({"algorithm": "lokr", "factor": 12}, _defaults()))
    assert capacity_of({"algorithm": "native"}, _defaults()) == 3


def _defaults():
    from t2ibench.analysis.shap_analysis import DEFAULT_CAPACITY

    return DEFAULT_CAPACITY


def test_shap_additivity_and_folding(scores):
    res = fit_shap(scores, "anime", Target("image_similarity", "train"), iterations=50, seed=0)
    assert res is not None
    # SHAP values + expected value = the model's prediction, row by row
    recon = res.shap_values.sum(axis=1) + res.expected_value
    np.testing.assert_allclose(recon, res.prediction, atol=1e-6)
    # alpha-1 and factor-12 configs are left out
    assert not res.data.index.str.contains("loha16a1|lokr-f12").any()
    native = (res.data["algorithm"] == "native").to_numpy()
    assert native.any()
    cap = res.features.index("capacity")
    assert np.all(res.shap_values[native, cap] == 0.0)
    # lr levels rank within each algorithm: native has three
    assert sorted(res.data.loc[native, "lr_level"].unique()) == [1.0, 2.0, 3.0]
    # the synthetic trend (fidelity grows with epoch) shows up as a positive SHAP-epoch correlation
    ep = res.features.index("epoch")
    assert np.corrcoef(res.data["epoch"], res.shap_values[:, ep])[0, 1] > 0.5
    assert res.r2 > 0.5


def test_shap_is_seeded(scores):
    a = fit_shap(scores, "people", Target("text_alignment", "alter"), iterations=30, seed=3)
    b = fit_shap(scores, "people", Target("text_alignment", "alter"), iterations=30, seed=3)
    np.testing.assert_array_equal(a.shap_values, b.shap_values)
    table = a.table()
    assert {"shap_algorithm", "expected_value", "prediction", "target_value"} <= set(table.columns)


def test_absent_target_gives_none(scores):
    assert fit_shap(scores, "anime", Target("frechet_distance", "train")) is None
    assert Target.parse("vendi:train:dinov2-l") == Target("vendi", "train", "dinov2-l", None)
    with pytest.raises(ValueError):
        Target.parse("vendi")
    assert isinstance(scores, pd.DataFrame)


def test_lr_levels_are_fixed_per_algorithm_not_ranks_of_the_rates_present():
    from t2ibench.analysis.shap_analysis import lr_levels

    algo = pd.Series(["lora", "lora", "loha", "native", "native", "lokr", "lora"])
    lr = pd.Series([5e-4, 1e-3, 5e-4, 1e-6, 5e-6, 5e-3, 5e-5])
    levels = lr_levels(algo, lr).tolist()
    # 5e-4 is level 2 whichever rates are present (a rank among {5e-4, 1e-3} made it 1);
    # rates outside the levels (5e-3, 5e-5) have none
    assert levels[:5] == [2.0, 3.0, 2.0, 2.0, 3.0]
    assert np.isnan(levels[5]) and np.isnan(levels[6])
    # a plug-in algorithm without fixed levels ranks its rates
    assert lr_levels(pd.Series(["mine", "mine"]), pd.Series([0.3, 0.1])).tolist() == [2.0, 1.0]


def test_a_config_outside_the_lr_levels_is_left_out_and_named(scores):
    df = synthetic_results(seeds=("a", "b"))
    df.loc[df["config"] == "exp-3-lora-lr1e-3", "lr"] = 5e-3
    res = fit_shap(rank_normalise(df), "people", Target("image_similarity", "train"),
                   iterations=20, cv=())  # fmt: skip
    assert not res.data.index.str.contains("exp-3-lora").any()
    assert any("exp-3-lora-lr1e-3" in n and "lr" in n for n in res.notes)


def test_out_of_sample_r2_separates_signal_from_noise():
    df = synthetic_results(seeds=("a", "b", "c"))
    sig = rank_normalise(df)
    res = fit_shap(sig, "people", Target("image_similarity", "train"), iterations=60)
    assert res.r2_seed > 0.5 and res.is_finding and res.warning == ""
    # the same design with values that do not depend on any feature
    noise = df.assign(value=np.random.default_rng(0).normal(size=len(df)))
    res = fit_shap(rank_normalise(noise), "people", Target("image_similarity", "train"),
                   iterations=60)  # fmt: skip
    assert res.r2 > 0.05  # in-sample, the trees fit the noise...
    assert res.r2_seed <= 0.05 and res.r2_config <= 0.05  # ...which held-out runs expose
    assert not res.is_finding and "does not beat a constant" in res.warning


def test_leave_one_group_out_r2_is_computed_on_held_out_predictions():
    from t2ibench.analysis.shap_analysis import out_of_sample_r2

    X = pd.DataFrame({"x": [0.0, 1.0, 0.0, 1.0]})
    y = np.array([0.0, 1.0, 0.2, 0.8])
    seen = []

    def fit_predict(X_train, y_train, X_test):
        seen.append((list(X_train.index), list(X_test.index)))
        return np.full(len(X_test), y_train.mean())  # a constant: the training mean

    r2 = out_of_sample_r2(fit_predict, X, y, np.array(["a", "a", "b", "b"]))
    assert seen == [([2, 3], [0, 1]), ([0, 1], [2, 3])]
    assert r2 <= 0.0  # a constant never beats the mean out of sample
    assert np.isnan(out_of_sample_r2(fit_predict, X, y, np.array(["a"] * 4)))


def test_categorical_levels_are_ordered_and_only_present_ones(tmp_path, scores):
    from t2ibench.analysis.shap_analysis import level_codes
    from t2ibench.analysis.shap_report import beeswarm

    codes, levels = level_codes("preset", pd.Series(["full", "attn-mlp", "full"]))
    assert levels == ["attn-mlp", "full"]  # no attn-only: not in the data, not in the label
    assert codes.tolist() == [1.0, 0.0, 1.0]
    _, levels = level_codes("algorithm", pd.Series(["native", "lokr", "lora", "loha"]))
    assert levels == ["lora", "loha", "lokr", "native"]  # the paper's order, not alphabetical
    res = fit_shap(scores, "anime", Target("text_alignment", "alter"), iterations=20, cv=())
    assert not res.is_finding  # no out-of-sample R² computed: not a finding
    p = beeswarm(res, tmp_path / "b.png")
    assert p.is_file() and p.stat().st_size > 1000


def test_issue22_item22_a_negative_leave_one_config_out_r2_is_no_finding():
    """Four reference models with leave-one-seed-out R² > 0.05 but a negative leave-one-config-out
    R² were called findings: both must exceed 0.05."""
    from t2ibench.analysis.shap_analysis import ShapResult

    def result(seed, config):
        return ShapResult("scene", Target("image_similarity", "train"), ("", "", "", ""), [],
                          pd.DataFrame(), np.zeros(1), np.zeros((1, 0)), 0.0, np.zeros(1), 0.6,
                          r2_out={"seed": seed, "config": config})  # fmt: skip

    assert result(0.27, 0.30).is_finding and result(0.27, 0.30).warning == ""
    loco = result(0.27, -0.45)
    assert not loco.is_finding
    assert "leave-one-config-out R² -0.45" in loco.warning and "seed" not in loco.warning
    assert (
        not result(0.02, 0.30).is_finding
        and "leave-one-seed-out R² 0.02" in result(0.02, 0.30).warning
    )
    assert not result(0.5, math.nan).is_finding  # a scheme not computed is no evidence


def test_catboost_threads_follow_omp_num_threads_unless_given(monkeypatch, scores):
    """CatBoost ignores OMP_NUM_THREADS (its -1 is every core): the fits honour the limit, an
    explicit thread_count wins, and the fit does not depend on the thread count."""
    from catboost import CatBoostRegressor

    from t2ibench.analysis.shap_analysis import catboost_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert catboost_threads() == 3 and catboost_threads(2) == 2 and catboost_threads(-1) == -1
    for unset in ("", "0", "auto", "-2"):
        monkeypatch.setenv("OMP_NUM_THREADS", unset)
        assert catboost_threads() == -1, unset
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert catboost_threads() == -1

    seen = []
    real_init = CatBoostRegressor.__init__

    def init(self, *args, **kwargs):
        seen.append(kwargs["thread_count"])
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(CatBoostRegressor, "__init__", init)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    target = Target("image_similarity", "train")
    one = fit_shap(scores, "people", target, iterations=50, cv=())
    assert set(seen) == {1}
    seen.clear()
    two = fit_shap(scores, "people", target, iterations=50, cv=(), thread_count=2)
    assert set(seen) == {2}
    assert one.r2 == two.r2
    np.testing.assert_array_equal(one.shap_values, two.shap_values)
