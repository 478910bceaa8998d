"""``t2ibench sweep``: grid files, every run resumable, one joint analysis."""

from pathlib import Path

import pytest

from t2ibench.errors import ConfigError
from t2ibench.pipeline.sweep import load_grid, run_sweep
from t2ibench.results import read_results
from t2ibench.testing import run_cli

GRID = """
[grid]
name = "mini"
seeds = [23]
seed_labels = ["a"]
profile = "tiny"

[common]
epochs = 2
save_epochs = [1, 2]
generate.images_per_leaf = 1
generate.steps = 2
generate.prompt_types = ["trigger", "train"]
evaluate.encoders = ["dinov2-l@tiny"]
evaluate.metrics = ["image_similarity", "vendi"]

[[config]]
name = "mini-lora"
trainer = "lora"

[[config]]
name = "mini-lora-lr2e-3"
trainer = "lora"
lr = 2e-3
"""


def test_shipped_grids_parse():
    paper = load_grid("paper")
    assert len(paper.configs) == 26 and paper.seed_labels == ["a", "b", "c"]
    assert {c["trainer"] for c in paper.configs} == {"lora", "loha", "lokr", "native"}
    toy = load_grid("toy")
    assert len(toy.configs) * len(toy.seeds) == 30
    assert len(list(load_grid("cpu").run_options(out="x", device="cpu"))) == 16


def test_bad_grid_names_the_key(tmp_path):
    bad = tmp_path / "g.toml"
    bad.write_text(GRID.replace('profile = "tiny"', 'profil = "tiny"'))
    with pytest.raises(ConfigError, match="profil"):
        load_grid(bad)
    bad.write_text(GRID.replace('name = "mini-lora-lr2e-3"', 'name = "mini-lora"'))
    with pytest.raises(ConfigError, match="repeats"):
        load_grid(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_grid(tmp_path / "nope.toml")


def test_sweep_runs_and_analyses(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(GRID)
    result = run_sweep(load_grid(path), out=tmp_path / "out", progress=False)
    report = result.report
    assert [(o.name, o.status) for o in result.outcomes] == [
        ("mini-lora-a", "done"),
        ("mini-lora-lr2e-3-a", "done"),
    ]
    df = read_results(tmp_path / "out" / "results")
    assert set(df["config"]) == {"mini-lora", "mini-lora-lr2e-3", "base"}
    # Both runs name their checkpoints lora-e000001/2: the joint table keeps all four, and the
    # base model (shared) once.
    assert sorted(df["checkpoint"].unique()) == [
        "base",
        "mini-lora-a/lora-e000001",
        "mini-lora-a/lora-e000002",
        "mini-lora-lr2e-3-a/lora-e000001",
        "mini-lora-lr2e-3-a/lora-e000002",
    ]
    assert set(df["seed"]) == {"a", ""}
    assert set(df["epoch"]) == {0, 1, 2}
    assert (report / "report.html").is_file()
    runs = sorted(
        p.name for p in (tmp_path / "out" / "runs").iterdir() if not p.name.startswith(".")
    )
    assert runs == ["mini-lora-a", "mini-lora-lr2e-3-a"]
    # both runs share one folder of base-model images
    assert len(list((tmp_path / "out" / "runs" / ".base-images").iterdir())) == 1


def test_toy_grid_runs_keep_their_names_and_settings():
    """The grids became override tables; each run keeps its name, seed and settings."""
    from t2ibench.adapters import get_trainer
    from t2ibench.runconfig import Layers

    runs = {o.name: o for o in load_grid("toy").run_options(out="x", device="cpu")}
    assert len(runs) == 30 and {"toy-lokrf4-b", "toy-nt-lr1e-4-a", "toy-lora32a16-a"} <= set(runs)
    layers = Layers()
    for where, table in runs["toy-lokrf4-b"].layers:
        layers.add_table(where, table)
    cfg = layers.run_config()
    tc = get_trainer(cfg.trainer_name).config(layers.trainer_sources())
    assert (cfg.base, cfg.dataset, cfg.generate.images_per_leaf) == ("toy", "toy-small", 16)
    assert (tc.trainer, tc.factor, tc.lr, tc.epochs, tc.save_epochs, tc.seed) == (
        "lokr",
        4,
        1e-3,
        9,
        (3, 6, 9),
        24,
    )
    assert runs["toy-lokrf4-b"].labels == {"config": "toy-lokrf4", "seed": "b"}
    paper = {o.name for o in load_grid("paper").run_options(out="x", device="cpu")}
    assert len(paper) == 78 and "exp-1035-sd15-nt-lr5e-7-c" in paper


def test_old_grid_format_says_what_changed(tmp_path):
    bad = tmp_path / "old.toml"
    bad.write_text('[grid]\nset = ["epochs=2"]\n[[config]]\nname = "a"\ntrainer = "lora"\n')
    with pytest.raises(
        ConfigError, match=r"grid.set: unknown key \(overrides go in the \[common\]"
    ):
        load_grid(bad)
    bad.write_text('[[config]]\nname = "a"\ntrainer = "lora"\ndimm = 3\n')
    with pytest.raises(ConfigError, match=r"config\[0\] \(a\): unknown key 'trainer.dimm'"):
        load_grid(bad)


def test_local_executor_never_imports_ray():
    """``--executor local`` (the default) must work without Ray: choosing executors, building the
    local one and the CLI import nothing of Ray."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import t2ibench.cli\n"
        "from t2ibench.pipeline.executors import EXECUTORS, get_executor\n"
        "assert {'local', 'ray'} <= set(EXECUTORS.names())\n"
        "get_executor('local')\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_executor_choice_errors_are_one_line(monkeypatch):
    import sys

    from t2ibench.errors import MissingExtraError
    from t2ibench.pipeline.executors import get_executor
    from t2ibench.registry import UnknownNameError

    with pytest.raises(UnknownNameError, match="unknown sweep executor 'slurm'.*Known: local, ray"):
        get_executor("slurm")
    with pytest.raises(ConfigError, match="--address: not an option of the 'local' executor"):
        get_executor("local", address="auto")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(MissingExtraError, match=r"pip install 't2ibench\[ray\]'"):
        get_executor("ray").check_storage(".")


def test_cli_sweep_reports_a_failed_run_and_goes_on(tmp_path):
    """A run whose loss becomes NaN: the other run finishes and is analysed, the summary and the
    console name the failed one, and the command ends with one error line (exit 2)."""
    import json

    path = tmp_path / "grid.toml"
    grid = GRID.replace("epochs = 2\nsave_epochs = [1, 2]", "epochs = 1\nsave_epochs = [1]")
    diverges = 'trainer = "lokr"\nlr = 1e30\nmax_grad_norm = 0'
    path.write_text(grid.replace('trainer = "lora"\nlr = 2e-3', diverges))
    done = run_cli("sweep", "--grid", path, "--no-progress", "--out", tmp_path / "out")
    assert done.returncode == 2, done.stderr[-3000:]
    assert "1 of 2 runs done" in done.stdout and "mini-lora-lr2e-3-a" in done.stdout
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "1 of 2 runs failed (mini-lora-lr2e-3-a)" in error[0], done.stderr
    summary = json.loads((tmp_path / "out" / "sweep-summary.json").read_text())
    assert [o["status"] for o in summary["outcomes"]] == ["done", "failed"]
    assert summary["outcomes"][1]["error"].startswith("TrainingDivergedError: ")
    assert (tmp_path / "out" / "report" / "report.html").is_file()


# --- issue 22 item 27 ------------------------------------------------------------------------------


def _sweep_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    import sys

    from t2ibench.cli import main

    monkeypatch.setattr(sys, "argv", ["t2ibench", "sweep", *args])
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    else:
        code = 0
    got = capsys.readouterr()
    return code, got.out, got.err


def test_item27_gpus_without_dry_run_is_refused(tmp_path, monkeypatch, capsys):
    code, _, err = _sweep_cli(
        # a grid that does not exist: refused for --gpus first (the old code failed on the grid)
        monkeypatch, capsys, "--grid", str(tmp_path / "no.toml"), "--gpus", "4", "--out",
        str(tmp_path / "o"),
    )  # fmt: skip
    assert code == 2 and err.strip() == (
        "error: --gpus: only with --dry-run (it projects the makespan on N GPUs)"
    )
    assert not (tmp_path / "o").exists()


def test_item27_sweep_help_names_the_ray_extra():
    from typer.testing import CliRunner

    from t2ibench.cli import app

    out = CliRunner().invoke(app, ["sweep", "--help"], env={"COLUMNS": "300"}).output
    assert "pip install 't2ibench[ray]'" in out


def test_item27_one_gpu_is_singular():
    from t2ibench.pipeline.plan import render_schedule, sweep_plan

    text = "\n".join(render_schedule(sweep_plan(load_grid("cpu"), gpus=1)["schedule"]))
    assert "up to 1 GPU " in text and "1 GPUs" not in text


def test_item27_live_view_never_shows_more_running_than_slots(tmp_path):
    from t2ibench.pipeline.executors import SweepProgress

    view = SweepProgress(4, tmp_path, enabled=False, slots=2)
    view.set_running({"a", "b", "c"})  # a killed worker's status lingers until its retry starts
    assert len(view.running) == 2


def _read_only(folder):
    """``folder`` as a read-only file system (a tmpfs mounted ro), or skip where mount is denied."""
    import subprocess

    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip("needs mount (root)")


def test_item27_read_only_out_says_nothing_was_done(tmp_path, monkeypatch, capsys):
    import subprocess

    out = tmp_path / "ro"
    path = tmp_path / "grid.toml"
    path.write_text(GRID)
    _read_only(out)
    try:
        code, stdout, err = _sweep_cli(monkeypatch, capsys, "--grid", str(path), "--out", str(out))
    finally:
        subprocess.run(["umount", str(out)], check=True)
    errors = [x for x in err.splitlines() if x.startswith("error:")]
    assert code == 2 and len(errors) == 1, err
    assert "cannot write there" in errors[0] and "nothing was done" in errors[0]
    assert "kept" not in err + stdout


# --- issue 19 item 6: a grid across bases, --base-path ---------------------------------------------

MIXED = GRID.replace(
    '[[config]]\nname = "mini-lora"\ntrainer = "lora"',
    '[[config]]\nname = "mini-lora"\ntrainer = "lora"\nbase = "flux"',
).replace(
    'name = "mini-lora-lr2e-3"\ntrainer = "lora"',
    'name = "mini-lora-lr2e-3"\ntrainer = "lora"\nbase = "tiny"',
)


@pytest.fixture(scope="module")
def toy_folders():
    """The shipped toy bases' folders: a FLUX-class one and a UNet (SD1.5-class) one."""
    from t2ibench.profiles import resolve_named

    return Path(resolve_named("base", "toy-flux")), Path(resolve_named("base", "toy"))


def _base_of(opts):
    """The base model a run of ``opts`` loads: its layers as ``resolve`` stacks them, then the
    run's own ``base_spec`` (which checks the files' architecture; no model is loaded)."""
    from t2ibench.pipeline.run import base_spec
    from t2ibench.runconfig import Layers

    layers = Layers()
    for where, table in opts.layers:
        layers.add_table(where, table)
    return base_spec(layers.run_config())


def test_grid_mixes_bases_with_a_bases_table_and_base_path(tmp_path, toy_folders):
    from t2ibench.pipeline.sweep import parse_base_paths

    flux, unet = toy_folders
    path = tmp_path / "grid.toml"
    path.write_text(MIXED + f'\n[bases]\nflux = "{flux}"\n')
    g = load_grid(path)
    first, tiny = g.run_options(out=tmp_path / "out", device="cpu")
    # the FLUX config's run gets the table's files, checked to be FLUX by the run itself
    assert _base_of(first) == str(flux)
    assert _base_of(tiny) not in (str(flux), str(unet))  # the tiny base, as before
    # --base-path NAME=DIR beats the table; a bare DIR is for the runs without an entry
    other = tmp_path / "elsewhere"
    paths = parse_base_paths([f"flux={other}"], g)
    first, second = g.run_options(out=tmp_path, device="cpu", base_path=paths)
    assert dict(first.layers)["t2ibench sweep"]["base_path"] == str(other)
    assert "base_path" not in dict(second.layers)["t2ibench sweep"]
    assert parse_base_paths([str(other)], g) == {"": str(other)}
    with pytest.raises(ConfigError, match="no config of grid 'mini' has base 'sdxl'"):
        parse_base_paths([f"sdxl={flux}"], g)
    with pytest.raises(ConfigError, match="given twice"):
        parse_base_paths(["a", "b"], g)


def test_sweep_base_path_cli_checks_files_before_any_run(
    tmp_path, toy_folders, monkeypatch, capsys
):
    from t2ibench.errors import T2IBenchError
    from t2ibench.pipeline.sweep import parse_base_paths

    flux, unet = toy_folders
    path = tmp_path / "grid.toml"
    path.write_text(MIXED)
    out = tmp_path / "out"
    # no files for the flux config: one line naming it and how to give them, nothing run
    code, _, err = _sweep_cli(monkeypatch, capsys, "--grid", str(path), "--out", str(out))
    assert code == 2
    assert "config 'mini-lora': base 'flux' is an architecture" in err
    assert "--base-path flux=DIR" in err and not out.exists()
    # the files of another architecture: refused before any run, naming both
    code, _, err = _sweep_cli(monkeypatch, capsys, "--grid", str(path), "--out", str(out),
                              "--base-path", f"flux={unet}")  # fmt: skip
    assert code == 2 and "--base flux expects FLUX.1 but this is" in err
    assert not out.exists()
    # and a run resolved alone checks the same
    g = load_grid(path)
    opts = next(iter(g.run_options(out=out, device="cpu",
                                   base_path=parse_base_paths([f"flux={unet}"], g))))  # fmt: skip
    with pytest.raises(T2IBenchError, match="--base flux expects FLUX.1 but this is"):
        _base_of(opts)
