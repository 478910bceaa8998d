"""Generation and encoding sharded over Ray workers (a local Ray instance, 2 CPUs): the same image
bytes, manifests and metric values as a local run; a worker SIGKILLed mid-generation, then a rerun
that makes only what is missing."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from t2ibench.errors import T2IBenchError
from t2ibench.pipeline.generate import GenerationSettings, generate_images
from t2ibench.pipeline.manifest import read_manifest
from t2ibench.pipeline.shard import Target, generate_sharded
from t2ibench.prompts import GenerationJob


@pytest.fixture(scope="module")
def cluster(ray_cluster):
    """One thread per process (the local runs and the workers alike), one Ray instance (the
    session's, tests/conftest.py), whose models cache the local runs share."""
    import torch

    mp = pytest.MonkeyPatch()
    mp.setenv("T2IBENCH_CACHE", str(ray_cluster.cache))
    mp.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield ray_cluster.ray
    torch.set_num_threads(threads)
    mp.undo()


def _image_folder(folder: Path, dataset, checkpoint: str, seed: int) -> None:
    """Random PNGs and their manifest for every trigger and style job of ``dataset``."""
    import numpy as np
    from PIL import Image

    from t2ibench.fsutil import file_sha256
    from t2ibench.pipeline.generate import job_file
    from t2ibench.pipeline.manifest import ManifestRecord, write_manifest
    from t2ibench.prompts import jobs_for

    rng = np.random.default_rng(seed)
    records = []
    for job in jobs_for(dataset, ["trigger", "style"], 2):
        rel = job_file(job)
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / rel)
        records.append(ManifestRecord(checkpoint, job.leaf, job.prompt_type, job.prompt, job.seed,
                                      rel, job.index, file_sha256(folder / rel)))  # fmt: skip
    write_manifest(folder / "manifest.jsonl", records)


def test_recorded_batches_encoded_in_any_order_give_the_local_values(tmp_path, monkeypatch):
    """No Ray: the encoder batches listed by a recording evaluation, encoded in reverse order
    (as workers may finish them), fill the cache so that the evaluation then encodes nothing
    itself and gives the values of a plain evaluation with an empty cache."""
    import torch

    import t2ibench.pipeline.evaluate as evaluate
    from t2ibench.data import load_dataset
    from t2ibench.data.demo import make_demo_dataset
    from t2ibench.encoders import FeatureCache
    from t2ibench.pipeline.run import create_encoders

    torch.set_num_threads(1)
    ds = load_dataset(make_demo_dataset(tmp_path / "data"))
    _image_folder(tmp_path / "ck", ds, "ck", 1)
    _image_folder(tmp_path / "base", ds, "base", 2)
    encoders = create_encoders(["dinov2-l@tiny", "vgg19@tiny"], None, "cpu")
    for enc in encoders:
        enc.batch_size = 3  # several batches per call, straddling groups

    def run(cache_dir: str):
        return evaluate.evaluate_images(tmp_path / "ck", ds, encoders, base_images_dir=tmp_path / "base",
                                        cache=FeatureCache(tmp_path / cache_dir), progress=False)  # fmt: skip

    want = run("plain")
    with evaluate.recording(encoders) as recorder:
        assert run("sharded").empty  # recording computes no metric
    batches = recorder.batches
    assert batches and all(1 <= len(b.items) <= 3 for b in batches)
    seen = [(b.encoder, h) for b in batches for h, _ in b.items]
    assert len(seen) == len(set(seen))  # each feature row encoded once
    for batch in reversed(batches):
        evaluate.encode_batch(encoders[batch.encoder], batch, FeatureCache(batch.cache_root))

    encoded = []
    import t2ibench.evaluation.providers as providers

    plain = providers.encode_images_cached

    def counting(encoder, paths, cache):
        if cache is not None:
            from t2ibench.fsutil import file_sha256

            encoded.extend(p for p in paths if cache.get(encoder, file_sha256(p)) is None)
        return plain(encoder, paths, cache)

    monkeypatch.setattr(providers, "encode_images_cached", counting)
    got = run("sharded")
    assert encoded == []
    keys = ["checkpoint", "leaf", "prompt_type", "metric", "encoder", "resize"]
    want, got = (df.sort_values(keys).reset_index(drop=True) for df in (want, got))
    assert len(want) > 20 and got[keys].equals(want[keys])
    assert got["value"].tolist() == want["value"].tolist()


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_sharded_run_equals_local_run(cluster, tmp_path, monkeypatch):
    """``generate.workers = 2`` and ``evaluate.workers = 2``: every image byte, every manifest
    line and every metric value equal to the same run made in this process."""
    from t2ibench.pipeline.run import RunOptions, execute, resolve
    from t2ibench.results import read_results

    quick = {
        "trainer": "lora",
        "evaluate.encoders": ["dinov2-l@tiny", "clip-l14@tiny", "vgg19@tiny"],
        "generate.images_per_leaf": 1,
        "generate.prompt_types": ["trigger", "style"],  # style: the Gram (style loss) path too
        "generate.steps": 2,
        "generate.batch_size": 3,  # batches straddle leaves and prompt types
        "trainer.epochs": 1,
        "trainer.save_epochs": [1],
    }
    shard = {"generate.workers": 2, "evaluate.workers": 2}
    import t2ibench.evaluation.providers as providers
    from t2ibench.evaluation.recording import is_recording

    encoded_here: dict[str, int] = {"local": 0, "ray": 0}
    plain = providers.encode_images_cached

    def counting(encoder, paths, cache):  # images the driver itself encodes into the cache
        if cache is not None and not is_recording():
            from t2ibench.fsutil import file_sha256

            encoded_here[how] += sum(cache.get(encoder, file_sha256(p)) is None for p in paths)
        return plain(encoder, paths, cache)

    monkeypatch.setattr(providers, "encode_images_cached", counting)
    import t2ibench.pipeline.shard as sharding

    started, new_actor = [], sharding._new_actor
    monkeypatch.setattr(
        sharding, "_new_actor", lambda *a: started.append(new_actor(*a)) or started[-1]
    )
    runs = {}
    for how, layers in {"local": [], "ray": [("shard", shard)]}.items():
        opts = RunOptions(
            layers=[("test", quick), *layers],
            profile="tiny",
            out=str(tmp_path / how),
            progress=False,
            analyze=False,
        )
        r = resolve(opts)
        runs[how] = (r, execute(r))
    (local, local_dir), (sharded, ray_dir) = runs["local"], runs["ray"]
    assert local.run_hash == sharded.run_hash  # workers change how, not what
    assert ray_dir.name == local_dir.name
    base_l, base_r = (tmp_path / h / ".base-images" for h in ("local", "ray"))
    for a, b in [(local_dir / "images", ray_dir / "images"), (base_l, base_r)]:
        got, want = files(b), files(a)
        assert len(want) >= 8 and got.keys() == want.keys()
        assert [k for k in want if got[k] != want[k]] == []
        for m in a.rglob("manifest.jsonl"):
            assert (b / m.relative_to(a)).read_bytes() == m.read_bytes()
    keys = ["checkpoint", "leaf", "prompt_type", "metric", "encoder", "resize"]
    df_l = read_results(local_dir / "results").sort_values(keys).reset_index(drop=True)
    df_r = read_results(ray_dir / "results").sort_values(keys).reset_index(drop=True)
    assert len(df_l) > 50 and df_r[keys].equals(df_l[keys])
    assert df_r["value"].notna().sum() > 50
    assert df_r["value"].equals(df_l["value"])  # value for value (NaN where one image has none)
    # the workers did the encoding: the sharded driver found every cached feature there
    assert encoded_here["local"] > 20 and encoded_here["ray"] == 0, encoded_here
    # one pool for the run: the 2 workers that generated its images encoded them too
    assert len(started) == 2


def _jobs(n: int) -> list[GenerationJob]:
    return [
        GenerationJob("toys/bear", "trigger", f"a bear number {k}", 1000 + k, k) for k in range(n)
    ]


SETTINGS = GenerationSettings(steps=4, height=64, width=64, batch_size=2)
N = 24


def _worker_pids() -> list[int]:
    import psutil

    pids = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if cmd.startswith("ray::ShardWorker"):
            pids.append(proc.pid)
    return pids


def _in_thread(call) -> tuple[threading.Thread, list]:
    outcome: list = []

    def target() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def _kill_a_worker_after(thread: threading.Thread, manifest: Path, lines: int) -> None:
    deadline = time.time() + 120
    while time.time() < deadline and thread.is_alive():
        if manifest.is_file() and len(manifest.read_text().splitlines()) >= lines:
            break
        time.sleep(0.05)
    pids = _worker_pids()
    assert thread.is_alive() and pids, "generation finished before a worker could be killed"
    os.kill(pids[0], signal.SIGKILL)
    thread.join(180)
    assert not thread.is_alive()


def test_worker_sigkill_then_rerun(cluster, tmp_path):
    """SIGKILL a generation worker mid-run with no retries: the run stops with one clear line and
    keeps what finished. The same call again (retries on) survives a second SIGKILL (the worker is
    restarted, its batches made again) and makes only the rest: every image once, nothing finished
    made again, every byte and manifest line equal to the local run's."""
    out, jobs = tmp_path / "sharded", _jobs(N)
    target = Target("base", "base", out)
    kw = {"workers": 2, "load_kwargs": {"device": "cpu"}, "progress": False}
    manifest = out / "manifest.jsonl"

    thread, outcome = _in_thread(
        lambda: generate_sharded("tiny", [target], jobs, SETTINGS, retries=0, **kw)
    )
    _kill_a_worker_after(thread, manifest, 3)
    assert len(outcome) == 1 and isinstance(outcome[0], T2IBenchError), outcome
    assert "rerun the same command" in str(outcome[0]) and "\n" not in str(outcome[0])
    assert "\x1b" not in str(outcome[0])
    kept = {r.file: (out / r.file).stat().st_mtime_ns for r in read_manifest(manifest)}
    assert 3 <= len(kept) < N

    thread, outcome = _in_thread(lambda: generate_sharded("tiny", [target], jobs, SETTINGS, **kw))
    _kill_a_worker_after(thread, manifest, len(kept) + 3)
    assert outcome == [None]
    lines = manifest.read_text().splitlines()
    records = read_manifest(manifest)
    assert len(lines) == len(records) == len({r.file for r in records}) == N  # none lost or twice
    for file, mtime in kept.items():
        assert (out / file).stat().st_mtime_ns == mtime, f"{file} was made again"
    assert not list(out.rglob("*.t2ibench-tmp"))
    assert len(list(out.rglob("*.png"))) == N

    from t2ibench.models import load_base

    local = tmp_path / "local"
    generate_images(
        load_base("tiny"), jobs, local, checkpoint="base", settings=SETTINGS, progress=False
    )
    assert files(out) == files(local)
    assert sorted(lines) == sorted(local.joinpath("manifest.jsonl").read_text().splitlines())


def test_zero_workers_refused(cluster, tmp_path):
    with pytest.raises(Exception, match="workers"):
        generate_sharded("tiny", [], _jobs(1), SETTINGS, workers=0, load_kwargs={"device": "cpu"})


def test_sharding_inside_a_ray_task_is_refused(cluster):
    """A run that is itself a Ray task (a Ray sweep) must not wait for shard workers that need the
    slots its siblings hold: one clear line instead of a hang."""
    import ray

    from t2ibench.pipeline.shard import ensure_ray

    @ray.remote(num_cpus=0)
    def nested() -> str:
        try:
            ensure_ray()
        except Exception as exc:  # the error type crosses the process as its name and text
            return f"{type(exc).__name__}: {exc}"
        return "no error"

    message = ray.get(nested.remote())
    assert message.startswith("ConfigError") and "set workers = 1" in message


def test_worker_pool_reuses_workers_of_the_same_kind(monkeypatch):
    """No Ray (a stand-in that records kills): inside ``worker_pool`` a call of the same kind gets
    the workers the last one started, more are added when it asks for more, another kind (here
    another thread count) ends them first; a failure ends them all; leaving the pool ends the
    rest. Outside a pool each call's workers are ended when it returns."""
    import t2ibench.pipeline.shard as sharding

    class FakeRay:
        def __init__(self) -> None:
            self.killed: list[int] = []

        def kill(self, actor: int) -> None:
            self.killed.append(actor)

    ray, started = FakeRay(), []
    monkeypatch.setattr(
        sharding, "_new_actor", lambda *a: started.append(len(started)) or started[-1]
    )

    def workers(n: int, threads: int = 1) -> list:
        with sharding._shard_workers(ray, n, "cpu", 2, threads) as actors:
            return list(actors)

    assert workers(2) == [0, 1] and ray.killed == [0, 1]  # no pool: started and ended
    with sharding.worker_pool():
        assert workers(2) == [2, 3] and workers(1) == [2] and workers(3) == [2, 3, 4]
        with sharding.worker_pool():  # nested: the outer pool serves
            assert workers(2) == [2, 3]
        assert ray.killed == [0, 1]
        assert workers(2, threads=2) == [5, 6] and ray.killed == [0, 1, 2, 3, 4]
        with pytest.raises(RuntimeError), sharding._shard_workers(ray, 2, "cpu", 2, 2):
            raise RuntimeError("a worker failed")
        assert ray.killed == [0, 1, 2, 3, 4, 5, 6]
        assert workers(1, threads=2) == [7]
    assert ray.killed == [0, 1, 2, 3, 4, 5, 6, 7]
