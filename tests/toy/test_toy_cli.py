"""``t2ibench toy dataset`` writes a loadable dataset; bad leaves are one-line errors."""

from typer.testing import CliRunner

from t2ibench.cli import app
from t2ibench.data import load_dataset


def test_toy_dataset_command(tmp_path):
    res = CliRunner().invoke(app, ["toy", "dataset", str(tmp_path / "d"), "--leaf", "toys/ring"])
    assert res.exit_code == 0, res.output
    ds = load_dataset(tmp_path / "d")
    assert list(ds.leaves) == ["toys/ring"] and len(ds.images) == 5


def test_toy_dataset_unknown_leaf(tmp_path):
    res = CliRunner().invoke(app, ["toy", "dataset", str(tmp_path / "d"), "--leaf", "toys/nope"])
    assert res.exit_code != 0
    assert "toys/nope" in str(res.exception)
