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
