"""Issue 13, reliability of the CLI (items 16, 17, 19–23): each test is named after its item and
failed on the code before the fix. Tiny models, small settings: seconds each."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from t2ibench.analysis import analyze
from t2ibench.analysis.synthetic import synthetic_results
from t2ibench.cli import app
from t2ibench.data import load_dataset, make_demo_dataset
from t2ibench.errors import ConfigError, DatasetError, T2IBenchError
from t2ibench.pipeline.run import RunOptions, execute, resolve
from t2ibench.results import HYPERPARAMETER_COLUMNS, read_results, write_results
from t2ibench.testing import run_cli

ENCODERS = ["dinov2-l@tiny", "clip-l14@tiny", "vgg19@tiny"]
ONEX = "characters/kiro/onex outfit"
BLOB = "@SUM(1+1)/<b>blób"
TOWER = "scene/=cmd|' -C calc'!A0"


def tiny_options(out: Path, run: dict | None = None, **kw) -> RunOptions:
    """The tiny profile with small settings; ``run`` adds run-config keys (``generate.steps``)."""
    quick = {
        "trainer": "lora",
        "evaluate.encoders": ENCODERS,
        "generate.images_per_leaf": 2,
        "generate.steps": 2,
        "trainer.epochs": 2,
        "trainer.save_epochs": [1, 2],
        **(run or {}),
    }
    opts = dict(profile="tiny", out=str(out), progress=False)
    opts.update(kw)
    return RunOptions(layers=[("test", quick)], **opts)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd)  # the entry point in this process (t2ibench/testing.py)


def one_line_error(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, out.stderr
    return lines[0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "demo")


def hostile_dataset(demo: Path, dest: Path) -> Path:
    """The demo with the names the spec allows: a space (the README's own ``onex outfit``),
    unicode and HTML, spreadsheet formulas."""
    shutil.copytree(demo, dest)
    toml = (dest / "dataset.toml").read_text()
    toml = toml.replace("subclasses.vest]", 'subclasses."onex outfit"]')
    toml = toml.replace('"stuffed_toy/blob"', '"@SUM(1+1)/<b>blób"')
    toml = toml.replace('"scene/tower"', "\"scene/=cmd|' -C calc'!A0\"")
    (dest / "dataset.toml").write_text(toml)
    (dest / "characters/kiro/vest").rename(dest / "characters/kiro/onex outfit")
    (dest / "@SUM(1+1)").mkdir()
    (dest / "stuffed_toy/blob").rename(dest / BLOB)
    (dest / "stuffed_toy").rmdir()
    (dest / "scene/tower").rename(dest / TOWER)
    return dest


# --- item 16 ---------------------------------------------------------------------------------------


def test_item16_folder_names_checked_before_training(demo, tmp_path):
    """Leaf keys with spaces, unicode and HTML run end to end (mapped to safe folder names, the
    manifest and results keep the key); what generation refuses is refused before training."""
    ds_dir = hostile_dataset(demo, tmp_path / "ds")
    assert CliRunner().invoke(app, ["dataset", "check", str(ds_dir)]).exit_code == 0
    opts = tiny_options(
        tmp_path / "out", {"dataset": str(ds_dir), "generate.prompt_types": ["trigger", "alter"]}
    )
    run_dir = execute(resolve(opts))
    df = read_results(run_dir / "results")
    assert {ONEX, BLOB, TOWER} <= set(df["leaf"])
    manifest = run_dir / "images" / "lora-e000002" / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    onex = [r for r in rows if r["leaf"] == ONEX]
    assert onex and all(r["file"].startswith("characters/kiro/onex_outfit-") for r in onex)
    assert all((manifest.parent / r["file"]).is_file() for r in rows)
    html = (run_dir / "report" / "report.html").read_text()
    assert "<b>" not in html and "@SUM(1+1)" in html

    # An alter template generation would refuse ("{} and {}") stops `dataset check` and `run`
    # before any checkpoint is trained.
    (ds_dir / "two.txt").write_text("a photo of {} and {}\n")
    toml = (ds_dir / "dataset.toml").read_text()
    (ds_dir / "dataset.toml").write_text(
        toml.replace('alter_templates = "castle"', 'alter_templates = "two.txt"')
    )
    msg = one_line_error(cli("dataset", "check", str(ds_dir), cwd=tmp_path))
    assert "{} and {}" in msg
    out = tmp_path / "out2"
    with pytest.raises(DatasetError, match="two.txt|exactly one"):
        execute(resolve(tiny_options(out, {"dataset": str(ds_dir)})))
    assert not list(out.rglob("*.safetensors"))


# --- item 19 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["generate.images_per_leaf", "generate.steps", "generate.batch_size", "trainer.epochs"]
)
def test_item19_zero_values_refused(tmp_path, key):
    """0 is refused with one line, never read as "the profile's default" (``x or default``)."""
    with pytest.raises(ConfigError, match=key.split(".")[1]):
        resolve(tiny_options(tmp_path, {key: 0}))
    flag = "--" + key.split(".")[1].replace("_", "-")
    msg = one_line_error(
        cli("run", "--trainer", "lora", "--profile", "tiny", flag, "0", cwd=tmp_path)
    )
    assert key.split(".")[1] in msg or flag in msg


def test_item19_allow_pickle_reaches_training(tmp_path, monkeypatch):
    """A pickle ``.ckpt`` base with ``--allow-pickle`` trains and generates (the trainer loaded the
    base without the flag and failed closed, asking for the flag that was given)."""
    import torch
    from safetensors.torch import load_file

    import t2ibench.models.sd15 as sd15
    from t2ibench.models import load_base
    from t2ibench.models.convert import save_single_file
    from t2ibench.models.loading import tiny_base_folder

    tiny = tiny_base_folder()
    single = save_single_file(load_base(tiny), tmp_path / "tiny.safetensors")
    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": load_file(single)}, ckpt)
    # The tiny base is not SD1.5-sized: read its single file with the tiny configs.
    monkeypatch.setattr(sd15, "sd15_config_folder", lambda: tiny)
    run = {
        "base": str(ckpt),
        "trainer.epochs": 1,
        "trainer.save_epochs": [1],
        "generate.prompt_types": ["trigger"],
        "evaluate.metrics": ["image_similarity"],
    }
    opts = tiny_options(tmp_path / "out", run, analyze=False)
    with pytest.raises(T2IBenchError, match="allow"):
        execute(resolve(opts))
    opts.allow_pickle = True
    run_dir = execute(resolve(opts))
    assert len(read_results(run_dir / "results")) > 0


# --- item 20 ---------------------------------------------------------------------------------------


def test_item20_analyze_without_hyperparameters_skips_shap(tmp_path):
    """A table as ``t2ibench evaluate`` writes it (no hyperparameter columns) analyses with the
    defaults: SHAP is skipped, said in one line and in the report."""
    df = synthetic_results(seeds=("a",), epochs=(10, 50))
    df = df.drop(columns=[c for c in HYPERPARAMETER_COLUMNS if c in df.columns])
    write_results(df, tmp_path / "results")
    r = CliRunner().invoke(
        app, ["analyze", str(tmp_path / "results"), "--out", str(tmp_path / "rep"), "--no-plots"]
    )
    assert r.exit_code == 0, r.output
    notes = [ln for ln in r.output.splitlines() if "SHAP skipped" in ln]
    assert len(notes) == 1 and "preset" in notes[0]
    assert "SHAP skipped" in (tmp_path / "rep" / "report.html").read_text()
    assert (tmp_path / "rep" / "scores.csv").is_file()


# --- item 21 (the analysis parts) -----------------------------------------------------------------


def test_item21_mathtext_category_names_in_plots(tmp_path):
    df = synthetic_results(seeds=("a",), epochs=(10, 50))
    df["category"] = df["category"].replace({"anime": "$x_$", "people": r"$\foo$ people"})
    res = analyze(df, tmp_path, shap_iterations=5)
    assert any(p.name.startswith("scatter_") for p in res.files)
    assert "$x_$" in set(pd.read_csv(tmp_path / "scores.csv")["category"])


# --- item 22 ---------------------------------------------------------------------------------------


def test_item22_symlinks_outside_the_dataset_refused(demo, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(demo, ds)
    outside = tmp_path / "secret.txt"
    outside.write_text("kiro robot, the password is hunter2\n")
    caption = ds / "characters/kiro/000.txt"
    caption.unlink()
    caption.symlink_to(outside)
    with pytest.raises(DatasetError, match=r"000\.txt.*outside the dataset"):
        load_dataset(ds)
    # a link that stays inside the folder is fine
    caption.unlink()
    caption.symlink_to(ds / "characters/kiro/001.txt")
    load_dataset(ds)
    # a class folder linked from outside
    shutil.move(ds / "style/dots", tmp_path / "dots")
    (ds / "style/dots").symlink_to(tmp_path / "dots")
    with pytest.raises(DatasetError, match="dots.*outside the dataset"):
        load_dataset(ds)
    msg = one_line_error(cli("dataset", "check", str(ds), cwd=tmp_path))
    assert "dots" in msg


FORMULAS = ["=cmd|' -C calc'!A0", "@SUM(1+1)", "+1+cmd", "-2+3+cmd", "\t=1", "\r=1"]


def test_item22_formula_cells_neutralised_in_csv(tmp_path):
    df = synthetic_results(seeds=("a",), epochs=(10, 50))
    cats = sorted(df["category"].unique())
    df["category"] = df["category"].replace(dict(zip(cats, FORMULAS, strict=False)))
    df["caption"] = "-0.5"  # text that is a number stays as it is
    write_results(df, tmp_path / "results")
    analyze(tmp_path / "results", tmp_path / "report", shap=False, plots=False)
    for csv in (tmp_path / "results/results.csv", tmp_path / "report/scores.csv",
                tmp_path / "report/aggregate_category.csv"):  # fmt: skip
        raw = pd.read_csv(csv, dtype=str, keep_default_na=False)
        for col in raw.columns:
            bad = raw[col][raw[col].str.match(r"^[=+@\t\r]|^-(?!\d*\.?\d+(e-?\d+)?$)")]
            assert bad.empty, (csv.name, col, list(bad)[:3])
        assert "'=cmd|' -C calc'!A0" in set(raw["category"])
        if "value" in raw.columns:
            assert pd.to_numeric(raw["value"]).notna().all()
    assert set(pd.read_csv(tmp_path / "results/results.csv", dtype=str)["caption"]) == {"-0.5"}
    # the authoritative table and a CSV read back keep the real names
    assert set(read_results(tmp_path / "results/results.csv")["category"]) <= set(FORMULAS)


# --- a finished run shared by items 17, 21 and 23 --------------------------------------------------

RUN_ARGS = [
    "--trainer", "lora", "--profile", "tiny", "--no-progress", "--encoders", ",".join(ENCODERS),
    "--images-per-leaf", "2", "--steps", "2", "--epochs", "2", "--save-epochs", "1",
    "--save-epochs", "2", "--prompt-types", "trigger,style",
]  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "results"
    opts = tiny_options(out, {"generate.prompt_types": ["trigger", "style"]})
    return opts, execute(resolve(opts))


def run_main(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """``t2ibench ARGS`` in this process through the console entry point (so faults can be
    injected); returns (exit code, stderr)."""
    from t2ibench.cli import main

    monkeypatch.setattr(sys, "argv", ["t2ibench", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


def test_item17_deleted_or_replaced_images_are_made_again(finished):
    from PIL import Image, ImageOps

    from t2ibench.pipeline.evaluate import evaluate_images

    opts, run_dir = finished
    before = read_results(run_dir / "results")
    replaced = sorted((run_dir / "images" / "lora-e000001").rglob("*.png"))[0]
    base_dir = Path(json.loads((run_dir / "run.json").read_text())["base_images"])
    deleted = sorted(base_dir.rglob("*.png"))[0]
    originals = {replaced: replaced.read_bytes(), deleted: deleted.read_bytes()}
    with Image.open(replaced) as im:
        ImageOps.invert(im.convert("RGB")).save(replaced)
    # a changed image is never scored silently
    with pytest.raises(T2IBenchError, match=replaced.name + ".*changed"):
        evaluate_images(run_dir / "images" / "lora-e000001", resolve(opts).dataset, [])
    deleted.unlink()
    execute(resolve(opts))  # the rerun checks every image and makes these two again
    for path, data in originals.items():
        # made again from the same seed (alone instead of in a batch: equal up to rounding)
        with Image.open(path) as now, Image.open(io.BytesIO(data)) as then:
            diff = np.abs(np.asarray(now, dtype=int) - np.asarray(then, dtype=int))
        assert diff.max() <= 3, (path.name, diff.max())
    evaluate_images(run_dir / "images" / "lora-e000001", resolve(opts).dataset, [])
    after = read_results(run_dir / "results")
    assert len(after) == len(before) and after["value"].notna().all()


def test_item21_disk_full_outside_image_writing_is_one_line(finished, monkeypatch, capsys):
    import errno

    opts, run_dir = finished

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    import pyarrow.parquet as pq

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    monkeypatch.setattr(pq, "write_table", full)  # results.py writes parquet through pyarrow
    # a finished run's rerun writes nothing: the merged table it must rebuild is written
    (run_dir / "results" / "results.parquet").unlink()
    code, err = run_main(["run", *RUN_ARGS, "--out", opts.out], monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "results.parquet" in line and "No space left" in line and "kept" in line
    monkeypatch.undo()
    # the analysis writers too
    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    report = run_dir.parent / "report-full"
    code, err = run_main(
        ["analyze", str(run_dir / "results"), "--out", str(report), "--no-shap"],
        monkeypatch,
        capsys,
    )
    assert code == 2 and "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    # the first CSV the analysis writes (raw_values.csv for one config), named with its folder
    assert str(report) in line and ".csv:" in line and "No space left" in line


def test_item21_out_not_a_writable_folder(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    msg = one_line_error(cli("run", *RUN_ARGS, "--out", str(blocker / "sub"), cwd=tmp_path))
    assert "a-file" in msg and "not a folder" in msg
    # read-only: the test runs as root here, so the permission answer is simulated
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda p, mode: not (Path(p) == ro and mode & os.W_OK) and real_access(p, mode),
    )
    code, err = run_main(["run", *RUN_ARGS, "--out", str(ro)], monkeypatch, capsys)
    assert code == 2 and "not writable" in err and str(ro) in err and "Traceback" not in err


@pytest.mark.parametrize("device", ["cuda", "cuda:3", "tpu-please"])
def test_item21_unavailable_or_bogus_device(tmp_path, device):
    msg = one_line_error(
        cli("run", *RUN_ARGS, "--device", device, "--out", str(tmp_path / "o"), cwd=tmp_path)
    )
    assert device in msg
    assert not (tmp_path / "o").exists()


def test_item21_decompression_bomb_names_the_file(demo, tmp_path):
    import struct
    import zlib

    ds = tmp_path / "ds"
    shutil.copytree(demo, ds)
    bomb = ds / "style/dots/000.png"
    data = bytearray(bomb.read_bytes())
    # rewrite the IHDR to claim 20000 × 20000 pixels (PIL's guard refuses it on open)
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", 20000, 20000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    bomb.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"000\.png.*too large"):
        load_dataset(ds)
    msg = one_line_error(cli("dataset", "check", str(ds), cwd=tmp_path))
    assert "000.png" in msg


class _NotATensor:
    """Stands for a malicious payload: weights_only=True must refuse any non-tensor global."""


def test_item21_blocked_encoder_pickle_is_one_line(tmp_path):
    import torch

    from t2ibench.pipeline.run import create_encoders

    evil = tmp_path / "evil.pth"
    torch.save({"features.0.weight": torch.zeros(1), "payload": _NotATensor()}, evil)
    with pytest.raises(ConfigError, match="evil.pth.*weights_only"):
        create_encoders([f"vgg19@{evil}"], None, "cpu")


def test_item21_two_analyses_into_one_folder(tmp_path):
    """A second analysis into a folder waits for the first instead of interleaving files."""
    import fcntl
    import threading

    df = synthetic_results(seeds=("a",), epochs=(10, 50))
    report = tmp_path / "report"
    report.mkdir()
    done = threading.Event()
    errors = []

    def second():
        try:
            analyze(df, report, shap=False, plots=False)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        done.set()

    with open(report / ".analyze.lock", "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # the first analysis, still writing
        worker = threading.Thread(target=second)
        worker.start()
        assert not done.wait(1.5)
        assert not (report / "scores.csv").exists()
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    worker.join(60)
    assert done.is_set() and not errors and (report / "report.html").is_file()
    # and sequentially, twice into the same folder
    analyze(df, report, shap=False, plots=False)


# --- item 23 ---------------------------------------------------------------------------------------


def test_item23_rerun_keeps_an_unchanged_analysis(finished, caplog):
    opts, run_dir = finished
    execute(resolve(opts))
    report = run_dir / "report" / "report.html"
    stamp = report.stat().st_mtime_ns
    with caplog.at_level("INFO", logger="t2ibench"):
        execute(resolve(opts))
    assert report.stat().st_mtime_ns == stamp
    assert "report kept" in caplog.text
    report.unlink()  # a missing report is made again
    execute(resolve(opts))
    assert report.is_file()


def test_item23_ctrl_c_says_what_was_kept_and_how_to_resume(tmp_path):
    """A real SIGINT to ``t2ibench run`` once a checkpoint is saved. The process is a fork of this
    one (tests/forked.py: a real process, without a fresh Python's imports)."""
    import signal
    import time

    from tests.forked import forked_cli

    out = tmp_path / "results"
    proc = forked_cli("run", *RUN_ARGS, "--out", str(out), folder=tmp_path, cwd=tmp_path)
    deadline = time.time() + 240
    while not list(out.glob("*/checkpoints/*-e000001.safetensors")) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    err = proc.stderr
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if "interrupted" in ln]
    assert "kept" in line and "checkpoint" in line and "rerun the same command" in line


# --- issue 22 item 34 ------------------------------------------------------------------------------


@pytest.mark.parametrize("place", ["checkpoint", "resume-state", "feature-cache"])
def test_item34_disk_full_writing_safetensors_is_one_line(place, tmp_path, monkeypatch, capsys):
    """safetensors' writer reports a full disk as its own ``SafetensorError`` (text as on a full
    1 MiB tmpfs: "... (os error 28)"), not an OSError: each place that writes one (a checkpoint,
    the resume state, the feature cache) must still end in one line naming the file."""
    import safetensors.torch
    from safetensors import SafetensorError

    real = safetensors.torch.save_file
    hit = {
        "checkpoint": lambda p: ".lora-e000001.safetensors." in p.name,
        "resume-state": lambda p: "-state-e" in p.name,
        "feature-cache": lambda p: ".feature-cache" in p.parts,
    }[place]
    full = []

    def save_file(tensors, filename, *args, **kwargs):
        if hit(Path(filename)):
            full.append(filename)
            raise SafetensorError(
                "Error while serializing: I/O error: No space left on device (os error 28)"
            )
        return real(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    args = ["--trainer", "lora", "--profile", "tiny", "--no-progress", "--encoders",
            "dinov2-l@tiny", "--images-per-leaf", "1", "--steps", "2", "--epochs", "1",
            "--prompt-types", "trigger", "--out", str(tmp_path / "out")]  # fmt: skip
    code, err = run_main(["run", *args], monkeypatch, capsys)
    assert full, f"no {place} was written"
    assert code == 2 and "Traceback" not in err, err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "No space left on device" in line and "kept" in line, line
    assert Path(full[0]).name.split(".")[1] in line  # the file it was writing


def test_item27_images_not_made_yet_are_not_called_missing(finished, caplog):
    """A manifest that lists some of a checkpoint's images (a run cut off mid-generation): the
    rest are "not made yet", never "missing or changed since generation"; a recorded image
    whose file went is."""
    import logging

    opts, run_dir = finished
    folder = run_dir / "images" / "lora-e000002"
    manifest = folder / "manifest.jsonl"
    lines = manifest.read_text().splitlines(keepends=True)
    (folder / json.loads(lines[-1])["file"]).unlink()
    manifest.write_text("".join(lines[:-1]))  # the last image never made
    with caplog.at_level(logging.INFO, logger="t2ibench"):
        execute(resolve(opts))
    text = caplog.text
    assert "missing or changed since generation" not in text and "not made yet" in text, text
    recorded = folder / json.loads(lines[0])["file"]
    recorded.unlink()  # recorded once, its file gone: that is "missing"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="t2ibench"):
        execute(resolve(opts))
    assert "1 image(s) missing or changed since generation" in caplog.text
    assert recorded.is_file()
