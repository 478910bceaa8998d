"""The README is a door and the docs are its rooms: every ``t2ibench ...`` command shown in the
README or a ``docs/`` page names a real command (``t2ibench <cmd> [subcmd] --help`` succeeds) and
only options that command has; every docs page is linked from the README; every repository path
the README's tables name exists; the README stays short."""

from __future__ import annotations

import re
import shlex
from functools import cache
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
MAX_README_LINES = 250

# `t2ibench` as a word that starts a command: not `t2ibench.evaluate(`, `t2ibench/...`, `t2ibench[iqa]`
COMMAND = re.compile(r"(?<![\w./\-\[])t2ibench[ \t]+(?=[a-z\-])")
SHELL_FENCES = {"", "bash", "sh", "shell", "console"}
SHELL_ENDS = {"|", "||", "&&", ";", "&"}


def shown_commands(path: Path) -> list[tuple[int, str]]:
    """(line, text from ``t2ibench`` on) for each command in a shell block or an inline code span."""
    found: list[tuple[int, str]] = []
    fence: str | None = None
    pending, start = "", 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fence = None if fence is not None else line.lstrip()[3:].strip().lower()
            continue
        if fence is not None:
            if fence not in SHELL_FENCES:
                continue
            if not pending:
                start = number
            pending += line.rstrip()
            if pending.endswith("\\"):  # a continued command line
                pending = pending[:-1] + " "
                continue
            text, pending = pending, ""
            found += [(start, text[m.start() :]) for m in COMMAND.finditer(text)]
        else:
            for span in re.findall(r"`([^`]+)`", line):
                found += [(number, span[m.start() :]) for m in COMMAND.finditer(span)]
    return found


def cli_app():
    from t2ibench.cli import app

    return app


@cache
def root_command():  # typer's own click (typer._click), not the click package
    return typer.main.get_command(cli_app())


def resolve(text: str) -> tuple[list[str], object, list[str]]:
    """The command path (``["toy", "dataset"]``), its click command and the options shown."""
    try:
        tokens = shlex.split(text, comments=True)
    except ValueError as exc:
        raise AssertionError(f"{text!r} does not parse as a shell line: {exc}") from exc
    words = tokens[1:]
    for k, tok in enumerate(words):  # the command ends at a pipe, `&&`, `;` or a redirection
        if tok in SHELL_ENDS or tok.startswith((">", "2>", "<")):
            words = words[:k]
            break
    path: list[str] = []
    command = root_command()
    rest = words
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        name = rest[0]
        sub = command.commands.get(name)
        assert sub is not None, (
            f"{text!r}: `t2ibench {' '.join([*path, name])}` is not a command "
            f"(known: {', '.join(sorted(command.commands))})"
        )
        path.append(name)
        command, rest = sub, rest[1:]
    options = []
    for tok in rest:
        tok = tok.strip("[](),")
        if tok.startswith("-") and tok not in {"-", "--"} and not re.match(r"-\d", tok):
            options.append(tok.split("=", 1)[0])
    return path, command, options


def command_options(command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(param.opts)
        names.update(param.secondary_opts)
    return names


def all_shown() -> list[tuple[str, int, str]]:
    return [
        (str(p.relative_to(ROOT)), line, text)
        for p in [README, *PAGES]
        for line, text in shown_commands(p)
    ]


def test_the_docs_show_commands():
    """The extraction finds the README's everyday commands (a regex that matched nothing would pass
    the test below vacuously)."""
    readme = {" ".join(resolve(text)[0]) for _, text in shown_commands(README)}
    assert {"run", "evaluate", "evaluate-checkpoints", "analyze", "sweep"} <= readme
    assert len(all_shown()) > 40


@pytest.mark.parametrize(("where", "line", "text"), all_shown(), ids=lambda v: str(v)[:60])
def test_shown_command_parses(where, line, text):
    path, command, options = resolve(text)
    result = CliRunner().invoke(cli_app(), [*path, "--help"])
    assert result.exit_code == 0, (where, line, text, result.output)
    unknown = [o for o in options if o not in command_options(command)]
    assert not unknown, f"{where}:{line}: `t2ibench {' '.join(path)}` has no option {unknown}"


def test_resolve_rejects_what_the_cli_does_not_have():
    """The checks above can fail: an unknown command or option is caught."""
    with pytest.raises(AssertionError, match="is not a command"):
        resolve("t2ibench evalute DIR --out x")
    path, command, options = resolve("t2ibench evaluate DIR --outt x [--layout=dreambooth]")
    assert path == ["evaluate"] and options == ["--outt", "--layout"]
    assert "--outt" not in command_options(command) and "--layout" in command_options(command)
    path, _, options = resolve("t2ibench toy dataset DIR && t2ibench run --steps 3")
    assert path == ["toy", "dataset"] and options == []


def test_every_docs_page_is_linked_from_the_readme():
    text = README.read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", text))
    assert PAGES, "no docs pages"
    missing = [str(p.relative_to(ROOT)) for p in PAGES if str(p.relative_to(ROOT)) not in linked]
    assert not missing, f"docs pages not linked from the README: {missing}"
    assert all((ROOT / link).is_file() for link in linked), linked


def test_links_between_pages_resolve():
    """Relative links in the README and the docs lead to files that exist (and anchors to
    headings that exist, for links into docs pages)."""
    for page in [README, *PAGES]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("#"):
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve()
            assert dest.exists(), f"{page.name}: link to {target} leads nowhere"
            if anchor and dest.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", dest.read_text(encoding="utf-8"), re.M)
                slugs = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}
                assert anchor in slugs, f"{page.name}: no heading #{anchor} in {file}"


def test_paths_named_in_the_readme_exist():
    """The plug-in doors table's example files and tests, and every other path shown."""
    text = README.read_text(encoding="utf-8")
    paths = set(re.findall(r"`((?:tests|t2ibench|adapters|benchmarks|docs)/[^`\s]+\.(?:py|toml|md))`",
                           text))  # fmt: skip
    assert len(paths) > 10
    assert [p for p in sorted(paths) if not (ROOT / p).is_file()] == []


def test_ci_runs_the_readme_test_command():
    """`.ci/run` runs the README's second command's test step, word for word."""
    second = README.read_text(encoding="utf-8").split("```bash\n", 1)[1].splitlines()[1]
    test_command = second[second.index("HF_HUB_OFFLINE=1 python -m pytest") :]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_command in [line.strip() for line in ci], test_command


def test_readme_is_a_door():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"
