"""How commands come to be (issue 18 items 2 and 3): built-ins found in the ``t2ibench.cli``
package, plug-ins (the toy world among them) through the ``t2ibench.commands`` entry point, and the
``run`` options generated from the typed run config, each written once."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import typer.main

import t2ibench
from t2ibench.cli import app, command_modules
from t2ibench.cli._options import config_options, invocation_options
from t2ibench.runconfig import TRAINER_OPTIONS, Invocation, RunConfig

PACKAGE = Path(t2ibench.__file__).parent
MAX_LINES = 80


def _command(name: str):
    group = typer.main.get_command(app)
    return group.commands[name]


def _flags(name: str) -> dict[str, object]:
    """``--flag`` → click parameter of a command."""
    return {opt: p for p in _command(name).params for opt in [*p.opts, *p.secondary_opts]}


def test_builtins_are_found_not_listed():
    import t2ibench.cli as cli

    assert not hasattr(cli, "COMMAND_MODULES")
    found = command_modules()
    assert "t2ibench.cli.run" in found and "t2ibench.cli.checkpoints" in found
    assert not any(m.rsplit(".", 1)[1].startswith("_") for m in found)
    # the toy world is not a built-in: it comes through the entry point like any plug-in
    assert not any("toy" in m for m in found)
    assert {"toy", "toy-validity"} <= set(typer.main.get_command(app).commands)


def test_run_options_are_generated_from_the_run_config():
    flags = _flags("run")
    declared = [d.flag for d in config_options()] + [d.flag for d in invocation_options().values()]
    assert len(declared) == len(set(declared))  # no flag declared twice
    for d in config_options():
        assert d.flag in flags, d.flag
    for key in TRAINER_OPTIONS:
        assert "--" + key.replace("_", "-") in flags
    cli_fields = [
        k for k, f in Invocation.model_fields.items() if "cli" in (f.json_schema_extra or {})
    ]
    assert len(cli_fields) == len(Invocation.model_fields)
    assert "--set" in flags and "--no-progress" in _flags("run")
    # a field added to the config is an option without touching the CLI
    assert flags["--steps"].type_descriptor.annotation is int
    assert "(= --set generate.steps=...)" in flags["--steps"].help
    assert RunConfig.model_fields["base"].description in flags["--base"].help
    # no typer.Option is written in the run command's module
    tree = ast.parse((PACKAGE / "cli" / "run.py").read_text())
    options = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and n.attr in ("Option", "Argument")
    ]
    assert not options


def test_shared_options_are_the_same_option():
    """evaluate-checkpoints and sweep take --out, --device, --set ... from the same declaration:
    same type and default as run's (their help may narrow the meaning)."""
    run = _flags("run")
    for command in ("evaluate-checkpoints", "sweep"):
        other = _flags(command)
        shared = set(run) & set(other) - {"--help"}
        assert {"--out", "--device", "--dry-run", "--progress"} <= shared
        for flag in shared:
            kind = other[flag].type_descriptor.annotation, run[flag].type_descriptor.annotation
            if (command, flag) == ("sweep", "--base-path"):  # repeatable: one per base of a grid
                kind = (kind[0], list[kind[1]])
            assert kind[0] == kind[1], (command, flag)
            assert other[flag].default == run[flag].default, (command, flag)
    assert {"--set", "--metric-profile", "--profile", "--name"} <= set(
        _flags("evaluate-checkpoints")
    )


def test_a_plugin_command_registers_through_the_entry_point(tmp_path):
    (tmp_path / "hello_cmd.py").write_text(
        "import typer\n\n\ndef hello() -> None:\n    typer.echo('hello from a plug-in')\n\n\n"
        "def register(app):\n    app.command('hello')(hello)\n"
    )
    dist = tmp_path / "hello_cmd-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hello-cmd\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[t2ibench.commands]\nhello = hello_cmd\n")
    (tmp_path / "broken_cmd-0.1.dist-info").mkdir()
    (tmp_path / "broken_cmd-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: broken-cmd\nVersion: 0.1\n"
    )
    (tmp_path / "broken_cmd-0.1.dist-info" / "entry_points.txt").write_text(
        "[t2ibench.commands]\nbroken = no_such_module_here\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(PACKAGE.parent)])}
    out = subprocess.run(
        [sys.executable, "-m", "t2ibench", "hello"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hello from a plug-in"
    # a broken plug-in is named in a warning; the built-ins still work
    assert "broken" in out.stderr and "Traceback" not in out.stderr


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef):
            yield (
                f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}",
                (node.end_lineno - node.lineno + 1),
            )


def test_command_functions_and_execute_are_short():
    files = [
        *sorted((PACKAGE / "cli").glob("*.py")),
        PACKAGE / "toy" / "cli.py",
        PACKAGE / "toy" / "validity" / "cli.py",
    ]
    long = {where: n for f in files for where, n in _functions(f) if n >= MAX_LINES}
    assert not long, long
    (execute,) = [
        n for w, n in _functions(PACKAGE / "pipeline" / "run.py") if w.endswith(" _execute")
    ]
    assert execute < MAX_LINES


def test_protocol_and_its_deprecated_old_name(tmp_path, caplog):
    """ "Profile" means a run profile only: metric definitions are a protocol (``--protocol``);
    the old ``--metric-profile`` is still read, with a warning, and hidden from ``--help``."""
    from typer.testing import CliRunner

    from t2ibench.errors import ConfigError

    run = ["run", "--profile", "tiny", "--out", str(tmp_path), "--dry-run"]
    for flag in ("--protocol", "--metric-profile"):  # what the run cannot compute, either name
        res = CliRunner().invoke(app, [*run, flag, "dreambench-pp"])
        assert isinstance(res.exception, ConfigError), res.output
        assert "its own reference" in str(res.exception)
    assert "--metric-profile is deprecated; use --protocol" in caplog.text
    res = CliRunner().invoke(app, [*run, "--protocol", "dreambooth", "--metric-profile", "x"])
    assert isinstance(res.exception, ConfigError) and "old name of --protocol" in str(res.exception)
    for command in ("run", "evaluate", "evaluate-checkpoints"):
        assert "--protocol" in _flags(command) and _flags(command)["--metric-profile"].hidden
        shown = CliRunner().invoke(app, [command, "--help"], terminal_width=200).output
        assert "--protocol" in shown and "--metric-profile" not in shown
