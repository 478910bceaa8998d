"""The listing commands and ``dataset check``, run as a user runs them: the entry point in this
process (:func:`t2ibench.testing.run_cli`), and once as ``python -m t2ibench`` in a fresh one."""

import subprocess
import sys

from t2ibench.data import make_demo_dataset
from t2ibench.testing import run_cli


def t2ibench(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args)


def test_python_m_t2ibench_in_a_fresh_process(tmp_path):
    """The console entry a user types: a user error is one line on stderr and exit status 2; a
    command that imports diffusers (and with it bitsandbytes) prints nothing else on stderr."""
    out = subprocess.run([sys.executable, "-m", "t2ibench", "size", "--trainer", "lora"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0 and "4,718,856 parameters" in out.stdout, out.stderr
    assert out.stderr == "", out.stderr
    out = subprocess.run([sys.executable, "-m", "t2ibench", "dataset", "check", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert [ln for ln in out.stderr.splitlines() if ln.strip()][0].startswith("error:")


def test_metrics_and_prompts_list():
    out = t2ibench("metrics", "list")
    assert out.returncode == 0, out.stderr
    for name in ["image_similarity", "centroid_distance", "vendi", "style_loss", "liqe"]:
        assert name in out.stdout
    out = t2ibench("prompts", "list")
    assert out.returncode == 0, out.stderr
    assert "concept-agnostic" in out.stdout and "alter" in out.stdout


def test_dataset_check_ok_and_bad(tmp_path):
    root = make_demo_dataset(tmp_path / "demo")
    out = t2ibench("dataset", "check", str(root))
    assert out.returncode == 0, out.stderr
    assert "scene/tower: 3 images" in out.stdout and "repeats=4" in out.stdout
    (root / "scene/tower/001.txt").unlink()
    out = t2ibench("dataset", "check", str(root))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "001.png" in lines[0] and "caption" in lines[0]
