"""No command removes or writes a path outside its output folder, whatever its state files and
config names say (issue 22 items 28 and 30): ``evaluate-checkpoints`` rerun with an edited
``checkpoints.json`` naming ``../`` and absolute folders, and ``sweep`` with config names and seed
labels that are relative and absolute paths. Sentinel folders beside ``--out`` must survive, and
nothing outside ``--out`` may appear or change."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from t2ibench.results import read_results

QUICK = [
    "generate.images_per_leaf=1",
    "generate.steps=2",
    'generate.prompt_types=["train"]',
    'evaluate.encoders=["dinov2-l@tiny"]',
    'evaluate.metrics=["image_similarity"]',
]


def _tree(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` except ``skip`` (the output folder): size and mtime."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d != skip]
        for name in dirnames + filenames:
            st = (here / name).lstat()
            out[str((here / name).relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def _sentinels(root: Path) -> list[Path]:
    made = []
    for name in ("victim-rel", "victim-abs"):
        folder = root / name
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "precious.txt").write_text("keep me")
        made.append(folder)
    return made


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    from t2ibench.cli import main

    monkeypatch.setattr(sys, "argv", ["t2ibench", *args])
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    else:
        code = 0
    return code, capsys.readouterr().err


def test_item28_rerun_never_deletes_outside_run_folder(tmp_path, monkeypatch, capsys):
    from t2ibench.adapters import get_trainer
    from t2ibench.adapters.files import build_metadata, save_adapter
    from t2ibench.models import load_base

    pipe = load_base("tiny")
    folder = tmp_path / "ckpts"
    folder.mkdir()
    spec = get_trainer("lora")
    cfg = spec.config([("test", {"preset": "attn-only"})])
    for epoch in (1, 2):
        net = spec.build_network({"unet": pipe.unet, "te": pipe.text_encoder}, cfg)
        save_adapter(net, folder / f"mine-{epoch:06d}.safetensors", build_metadata(cfg, None))
    out = tmp_path / "out"
    args = ["evaluate-checkpoints", str(folder), "--profile", "tiny", "--out", str(out)]
    args += ["--no-progress"] + [a for s in QUICK for a in ("--set", s)]
    code, err = _main(monkeypatch, capsys, *args)
    assert code == 0, err
    (run_dir,) = [p for p in out.iterdir() if (p / "checkpoints.json").is_file()]

    # The record edited (by hand, a script, a bad merge) to name folders outside the run folder:
    # relative ones that climb out of results/parts, and an absolute one.
    victims = _sentinels(tmp_path)
    record = json.loads((run_dir / "checkpoints.json").read_text())
    record["../../../../victim-rel"] = "0" * 64
    record[str(victims[1])] = "0" * 64
    (run_dir / "checkpoints.json").write_text(json.dumps(record))
    before = _tree(tmp_path, out)
    code, err = _main(monkeypatch, capsys, *args)
    for victim in victims:
        assert (victim / "sub" / "precious.txt").read_text() == "keep me", victim
    assert _tree(tmp_path, out) == before
    assert code == 2, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "checkpoints.json" in lines[0] and "victim-rel" in lines[0], err
    # the finished work is still there
    assert len(read_results(run_dir / "results")) > 0

    # A changed file (which removes that checkpoint's own images) whose images folder is a
    # symlink out of the run folder: the link's target survives, the refusal is one line.
    images = run_dir / "images" / "mine-000001"
    images.rename(run_dir / "moved")
    images.symlink_to(victims[0], target_is_directory=True)
    del record["../../../../victim-rel"], record[str(victims[1])]
    (run_dir / "checkpoints.json").write_text(json.dumps({**record, "mine-000001": "1" * 64}))
    code, err = _main(monkeypatch, capsys, *args)
    assert code == 0, err
    assert (victims[0] / "sub" / "precious.txt").read_text() == "keep me"
    assert _tree(tmp_path, out) == before
    assert not images.is_symlink() and (images / "manifest.jsonl").is_file()


def test_item30_sweep_names_never_leave_out(tmp_path, monkeypatch, capsys):
    victims = _sentinels(tmp_path)
    escape_rel = "../../victim-rel"  # run folder <out>/runs/../../victim-rel-a before the fix
    escape_abs = str(victims[1])  # an absolute config name
    grid = tmp_path / "grid.toml"
    grid.write_text(
        f"""
[grid]
name = "hostile"
seeds = [23, 24]
seed_labels = ["a", "../../../victim-rel/sub"]
profile = "tiny"

[common]
epochs = 1
save_epochs = [1]
generate.images_per_leaf = 1
generate.steps = 2
generate.prompt_types = ["train"]
evaluate.encoders = ["dinov2-l@tiny"]
evaluate.metrics = ["image_similarity"]

[[config]]
name = "{escape_rel}"
trainer = "lora"

[[config]]
name = "{escape_abs}"
trainer = "lora"
"""
    )
    out = tmp_path / "out"
    before = _tree(tmp_path, out)
    code, err = _main(
        monkeypatch, capsys, "sweep", "--grid", str(grid), "--out", str(out), "--no-progress"
    )
    assert code == 0, err
    assert _tree(tmp_path, out) == before
    for victim in victims:
        assert [p.name for p in victim.rglob("*")] == ["sub", "precious.txt"], victim
    runs = sorted(p.name for p in (out / "runs").iterdir() if not p.name.startswith("."))
    assert len(runs) == 4 and all("/" not in r and not r.startswith(".") for r in runs)
    # the real names stay in the data
    df = read_results(out / "results")
    assert set(df["config"]) == {escape_rel, escape_abs, "base"}
    assert set(df["seed"]) - {""} == {"a", "../../../victim-rel/sub"}
    summary = json.loads((out / "sweep-summary.json").read_text())
    assert all(Path(o["run_dir"]).parent == out / "runs" for o in summary["outcomes"])


@pytest.mark.parametrize(
    "name", ["../x", "/abs/x", "..", ".hidden", "a/b", "ok-name"], ids=lambda n: n
)
def test_item30_run_names_are_leaf_names(name):
    from t2ibench.pipeline.sweep import run_name

    got = run_name(name, "a")
    assert "/" not in got and not got.startswith(".") and got not in ("", "..")
    assert (got == f"{name}-a") == (name == "ok-name")


@pytest.mark.parametrize("name", ["../x", "/abs/x", "..", "a/b", "ok-name"], ids=lambda n: n)
def test_item30_run_name_option_stays_under_out(name, tmp_path):
    """``t2ibench run --name`` (or ``name`` in a config) is the run folder's leaf name under
    ``--out``: a path-like name becomes a slug plus a hash, a plain one stays as given."""
    from t2ibench.pipeline.run import RunOptions, resolve

    out = tmp_path / "out"
    run_dir = resolve(RunOptions(out=str(out), name=name)).run_dir
    assert run_dir.parent == out and run_dir.name not in ("", ".", "..")
    assert (run_dir.name == name) == (name == "ok-name")
