from pathlib import Path

import pandas as pd
import pytest

from t2ibench.analysis import analyze
from t2ibench.results import read_results

REF = Path(__file__).resolve().parents[2] / "reference_results" / "lycoris-iclr2024"


def test_reference_tables_match_the_analysis_constants():
    from t2ibench.analysis.tables import PAPER_TABLE1

    t1 = pd.read_csv(REF / "table1.csv").set_index("criterion")
    t1 = t1.rename(
        columns={"native_high_lr": "native (high lr)", "native_low_lr": "native (low lr)"}
    )
    assert t1.to_dict("index") == PAPER_TABLE1
    t5 = pd.read_csv(REF / "table5.csv")
    assert len(t5) == 16 and set(t5["algorithm"]) == {"lora", "loha", "lokr", "native"}


def test_reference_results_load():
    df = read_results(REF)
    assert len(df) == 112_644 and df["checkpoint"].nunique() == 261
    assert {"algorithm", "preset", "lr", "dim", "alpha", "factor", "caption"} <= set(df.columns)


@pytest.mark.slow
def test_reference_report_shows_the_epoch_findings(tmp_path):
    res = analyze(REF, tmp_path, shap=False, plots=False)
    claims = res.epoch_claims
    assert len(claims) == 6 and claims["agrees"].all()
    a = claims.set_index(["category", "measure"])
    assert a.loc[("anime", "image_similarity <train> (dinov2-l, letterbox)"), "epoch_10"] == (
        pytest.approx(0.424, abs=1e-3)
    )
