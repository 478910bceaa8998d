"""The answer (which checkpoint to keep) printed last by `run`, `evaluate-checkpoints` and
`analyze`, from the report's recommendation.json (issue 22 item 11)."""

import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from t2ibench.analysis.answer import answer_lines, summary

QUICK = ["--images-per-leaf", "2", "--steps", "2"]


def test_answer_lines_name_the_checkpoint_its_values_and_what_was_left_out():
    table = pd.DataFrame({"fidelity": [0.2, 0.9], "controllability": [1.0, 0.4],
                          "pareto": [True, True], "epoch": [1, 2]},
                         index=pd.Index(["e1", "e2"], name="checkpoint"))  # fmt: skip
    s = summary(table, "e2", ["fidelity", "controllability"], ["preservation: not measured"], "r")
    assert answer_lines(s) == [
        "recommended checkpoint: e2 (epoch 2; fidelity 0.90, controllability 0.40; 0 = worst, "
        "1 = best of the base model and the checkpoints)",
        "Pareto set (none beats another on every criterion): e1, e2",
        "left out: preservation: not measured",
    ]
    assert answer_lines(summary(table, None, [], [], "r"))[0].startswith("no recommended")


def _t2ibench(*args, cwd) -> subprocess.CompletedProcess:
    from t2ibench.testing import run_cli  # the entry point in this process (stdout, stderr, status)

    return run_cli(*args, cwd=cwd)


@pytest.mark.slow  # a tiny run and the evaluation of its checkpoints: ~30 s on 2 cores
def test_issue22_item11_run_and_evaluate_checkpoints_print_the_answer_last(tmp_path):
    from pathlib import Path

    root = Path(__file__).parents[2]
    runs = []
    got = _t2ibench("run", "--trainer", "lora", "--profile", "tiny", "--no-progress", *QUICK,
                    "--epochs", "2", "--save-epochs", "1", "--save-epochs", "2",
                    "--out", str(tmp_path / "run"), cwd=root)  # fmt: skip
    runs.append(got)
    (run_dir,) = [p for p in (tmp_path / "run").iterdir() if not p.name.startswith(".")]
    folder = tmp_path / "mine"
    folder.mkdir()
    for f in (run_dir / "checkpoints").glob("lora-e*.safetensors"):
        shutil.copy(f, folder / f.name)
    # under the run's --out: the base model's images are the run's (docs: shared by every run
    # under one --out), so only the checkpoints' images are generated again
    runs.append(_t2ibench("evaluate-checkpoints", str(folder), "--profile", "tiny",
                          "--no-progress", "--set", "generate.images_per_leaf=2", "--set",
                          "generate.steps=2", "--out", str(tmp_path / "run"), cwd=root))  # fmt: skip
    for got in runs:
        assert got.returncode == 0, got.stderr[-3000:]
        lines = got.stdout.strip().splitlines()
        answer = [i for i, x in enumerate(lines) if x.startswith("recommended checkpoint: ")]
        assert answer and lines[answer[0] - 1].startswith("report: "), lines[-6:]
        assert re.match(r"recommended checkpoint: \S+ \(epoch \d+; fidelity ", lines[answer[0]])
        assert all(x.startswith("  ") for x in lines[answer[0] + 1 :])  # the answer is last
        # The Fréchet warnings of a small run: once, in one line, then one line of how many more.
        err = got.stderr.splitlines()
        shown = [x for x in err if "SingularCovarianceWarning" in x]
        assert len(shown) == 2 and shown[0].startswith("warning: frechet_distance: "), shown
        assert re.fullmatch(r"warning: \d+ more SingularCovarianceWarning warnings, the first one "
                            "shown above", shown[1]), shown  # fmt: skip
        assert not any("warnings.warn(" in x for x in err)


def test_issue22_item11_repeated_warnings_are_shown_once_and_counted(tmp_path):
    """What the CLI installs: 16 Fréchet warnings from 16 leaves of different sizes (each message
    differs, so Python's own once-per-location filter shows all 16, with source lines)."""
    code = (
        "import torch; from t2ibench.cli._console import summarise_warnings; "
        "summarise_warnings(); from t2ibench.metrics.frechet import frechet_distance; "
        "[frechet_distance(torch.randn(n, 32), torch.randn(n + 1, 32)) for n in range(2, 18)]"
    )
    from pathlib import Path

    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).parents[2])  # fmt: skip
    assert got.returncode == 0, got.stderr
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("warning: frechet_distance: gen has n=2 ≤ d=32")
    assert lines[0].endswith("(SingularCovarianceWarning)")
    assert lines[1] == ("warning: 15 more SingularCovarianceWarning warnings, the first one shown "
                        "above")  # fmt: skip
