"""Test-wide settings: never touch the network, never use a GPU, keep runs deterministic.

Also the suite's shared, read-only session fixtures (one tiny run, one Ray instance) and how the
suite is spread over ``pytest -n 2`` workers (``--dist loadfile``, set in pyproject.toml):
each test file is one unit of work, so its module-scoped fixtures are built once; the files that
use one shared session fixture are one unit, so it is built once; units are handed out slowest
first. Without ``-n`` nothing is regrouped or reordered."""

import gc
import os
from dataclasses import dataclass
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

# Tiny models are overhead-bound: one thread is as fast on an idle machine and an order of
# magnitude faster on a loaded one (idle OpenMP workers spin); subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

# A full garbage collection walks every tracked object: ~0.3 s each in a test process that has
# imported torch, diffusers and transformers; at CPython's thresholds (700, 10, 10) full
# collections took 9.5 of 96 CPU s over three test files. At most one per 100 second-generation
# collections instead of 10: 4.6 s there, and the full-size checks' peak memory within 2 %
# (benchmarks/gc_threshold.py, benchmarks/results/gc_threshold_2026-12-08*.md).
gc.set_threshold(*map(int, os.environ.get("T2I_TEST_GC_THRESHOLD", "700,10,100").split(",")))

# --- shared session fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def t2ibench_cache(tmp_path_factory):
    """``T2IBENCH_CACHE`` for the whole session: a fresh folder, never the user's ~/.cache. The
    tiny base and tiny encoders are built there once (deterministically, from their seeds; each
    build lands atomically) and read by every test and subprocess of the session; a test that
    needs another cache sets its own. Under xdist the workers share one folder, and the first
    to arrive builds the tiny base while the others wait for it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        path = tmp_path_factory.mktemp("t2ibench-cache")
    else:  # the workers' basetemps are popen-gwN folders of one session folder
        path = tmp_path_factory.getbasetemp().parent / "t2ibench-cache"
        path.mkdir(exist_ok=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("T2IBENCH_CACHE", str(path))
    if worker is not None:
        from filelock import FileLock

        from t2ibench.models.loading import tiny_base_folder

        with FileLock(str(path / ".tiny-base.lock")):
            tiny_base_folder()
    yield path
    mp.undo()


TINY_RUN_ENCODERS = ["dinov2-l@tiny", "clip-l14@tiny", "vgg19@tiny"]
TINY_RUN = {
    "trainer": "lora",
    "evaluate.encoders": TINY_RUN_ENCODERS,
    "generate.images_per_leaf": 2,
    "generate.steps": 2,
    "trainer.epochs": 2,
    "trainer.save_epochs": [1, 2],
}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """(resolved options, run folder) of one finished tiny-profile run (LoRA, 2 epochs with a
    checkpoint each, 2 images per leaf and prompt type, every prompt type, three tiny encoders,
    analysed), made once per session. Tests only read it, or rerun the same options (which must
    redo nothing); a test that changes it makes its own run."""
    from t2ibench.pipeline.run import RunOptions, execute, resolve

    out = tmp_path_factory.mktemp("tiny-run") / "results"
    options = RunOptions(layers=[("test", TINY_RUN)], profile="tiny", out=str(out), progress=False)
    resolved = resolve(options)
    return resolved, execute(resolved)


@dataclass(frozen=True)
class RayCluster:
    ray: object  # the ray module, initialised
    cache: Path  # T2IBENCH_CACHE of its workers: a test's driver sets the same to share models


def _start_ray(ray, cache: Path) -> None:
    mp = pytest.MonkeyPatch()
    mp.setenv("T2IBENCH_CACHE", str(cache))
    mp.setenv("OMP_NUM_THREADS", "1")
    try:
        # "local": a new instance even if another one runs on this machine
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    finally:
        mp.undo()  # only the workers keep it; each test module sets what its driver needs


_RAY_STARTED: list[RayCluster] = []  # the session's instance, once a test has asked for it


@pytest.fixture(scope="session")
def ray_cluster(t2ibench_cache):
    """One local Ray instance (2 CPUs, no dashboard) for the session. Its workers inherit the
    environment at start: one OpenMP thread and the session's T2IBENCH_CACHE. It is shut down
    after the last test of the files that use it (its daemons and idle workers would otherwise
    take CPU from the other tests until the session ends), and started again if a later file
    needs it (without -n, files keep their collection order)."""
    ray = pytest.importorskip("ray")
    _start_ray(ray, t2ibench_cache)
    _RAY_STARTED.append(RayCluster(ray, t2ibench_cache))
    yield _RAY_STARTED[-1]
    ray.shutdown()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    if _RAY_STARTED and "ray_cluster" in item.fixturenames:
        cluster = _RAY_STARTED[-1]
        if not cluster.ray.is_initialized():
            _start_ray(cluster.ray, cluster.cache)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    if not _RAY_STARTED or "ray_cluster" not in item.fixturenames:
        return
    if nextitem is None or not _names_fixture(Path(nextitem.path), "ray_cluster"):
        _RAY_STARTED[-1].ray.shutdown()  # no-op when already down


@pytest.fixture
def full_size_folder(tmp_path):
    """A folder for a full-size check's random models (several GiB), removed when the test ends,
    passed or failed. The checks that take it are one unit of work (below): each holds 8–10 GiB
    of memory, so they run one after the other on one worker, never side by side."""
    import shutil

    folder = tmp_path / "full-size"
    folder.mkdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# --- spreading the suite over xdist workers -------------------------------------------------------
#
# `--dist loadfile` (pyproject.toml's addopts; inert without -n) makes each test file one unit of
# work, so a file's module-scoped fixtures are built once. Two additions here: the files that use
# one of these fixtures are one unit, so it is built once (and two Ray instances never compete for
# the 2 cores, two full-size checks never hold their 8-10 GiB side by side); units are handed out slowest first, so no worker is left with a long
# tail. A file "uses" a fixture when its source names it (the controller has no items to ask).
SHARED_FIXTURES = ("tiny_run", "ray_cluster", "full_size_folder")

# Seconds per file (the tests' durations summed per file, pytest --durations=0): this table is
# benchmarks/suite_time.sh's run of 79550e4 on 2026-12-07, an idle machine, `-n 2` (1,343 tests,
# 9 min 25 s). Only the order of the units depends on it; a file not listed counts as 0 s and
# keeps its collection order. benchmarks/suite_time.sh prints fresh numbers.
MEASURED_SECONDS = {
    "tests/slow/test_real_size.py": 190,
    "tests/pipeline/test_sweep_ray.py": 80,
    "tests/pipeline/test_shard_ray.py": 76,
    "tests/slow/test_real_size_bases.py": 59,
    "tests/analysis/test_report_browser.py": 53,
    "tests/test_reliability.py": 51,
    "tests/adapters/test_training.py": 32,
    "tests/plugins/test_example_plugin.py": 32,
    "tests/encoders/test_iqa_probes.py": 30,
    "tests/pipeline/test_adaptive.py": 28,
    "tests/adapters/test_export.py": 26,
    "tests/pipeline/test_run.py": 26,
    "tests/analysis/test_answer.py": 24,
    "tests/benchmarks/test_gpu_dry.py": 23,
    "tests/analysis/test_reference_results.py": 23,
    "tests/pipeline/test_evaluate_checkpoints.py": 22,
    "tests/adapters/test_methods_parity.py": 20,
    "tests/pipeline/test_outside_output.py": 18,
    "tests/pipeline/test_sweep.py": 17,
    "tests/adapters/test_methods_training.py": 15,
    "tests/plugins/test_example_trainer.py": 14,
    "tests/pipeline/test_generate.py": 14,
    "tests/test_api.py": 12,
    "tests/cli/test_core.py": 9,
    "tests/analysis/test_analyze.py": 9,
    "tests/adapters/test_methods_sizes.py": 9,
}


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


_SOURCES: dict[Path, str] = {}


def _names_fixture(path: Path, name: str) -> bool:
    """Whether the test file at ``path`` names fixture ``name`` in its source."""
    import re

    if path not in _SOURCES:
        try:
            _SOURCES[path] = path.read_text(encoding="utf-8")
        except OSError:
            _SOURCES[path] = ""
    return re.search(rf"\b{name}\b", _SOURCES[path]) is not None


def work_units(rootpath: Path, files) -> dict[str, str]:
    """Each test file's unit: the file itself, or for files sharing a fixture of
    ``SHARED_FIXTURES``, the first of them in ``files``' order."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for file in files:
        for name in SHARED_FIXTURES:
            if _names_fixture(rootpath / file, name):
                parent[find("fixture:" + name)] = find(file)
    first: dict[str, str] = {}
    for file in files:
        first.setdefault(find(file), file)
    return {file: first[find(file)] for file in files}


def ordered_by_unit(rootpath: Path, nodeids: list[str]) -> list[int]:
    """Indices of ``nodeids``: each unit's tests together, slowest unit first (stable)."""
    files = list(dict.fromkeys(_file_of(n) for n in nodeids))
    unit = work_units(rootpath, files)
    weight: dict[str, float] = {}
    for file in files:
        weight[unit[file]] = weight.get(unit[file], 0) + MEASURED_SECONDS.get(file, 0)
    rank = {u: k for k, u in enumerate(sorted(dict.fromkeys(unit[f] for f in files),
                                              key=lambda u: -weight[u]))}  # fmt: skip
    first = {file: k for k, file in enumerate(files)}  # a file's tests stay together too

    def key(k: int) -> tuple[int, int, int]:
        file = _file_of(nodeids[k])
        return rank[unit[file]], first[file], k

    return sorted(range(len(nodeids)), key=key)


def pytest_collection_modifyitems(config, items):
    """On an xdist worker: the order in which the controller (no reordering) hands out units."""
    if not hasattr(config, "workerinput") or config.workerinput.get("dist") != "loadfile":
        return
    order = ordered_by_unit(config.rootpath, [item.nodeid for item in items])
    items[:] = [items[k] for k in order]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` with the shared-fixture units above, in the workers' order."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedFixtureScheduling(LoadFileScheduling):
        def __init__(self, config, log=None):
            super().__init__(config, log)
            config.option.loadscopereorder = False  # the workers ordered the units already
            self._units: dict[str, str] = {}

        def _split_scope(self, nodeid: str) -> str:
            if not self._units and self.collection:
                files = list(dict.fromkeys(_file_of(n) for n in self.collection))
                self._units = work_units(config.rootpath, files)
            file = _file_of(nodeid)
            return self._units.get(file, file)

    return SharedFixtureScheduling(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """The controller's --dist for the workers (xdist resets theirs to "no")."""
    node.workerinput["dist"] = node.config.getvalue("dist")
