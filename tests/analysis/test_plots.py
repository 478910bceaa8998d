"""Metric-pair scatter plots: marker size encodes the varied hyperparameter's value, and the legend
lists only what the figure draws."""

import matplotlib.figure
import pandas as pd

from t2ibench.analysis.aggregate import aggregate
from t2ibench.analysis.plots import scatter_pairs, value_levels
from t2ibench.analysis.scores import metric_directions, rank_normalise
from t2ibench.analysis.synthetic import synthetic_results
from t2ibench.analysis.tables import config_table, varied_hyperparameter


def _scores(df):
    return rank_normalise(df, metric_directions(df))


def test_value_levels_against_the_default():
    scores = _scores(synthetic_results(seeds=("a",), epochs=(10,)))
    levels = value_levels(scores, varied_hyperparameter(config_table(scores)))
    assert levels["exp-1-lora"] == "default"
    assert levels["exp-2-lora-lr1e-4"] == "lower" and levels["exp-3-lora-lr1e-3"] == "higher"
    assert levels["exp-5-lora32a16"] == "higher"  # dim 32 > 8
    assert levels["exp-22-lokr-f4"] == "higher" and levels["exp-24-lokr-f12"] == "lower"
    assert levels["exp-4-lora-attnonly"] == "other"  # a preset has no direction


def test_legend_only_lists_what_is_drawn(tmp_path, monkeypatch):
    df = synthetic_results(seeds=("a", "b"), epochs=(10,))
    # Native fine-tuning has no text-alignment values: it cannot appear in a pair with it.
    df = df[~((df["algorithm"] == "native") & (df["metric"] == "text_alignment"))]
    scores = _scores(df)
    aggs = aggregate(scores)
    labels = []
    original = matplotlib.figure.Figure.legend

    def spy(self, *args, **kwargs):
        labels.append([h.get_label() for h in kwargs["handles"]])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "legend", spy)
    varied = varied_hyperparameter(config_table(scores))
    written = scatter_pairs(aggs["category"], scores, varied, tmp_path)
    assert written and len(labels) == len(written)
    for (name, _), got in zip(written, labels, strict=True):
        with_text = "text_alignment" in name
        assert ("native" in got) != with_text, (name, got)
        assert "above the default" in got and "below the default" in got
    assert isinstance(varied, pd.Series)
