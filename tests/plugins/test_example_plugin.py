"""The example plug-in package (tests/plugins/t2ibench_example_plugin), found through its entry
points exactly as an installed distribution would be: the test writes the ``.dist-info`` that
``pip install`` would (METADATA + entry_points.txt from its pyproject.toml) into a temporary folder
and puts that folder and the package's source on ``PYTHONPATH`` for a fresh interpreter."""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

PLUGIN = Path(__file__).resolve().parent / "t2ibench_example_plugin"
TRAINER_PLUGIN = Path(__file__).resolve().parent / "t2ibench_example_trainer"


def plugin_env(tmp_path: Path, *roots: Path) -> dict[str, str]:
    """Environment for a subprocess that sees each plug-in distribution in ``roots`` (default: the
    example plug-in) as installed: a ``.dist-info`` per distribution, and its source on the path."""
    site = tmp_path / "site"
    paths = [str(site)]
    for root in roots or (PLUGIN,):
        project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
        name = project["name"].replace("-", "_")
        dist = site / f"{name}-{project['version']}.dist-info"
        dist.mkdir(parents=True, exist_ok=True)
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
        )
        groups = [
            f"[{group}]\n" + "".join(f"{ep} = {target}\n" for ep, target in eps.items())
            for group, eps in project.get("entry-points", {}).items()
        ]
        (dist / "entry_points.txt").write_text("\n".join(groups))
        paths.append(str(root))
    paths.append(os.environ.get("PYTHONPATH", ""))
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def run_python(code: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def run_pythons(codes: dict[str, str], env: dict[str, str]) -> dict[str, str]:
    """What each of ``codes`` printed, each run in its own namespace of one fresh interpreter
    (a fresh Python with torch and transformers costs ~4 s of CPU: one per environment here)."""
    driver = (
        "import contextlib, io, json\n"
        f"out = {{}}\nfor name, code in {codes!r}.items():\n"
        "    buf = io.StringIO()\n"
        "    with contextlib.redirect_stdout(buf):\n"
        "        exec(code, {'__name__': '__main__'})\n"
        "    out[name] = buf.getvalue()\n"
        "print(json.dumps(out))"
    )
    return json.loads(run_python(driver, env).splitlines()[-1])


# What a fresh interpreter sees of the plug-in (below: with it installed and without it).
DOORS = (
    "import json; from t2ibench.metrics import list_metrics, get_metric, INPUT_PROVIDERS; "
    "from t2ibench.prompts import list_prompt_types; "
    "from t2ibench.encoders import list_encoders; "
    "m = list_metrics(); "
    "print(json.dumps({'metrics': m, 'criterion': get_metric('brightness').criterion, "
    "'inputs': INPUT_PROVIDERS.names(), 'prompt_types': list_prompt_types(), "
    "'encoders': list_encoders()}))"
)
COLOURS = [(255, 255, 255), (200, 100, 50), (0, 0, 0)]


def api_code(folder: Path) -> str:
    """``t2ibench.evaluate()`` on the three images of ``folder`` against its two references, from
    files and from in-memory images."""
    return (
        "import json, t2ibench; from PIL import Image; "
        f"ims = sorted(p for p in __import__('pathlib').Path({str(folder)!r}).glob('[0-9].png')); "
        f"ref = sorted(__import__('pathlib').Path({str(folder)!r}).glob('ref*.png')); "
        "a = t2ibench.evaluate(ims, ref, tiny=True); "
        "b = t2ibench.evaluate([Image.open(p) for p in ims], ref, tiny=True); "
        "print(json.dumps([a.to_dict('records'), b.to_dict('records')]))"
    )


@pytest.fixture(scope="module")
def api_images(tmp_path_factory) -> Path:
    from PIL import Image

    folder = tmp_path_factory.mktemp("api")
    for i, c in enumerate(COLOURS):
        Image.new("RGB", (40, 30), c).save(folder / f"{i}.png")
    for i, c in enumerate([(10, 200, 30), (90, 20, 160)]):
        Image.new("RGB", (40, 30), c).save(folder / f"ref{i}.png")
    return folder


@pytest.fixture(scope="module")
def with_plugin(tmp_path_factory, api_images) -> dict[str, str]:
    """The entry points and the in-process API, in one fresh interpreter with the plug-in."""
    env = plugin_env(tmp_path_factory.mktemp("plugin-env"))
    return run_pythons({"doors": DOORS, "api": api_code(api_images)}, env)


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory) -> Path:
    """The run folder of ``python -m t2ibench run --profile tiny`` with both example plug-ins."""
    tmp_path = tmp_path_factory.mktemp("plugin-run")
    out = tmp_path / "results"
    cmd = [
        sys.executable, "-m", "t2ibench", "run", "--trainer", "scaled-lora", "--set", "scale=2.5",
        "--profile", "tiny",
        "--no-progress", "--encoders", "clip-l14@tiny,mean-colour",
        "--prompt-types", "train,closeup", "--images-per-leaf", "2", "--steps", "2",
        "--epochs", "2", "--save-epochs", "1", "--save-epochs", "2", "--batch-size", "2", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(
        cmd,
        env=plugin_env(tmp_path, PLUGIN, TRAINER_PLUGIN),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return run_dir


@pytest.fixture(scope="module")
def bare(plugin_run, api_images) -> dict[str, str]:
    """The same codes in one fresh interpreter without the plug-in (the tests are not vacuous),
    and what ``absent_plugins`` says there of the plug-in run's table."""
    absent = (
        "from t2ibench.results import read_results, absent_plugins; "
        f"print(absent_plugins(read_results({str(plugin_run / 'results')!r})))"
    )
    codes = {
        "doors": DOORS.replace("get_metric('brightness').criterion", "''"),
        "api": api_code(api_images),
        "absent": absent,
    }
    return run_pythons(codes, {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")})


def test_entry_points_register_every_door(with_plugin, bare):
    got = json.loads(with_plugin["doors"].splitlines()[-1])
    assert "brightness" in got["metrics"] and got["criterion"] == "exposure"
    assert "pixels" in got["inputs"]
    assert "closeup" in got["prompt_types"] and "mean-colour" in got["encoders"]
    # Without the plug-in on the path none of it exists (the test is not vacuous).
    nothing = json.loads(bare["doors"].splitlines()[-1])
    assert "brightness" not in nothing["metrics"] and "closeup" not in nothing["prompt_types"]


def test_tiny_run_with_the_plugin(plugin_run, bare):
    """``t2ibench run --profile tiny`` with both example plug-ins installed: the third-party
    trainer trains with its own key and its checkpoints are re-applied for generation, the prompt
    type is generated, the encoder feeds the built-in metrics, the metric reads its own input kind,
    and all of them reach the results table and the report."""
    run_dir = plugin_run
    # Read the table as plain parquet: this process has no plug-in, so its registries would not
    # accept the new names (the schema checks them against the registries).
    df = pd.read_parquet(run_dir / "results" / "results.parquet")
    assert set(df["prompt_type"]) == {"train", "closeup"}
    assert set(df["checkpoint"]) == {"base", "scaled-lora-e000001", "scaled-lora-e000002"}
    tuned = df[df["checkpoint"] != "base"]
    assert set(tuned["scale"]) == {2.5}  # the trainer's own result column
    # Its checkpoints were applied for generation: tuned images differ from the base model's.
    tuned_pngs = sorted((run_dir / "images" / "scaled-lora-e000002").rglob("*.png"))
    assert tuned_pngs and any(
        p.read_bytes() != q.read_bytes()
        for p in tuned_pngs
        for q in (run_dir.parent / ".base-images").rglob(
            p.relative_to(run_dir / "images" / "scaled-lora-e000002").as_posix()
        )
    )
    bright = df[df["metric"] == "brightness"]
    assert set(bright["prompt_type"]) == {"train", "closeup"}
    assert set(bright["encoder"]) == {""} and bright["value"].between(0, 1).all()
    assert set(df.loc[df["encoder"] == "mean-colour", "metric"]) >= {"image_similarity", "vendi"}
    closeup = df[df["prompt_type"] == "closeup"]
    assert {"brightness", "image_similarity", "text_alignment"} <= set(closeup["metric"])
    report = (run_dir / "report" / "report.html").read_text()
    for name in ("brightness", "closeup", "exposure", "scaled-lora"):
        assert name in report, name
    # one run = one config: the report's raw view (rank tables need ≥ 3 configs)
    raw = pd.read_csv(run_dir / "report" / "raw_values.csv")
    assert {"mean-colour", ""} <= set(raw["encoder"].fillna(""))
    assert ((raw["metric"] == "brightness") & (raw["prompt_type"] == "closeup")).any()
    # Without the plug-in the table is still read: it records what its names mean (issue 18.4).
    absent = bare["absent"]
    assert "brightness" in absent and "closeup" in absent and "mean-colour" in absent


def test_the_in_process_api_computes_the_plugin_metric(with_plugin, bare):
    """Issue 18: ``t2ibench.evaluate()`` picked metrics by name and dropped plug-in metrics; it now
    computes through the engine, so the example plug-in's ``brightness`` (a metric on its own
    input kind, ``pixels``) is a row, with the built-in metrics (Vendi included) beside it — from
    files and from in-memory images alike."""
    a, b = json.loads(with_plugin["api"].splitlines()[-1])
    assert a == b  # paths and in-memory images give the same rows
    rows = pd.DataFrame(a)
    bright = rows[rows["metric"] == "brightness"]
    luma = [0.299 * r + 0.587 * g + 0.114 * b_ for r, g, b_ in COLOURS]
    assert len(bright) == 1 and bright["encoder"].item() == ""
    assert bright["value"].item() == pytest.approx(sum(luma) / 255 / 3, abs=1e-6)
    assert {"vendi", "image_similarity"} <= set(rows["metric"])
    # Without the plug-in installed there is no such row (the test is not vacuous).
    assert "brightness" not in bare["api"].splitlines()[-1]
