"""``t2ibench sweep --executor ray`` on a local Ray instance (2 CPUs, no GPU) started here: the
same results as ``--executor local``, a failing run that does not stop the others, a Ray worker
SIGKILLed mid-generation then the same sweep again, and a node that cannot see ``--out``."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from t2ibench.pipeline.executors import StorageError  # noqa: E402
from t2ibench.pipeline.executors.ray import RayExecutor, probe_storage  # noqa: E402
from t2ibench.pipeline.sweep import load_grid, run_sweep  # noqa: E402
from t2ibench.results import read_results  # noqa: E402

COMMON = """
[grid]
name = "mini"
seeds = [23]
seed_labels = ["a"]
profile = "tiny"

[common]
epochs = 1
save_epochs = [1]
generate.steps = 2
evaluate.encoders = ["dinov2-l@tiny"]
evaluate.metrics = ["image_similarity", "vendi"]
"""

# Two good configs and one whose loss becomes NaN in its first steps (a real divergence).
GRID = (
    COMMON
    + """
generate.images_per_leaf = 1
generate.prompt_types = ["trigger", "train"]

[[config]]
name = "mini-lora"
trainer = "lora"

[[config]]
name = "mini-nan"
trainer = "lokr"
lr = 1e30
max_grad_norm = 0

[[config]]
name = "mini-lora-lr2e-3"
trainer = "lora"
lr = 2e-3
"""
)


@pytest.fixture(scope="module")
def ray_instance(ray_cluster):
    """The session's Ray instance (tests/conftest.py); the local runs share its models cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("T2IBENCH_CACHE", str(ray_cluster.cache))
    yield
    mp.undo()


def _grid(tmp_path, text, name="grid.toml"):
    path = tmp_path / name
    path.write_text(text)
    return load_grid(path)


def _table(out):
    df = read_results(out / "results")
    keys = [c for c in ("checkpoint", "leaf", "prompt_type", "metric", "encoder", "resize")]
    return df.sort_values(keys).reset_index(drop=True)


def _base_images_lock(grid, out):
    """The lock of the base model's images folder that every run of ``grid`` shares."""
    from t2ibench.pipeline.generate import LOCK_NAME
    from t2ibench.pipeline.run import resolve, shared_base_images
    from t2ibench.prompts import jobs_for

    r = resolve(next(grid.run_options(out=out, device="cpu")))
    folder = shared_base_images(r, jobs_for(r.dataset, r.prompt_types, r.images_per_leaf))
    folder.mkdir(parents=True)
    return folder / LOCK_NAME


@pytest.fixture(scope="module")
def grid_sweeps(tmp_path_factory, ray_instance):
    """GRID swept once with each executor, this process on 2 torch threads as a user's would be
    on a 2-core machine (not the 1-thread pin of tests/conftest.py, under which the executors'
    difference cannot show): the outcomes, tables and images two tests check. Also the number of
    threads the local sweep left this process."""
    import torch
    from filelock import FileLock

    tmp_path = tmp_path_factory.mktemp("grid_sweeps")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grid = _grid(tmp_path, GRID)
        results = {"local": run_sweep(grid, out=tmp_path / "local", progress=False)}
        threads_after_local = torch.get_num_threads()

        # The runs share one folder of base-model images; while another process writes it (the
        # lock held here until both good runs have trained), runs wait for it instead of failing.
        lock = FileLock(str(_base_images_lock(grid, tmp_path / "ray")))
        lock.acquire()
        thread = threading.Thread(
            target=lambda: results.__setitem__(
                "ray",
                run_sweep(grid, out=tmp_path / "ray", progress=False, executor=RayExecutor()),
            )
        )
        thread.start()
        try:
            trained = [tmp_path / "ray" / "runs" / f"{n}-a" / "checkpoints" / "lora-e000001.safetensors"
                       for n in ("mini-lora", "mini-lora-lr2e-3")]  # fmt: skip
            deadline = time.time() + 300
            while not all(p.is_file() for p in trained):
                assert thread.is_alive() and time.time() < deadline, "the runs never trained"
                time.sleep(0.2)
            time.sleep(2)  # both now wait on the lock
        finally:
            lock.release()
        thread.join(timeout=300)
    finally:
        torch.set_num_threads(before)
    return tmp_path, results, threads_after_local


def test_ray_equals_local_and_a_failed_run_does_not_stop_the_others(grid_sweeps):
    tmp_path, results, _ = grid_sweeps
    assert set(results) == {"local", "ray"}
    for name, got in results.items():
        out = tmp_path / name
        assert [(o.name, o.status) for o in got.outcomes] == [
            ("mini-lora-a", "done"),
            ("mini-nan-a", "failed"),
            ("mini-lora-lr2e-3-a", "done"),
        ], (name, got.outcomes)
        assert "TrainingDivergedError" in got.outcomes[1].error
        summary = json.loads((out / "sweep-summary.json").read_text())
        assert (summary["executor"], summary["done"], summary["failed"]) == (name, 2, 1)
        assert "TrainingDivergedError" in summary["outcomes"][1]["error"]
        assert (got.report / "report.html").is_file()
    # The ray runs went through Ray workers, not this process.
    assert str(os.getpid()) not in {o.where.split(":")[1] for o in results["ray"].outcomes}
    local, remote = _table(tmp_path / "local"), _table(tmp_path / "ray")
    assert set(local["config"]) == {"mini-lora", "mini-lora-lr2e-3", "base"}
    assert list(local.columns) == list(remote.columns)
    import pandas as pd

    pd.testing.assert_frame_equal(local, remote, check_exact=True)


KILL_GRID = (
    COMMON
    + """
generate.images_per_leaf = 2
generate.batch_size = 1
generate.prompt_types = ["trigger", "train"]

[[config]]
name = "kill-lora"
trainer = "lora"
"""
)


def test_sigkill_a_ray_worker_mid_generation_then_rerun(tmp_path, ray_instance):
    """A real SIGKILL to the Ray worker running a run, mid-generation; the run is reported
    failed (no retries here); the same sweep again finishes it, redoing nothing finished."""
    grid = _grid(tmp_path, KILL_GRID)
    out = tmp_path / "out"
    first = {}

    def sweep():
        first["result"] = run_sweep(
            grid, out=out, progress=False, executor=RayExecutor(max_retries=0)
        )

    thread = threading.Thread(target=sweep)
    thread.start()
    status = out / ".sweep" / "runs" / "kill-lora-a.json"
    manifest = out / "runs" / "kill-lora-a" / "images" / "lora-e000001" / "manifest.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:
        if manifest.is_file() and len(manifest.read_text().splitlines()) >= 5:
            break
        assert thread.is_alive(), f"the sweep ended before it could be killed: {first}"
        time.sleep(0.05)
    else:
        pytest.fail("generation never started")
    pid = json.loads(status.read_text())["pid"]
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=120)
    outcome = first["result"].outcomes[0]
    assert outcome.status == "failed" and "worker lost" in outcome.error, outcome
    assert first["result"].report is None  # nothing finished: no joint analysis yet

    images = manifest.parent
    done_before = [
        json.loads(line)["file"] for line in manifest.read_text().splitlines() if line.endswith("}")
    ]
    assert done_before
    mtimes = {f: (images / f).stat().st_mtime_ns for f in done_before}

    # The same command again, through the CLI, with the sweep's live view on.
    from typer.testing import CliRunner

    from t2ibench.cli import app

    again = CliRunner().invoke(
        app, ["sweep", "--grid", grid.source, "--out", str(out), "--executor", "ray"]
    )
    assert again.exit_code == 0, (again.output, again.exception)
    assert "1 of 1 runs done" in again.output
    n_images = len(list(images.rglob("*.png"))) + len(
        list((out / "runs" / ".base-images").rglob("*.png"))
    )
    assert f"done 1, running 0, failed 0, images {n_images}" in again.output
    files = [json.loads(line)["file"] for line in manifest.read_text().splitlines()]
    assert len(files) == len(set(files)), "a manifest line was duplicated"
    assert len(list(images.rglob("*.png"))) == len(files)
    leftovers = [p.name for p in images.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers in ([], [".generate.lock"]), leftovers
    for f, mtime in mtimes.items():
        assert (images / f).stat().st_mtime_ns == mtime, f"{f} was redone"
    df = read_results(out / "results")
    assert not df.duplicated(
        ["checkpoint", "leaf", "prompt_type", "metric", "encoder", "resize"]
    ).any()
    assert set(df["checkpoint"]) == {"base", "kill-lora-a/lora-e000001"}


def test_probe_names_what_a_node_cannot_see(tmp_path):
    assert "is not there" in probe_storage(str(tmp_path), "t0k3n", "node1")
    (tmp_path / ".sweep").mkdir()
    (tmp_path / ".sweep" / "storage-t0k3n").write_text("t0k3n")
    assert probe_storage(str(tmp_path), "t0k3n", "node1") == ""
    assert (tmp_path / ".sweep" / "storage-t0k3n-node1").read_text() == "t0k3n"


def _can_hide_a_folder() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs none /mnt"], capture_output=True
    )
    return probe.returncode == 0


def _alive():
    return {n["NodeID"] for n in ray.nodes() if n["Alive"]}


@pytest.mark.skipif(not _can_hide_a_folder(), reason="needs unshare -m and mount (root)")
def test_a_node_that_cannot_see_out_stops_the_sweep(tmp_path, ray_instance):
    """A second real Ray node joins from a mount namespace where ``--out`` is an empty tmpfs
    (as a node without the shared filesystem mounted would see it)."""
    out = tmp_path / "out"
    out.mkdir()
    before = _alive()
    gcs = ray.get_runtime_context().gcs_address
    script = (
        f"mount -t tmpfs none '{out}' && exec '{sys.executable}' -m ray.scripts.scripts start "
        f"--address={gcs} --num-cpus=0 --block"
    )
    node = subprocess.Popen(
        ["unshare", "-m", "sh", "-c", script],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while len(_alive() - before) < 1:
            assert node.poll() is None, node.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the second node never joined"
            time.sleep(0.5)
        blind = (_alive() - before).pop()
        with pytest.raises(StorageError) as err:
            RayExecutor().check_storage(out)
        message = str(err.value)
        assert f"--out {out}: not visible from Ray node" in message
        assert f"id {blind[:12]}" in message and "is not there" in message
        assert "\n" not in message
    finally:
        os.killpg(node.pid, signal.SIGTERM)
        node.wait(timeout=60)
        # `ray start` records this cluster for later bare ray.init() calls on the machine: forget it
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if current.is_file() and current.read_text().strip() == gcs:
            current.unlink()
        deadline = time.time() + 60
        while _alive() - before and time.time() < deadline:
            time.sleep(0.5)
    assert not _alive() - before, "the second node is still alive"
    RayExecutor().check_storage(out)  # the one node left sees it


def test_runs_no_node_can_hold_stop_before_scheduling(tmp_path, ray_instance):
    """--device cuda on a cluster without GPUs would leave every run pending forever."""
    from t2ibench.errors import T2IBenchError

    grid = _grid(tmp_path, KILL_GRID)
    with pytest.raises(T2IBenchError, match=r"--device cuda: each run asks for 1 CPU and 1 GPU"):
        run_sweep(grid, out=tmp_path / "out", device="cuda", executor=RayExecutor())
    assert not (tmp_path / "out" / "runs").exists()


# --- issue 22 --------------------------------------------------------------------------------------

EQUAL_GRID = (
    COMMON
    + """
generate.images_per_leaf = 2
generate.prompt_types = ["trigger", "train"]

[[config]]
name = "eq-lora"
trainer = "lora"
"""
)


def _pngs(out: Path) -> dict[str, str]:
    import hashlib

    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((out / "runs").rglob("*.png"))
    }


def test_item23_ray_sweep_equals_local_image_for_image_without_thread_pin(grid_sweeps):
    """Swept with this process on 2 threads (``grid_sweeps``): every image of the Ray sweep equal
    to the local sweep's, byte for byte, and both sweeps ran each run on its 1 CPU's thread."""
    import pandas as pd

    tmp_path, _, threads_after_local = grid_sweeps
    assert threads_after_local == 2  # the local executor gave the process its threads back
    local, remote = _pngs(tmp_path / "local"), _pngs(tmp_path / "ray")
    assert len(local) >= 8 and local.keys() == remote.keys()
    differ = [k for k in local if local[k] != remote[k]]
    assert not differ, f"{len(differ)} of {len(local)} images differ, e.g. {differ[:3]}"
    pd.testing.assert_frame_equal(_table(tmp_path / "local"), _table(tmp_path / "ray"),
                                  check_exact=True)  # fmt: skip
    for name in ("local", "ray"):
        summary = json.loads((tmp_path / name / "sweep-summary.json").read_text())
        assert summary["cpus_per_run"] == 1


def test_item26_sharding_in_a_ray_sweep_refused_once_before_scheduling(tmp_path, ray_instance):
    from t2ibench.errors import ConfigError

    text = EQUAL_GRID.replace("generate.images_per_leaf = 2", "generate.workers = 2")
    text += '\n[[config]]\nname = "eq-lora-2"\ntrainer = "lora"\nevaluate.workers = 2\n'
    grid = _grid(tmp_path, text)
    start = time.time()
    with pytest.raises(ConfigError) as err:
        run_sweep(grid, out=tmp_path / "out", progress=False, executor=RayExecutor())
    message = str(err.value)
    assert "eq-lora-a (generate.workers = 2)" in message and "eq-lora-2-a" in message
    assert "\n" not in message and "workers = 1" in message
    assert time.time() - start < 20 and not (tmp_path / "out" / "runs").exists()


def test_item27_retried_worker_leaves_a_trace(tmp_path, ray_instance, caplog):
    """A worker SIGKILLed mid-generation with a retry left: the run finishes on the retry, and the
    console (log) and the summary say which worker was lost; the live view's slots are the
    cluster's (2 CPUs, 1 per run)."""
    import logging

    grid = _grid(tmp_path, KILL_GRID)
    out = tmp_path / "out"
    result = {}
    executor = RayExecutor(max_retries=1, poll_s=0.2)

    def sweep():
        from t2ibench.pipeline.executors import SweepProgress

        real = SweepProgress.__init__

        def keep(self, *a, **k):
            real(self, *a, **k)
            result["view"] = self

        SweepProgress.__init__ = keep
        try:
            result["sweep"] = run_sweep(grid, out=out, progress=False, executor=executor)
        finally:
            SweepProgress.__init__ = real

    status = out / ".sweep" / "runs" / "kill-lora-a.json"
    manifest = out / "runs" / "kill-lora-a" / "images" / "lora-e000001" / "manifest.jsonl"
    with caplog.at_level(logging.WARNING, logger="t2ibench.sweep"):
        thread = threading.Thread(target=sweep)
        thread.start()
        deadline = time.time() + 300
        while not (manifest.is_file() and len(manifest.read_text().splitlines()) >= 3):
            assert thread.is_alive() and time.time() < deadline, f"never generated: {result}"
            time.sleep(0.05)
        killed = json.loads(status.read_text())
        os.kill(killed["pid"], signal.SIGKILL)
        thread.join(timeout=400)
    (outcome,) = result["sweep"].outcomes
    lost = f"{killed['host']}:{killed['pid']}"
    assert outcome.status == "done" and outcome.retried_after == [lost], outcome
    assert outcome.where and outcome.where != lost
    summary = json.loads((out / "sweep-summary.json").read_text())
    assert summary["retried"] == ["kill-lora-a"]
    assert summary["outcomes"][0]["retried_after"] == [lost]
    assert f"its worker {lost} was lost" in caplog.text and "retry 1 of 1" in caplog.text
    assert result["view"].slots == 2


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli_sweep(tmp_path, *args, env=None):
    grid = tmp_path / "g.toml"
    grid.write_text(EQUAL_GRID)
    cmd = [sys.executable, "-m", "t2ibench", "sweep", "--grid", str(grid), "--out",
           str(tmp_path / "out"), "--no-progress", "--executor", "ray", *args]  # fmt: skip
    start = time.time()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=150, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"sweep {' '.join(args)} still waiting after 150 s")
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return errors[0], time.time() - start


def test_item24_address_with_nothing_listening_is_one_line_at_once(tmp_path):
    port = _free_port()
    line, seconds = _cli_sweep(tmp_path, "--address", f"127.0.0.1:{port}")
    assert f"nothing answers at 127.0.0.1:{port}" in line and "ray start --head" in line
    assert seconds < 60  # Python and the CLI's imports; the connect check itself is ≤ 5 s
    assert not (tmp_path / "out" / "runs").exists()


def test_item25_token_auth_refusal_names_the_cause_and_the_fix(tmp_path):
    """A head started as Ray 2.5x starts it once ~/.ray/auth_token exists (token auth on), and a
    driver without RAY_AUTH_MODE=token: the error names token auth and the fix."""
    home = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))  # short: Ray's socket paths
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(home)
    head_env = {**env, "RAY_AUTH_MODE": "token"}
    subprocess.run([*ray_cli, "get-auth-token", "--generate"], env=head_env, check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    assert (home / ".ray" / "auth_token").is_file()
    port = _free_port()
    ports = ["--port", str(port)]
    for flag in ("--ray-client-server-port", "--dashboard-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--metrics-export-port", "--node-manager-port",
                 "--object-manager-port", "--runtime-env-agent-port"):  # fmt: skip
        ports += [flag, str(_free_port())]
    head = subprocess.Popen(
        [
            *ray_cli,
            "start",
            "--head",
            *ports,
            "--num-cpus",
            "1",
            "--include-dashboard",
            "false",
            "--temp-dir",
            str(temp),
            "--block",
        ],  # fmt: skip
        env=head_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        import socket

        while True:
            assert head.poll() is None, head.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the head never listened"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        # Ray retries the refused connection once a second for 20 s (NUM_REDIS_GET_RETRIES: 22 s
        # of the driver's 26 s, measured); its own knob shortens that window, same message.
        driver_env = {**env, "RAY_gcs_server_port_wait_time_s": "2"}
        line, _ = _cli_sweep(tmp_path, "--address", f"127.0.0.1:{port}", env=driver_env)
        assert "token authentication" in line and "RAY_AUTH_MODE=token" in line, line
        assert "on every node" in line and "~/.ray/auth_token" in line
    finally:
        _stop_group(head)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(temp, ignore_errors=True)


def _stop_group(proc: subprocess.Popen) -> None:
    """End the process group this test started (``ray start --block`` and the Ray processes it
    began) with SIGKILL: a throwaway head whose folders are removed next. Under SIGTERM neither
    ``ray start --block`` nor its GCS and raylet had ended 6 s later (measured), so a SIGTERM
    first only waited out a grace period; ``ray stop`` would also stop the session's instance."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.time() + 30
    while time.time() < deadline:  # the group's other members, now children of init
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"process group {proc.pid} still alive 30 s after SIGKILL")
