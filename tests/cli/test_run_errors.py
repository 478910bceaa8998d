"""Bad input to ``t2ibench run``: one line naming what is wrong, exit 2, nothing created."""

import subprocess

import pytest

from t2ibench.data import make_demo_dataset
from t2ibench.testing import run_cli


def run(*args: str, cwd) -> subprocess.CompletedProcess:
    return run_cli("run", *args, cwd=cwd)  # the entry point in this process (t2ibench/testing.py)


def one_line_error(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, out.stderr
    return lines[0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("d") / "demo")


def test_unknown_trainer(tmp_path):
    msg = one_line_error(run("--trainer", "lorra", cwd=tmp_path))
    assert "lorra" in msg and "lora" in msg
    assert not (tmp_path / "results").exists()


def test_unknown_metric_and_encoder_and_prompt_type(tmp_path, demo):
    common = ["--trainer", "lora", "--base", "tiny", "--dataset", str(demo)]
    msg = one_line_error(run(*common, "--metrics", "vendy", cwd=tmp_path))
    assert "vendy" in msg and "vendi" in msg
    msg = one_line_error(run(*common, "--encoders", "dino", cwd=tmp_path))
    assert "dino" in msg
    msg = one_line_error(run(*common, "--prompt-types", "trigger,alterr", cwd=tmp_path))
    assert "alterr" in msg
    assert not (tmp_path / "results").exists()


def test_missing_base_model(tmp_path, demo):
    msg = one_line_error(
        run(
            "--trainer",
            "lora",
            "--base",
            str(tmp_path / "nope"),
            "--dataset",
            str(demo),
            cwd=tmp_path,
        )
    )
    assert "nope" in msg


def test_unknown_config_key(tmp_path, demo):
    msg = one_line_error(
        run(
            "--trainer",
            "loha",
            "--base",
            "tiny",
            "--dataset",
            str(demo),
            "--set",
            "dimm=4",
            cwd=tmp_path,
        )
    )
    assert "dimm" in msg


def test_bad_dataset(tmp_path, demo):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(demo, bad)
    (bad / "style/dots/001.png").write_bytes(b"\x89PNG broken")
    msg = one_line_error(
        run("--trainer", "lora", "--base", "tiny", "--dataset", str(bad), cwd=tmp_path)
    )
    assert "001.png" in msg and "image" in msg


def test_dotted_override_errors_name_key_and_type(tmp_path, demo):
    common = ["--trainer", "lora", "--base", "tiny", "--dataset", str(demo)]
    msg = one_line_error(run(*common, "--set", "generate.steps=many", cwd=tmp_path))
    assert "--set generate.steps=many: field 'generate.steps' must be an integer" in msg
    msg = one_line_error(run(*common, "--set", "trainer.alpha=high", cwd=tmp_path))
    assert "field 'trainer.alpha' must be a number" in msg
    msg = one_line_error(run("--profile", "tiny", "--set", "native_save=diffusers", cwd=tmp_path))
    assert "unknown key 'trainer.native_save' for trainer 'lora'" in msg
    assert not (tmp_path / "results").exists()
