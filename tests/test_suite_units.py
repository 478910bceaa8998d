"""How ``pytest -n 2`` spreads the suite (tests/conftest.py): the files sharing a session fixture
are one unit of work (one worker, the fixture built once), units go slowest first."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# by path: `import conftest` may find another folder's conftest.py
_spec = importlib.util.spec_from_file_location("suite_conftest", ROOT / "tests" / "conftest.py")
conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(conftest)


def test_files_sharing_a_session_fixture_are_one_unit(tmp_path):
    for name, text in {
        "a.py": "def test_a(): pass\n",
        "b.py": "def test_b(tiny_run): pass\n",
        "c.py": "@pytest.fixture\ndef f(ray_cluster): ...\n",
        "d.py": "def test_d(tiny_run, ray_cluster): pass\n",  # joins both units into one
        "e.py": "def test_e(ray_cluster): pass\n",
        "f.py": "def test_f(): pass\n",
    }.items():
        (tmp_path / name).write_text(text)
    units = conftest.work_units(tmp_path, ["a.py", "b.py", "c.py", "d.py", "e.py", "f.py"])
    assert units == {"a.py": "a.py", "b.py": "b.py", "c.py": "b.py", "d.py": "b.py",
                     "e.py": "b.py", "f.py": "f.py"}  # fmt: skip
    units = conftest.work_units(tmp_path, ["a.py", "b.py", "e.py"])
    assert units == {"a.py": "a.py", "b.py": "b.py", "e.py": "e.py"}


def test_the_suite_s_shared_fixtures_group_their_files():
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py"))
    units = conftest.work_units(ROOT, files)
    ray = {f for f in files if units[f] == units["tests/pipeline/test_shard_ray.py"]}
    assert {"tests/pipeline/test_shard_ray.py", "tests/pipeline/test_sweep_ray.py"} <= ray
    run = {f for f in files if units[f] == units["tests/pipeline/test_run.py"]}
    assert {"tests/pipeline/test_run.py", "tests/analysis/test_report_browser.py"} <= run


def test_units_slowest_first_tests_of_a_unit_together(monkeypatch, tmp_path):
    for name in ("a.py", "b.py", "c.py"):
        (tmp_path / name).write_text("def test(): pass\n")
    (tmp_path / "d.py").write_text("def test(tiny_run): pass\n")
    (tmp_path / "e.py").write_text("# tiny_run\n")
    monkeypatch.setattr(conftest, "MEASURED_SECONDS", {"c.py": 5, "d.py": 2, "e.py": 4})
    ids = ["a.py::x", "d.py::x", "b.py::x", "c.py::x", "e.py::x", "a.py::y", "d.py::y"]
    order = [ids[k] for k in conftest.ordered_by_unit(tmp_path, ids)]
    # d + e (6 s) before c (5 s); a and b (0 s) keep their order
    assert order == ["d.py::x", "d.py::y", "e.py::x", "c.py::x", "a.py::x", "a.py::y", "b.py::x"]


def test_the_configured_dist_mode_is_the_one_the_hooks_act_on():
    """pyproject's addopts once said ``--dist loadgroup`` while the hooks acted on ``loadfile``
    only: nothing was grouped and a file's module fixtures were built on both workers."""
    import re
    import tomllib

    opts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    (mode,) = re.findall(r"--dist[ =](\w+)", opts["addopts"])
    source = (ROOT / "tests" / "conftest.py").read_text()
    assert f'!= "{mode}"' in source, mode  # both hooks compare against this mode
    assert source.count(f'!= "{mode}"') == 2


def test_test_file_names_are_unique():
    """Test folders are not packages: two files of one name stop collection ("import file
    mismatch"), as tests/bases/test_flux.py and tests/toy/test_flux.py once did."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_ray_is_shut_down_after_the_files_that_use_it_and_started_again_if_needed(
    tmp_path, monkeypatch
):
    """The session's Ray instance stops when the next test's file does not use it (its daemons
    and idle workers took CPU from the rest of the suite), and starts again for a later user."""
    from types import SimpleNamespace

    for name, text in {"r1.py": "def test(ray_cluster): ...\n", "r2.py": "# ray_cluster\n",
                       "o.py": "def test(): ...\n"}.items():  # fmt: skip
        (tmp_path / name).write_text(text)

    class FakeRay:
        up, starts = True, 0

        def is_initialized(self):
            return self.up

        def init(self, **kwargs):
            self.up, self.starts = True, self.starts + 1

        def shutdown(self):
            self.up = False

    ray = FakeRay()
    monkeypatch.setattr(conftest, "_RAY_STARTED", [conftest.RayCluster(ray, tmp_path)])

    def item(file, uses):
        return SimpleNamespace(path=tmp_path / file, fixturenames=["ray_cluster"] if uses else [])

    def hook(fn, *args):
        gen = fn(*args)
        next(gen)
        try:
            gen.send(None)
        except StopIteration:
            pass

    r1, r1b, r2, other = item("r1.py", True), item("r1.py", False), item("r2.py", True), item("o.py", False)  # fmt: skip
    hook(conftest.pytest_runtest_teardown, r1, r1b)  # same file: stays up
    hook(conftest.pytest_runtest_teardown, r1, r2)  # next file names it: stays up
    assert ray.up
    hook(conftest.pytest_runtest_teardown, r2, other)
    assert not ray.up
    hook(conftest.pytest_runtest_setup, other)
    assert not ray.up and ray.starts == 0
    hook(conftest.pytest_runtest_setup, r1)
    assert ray.up and ray.starts == 1
    hook(conftest.pytest_runtest_teardown, r1, None)  # the session's last test
    assert not ray.up
