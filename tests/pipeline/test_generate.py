"""generate_images: batched = unbatched, seed pairing, resume, kill -9, full disk, bad names."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from t2ibench.errors import ConfigError, T2IBenchError
from t2ibench.pipeline.generate import GenerationSettings, generate_images, job_file, pending_jobs
from t2ibench.pipeline.manifest import read_manifest
from t2ibench.prompts import GenerationJob

SETTINGS = GenerationSettings(steps=2, height=64, width=64, batch_size=4)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run ~10× faster on one thread when the 2 shared cores are busy."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cache(t2ibench_cache):
    """The session's ``T2IBENCH_CACHE`` (tests/conftest.py)."""
    return t2ibench_cache


@pytest.fixture(scope="module")
def pipe(cache):
    from t2ibench.models import load_base

    return load_base("tiny")


def jobs(n, leaf="toys/bear", prompt_type="trigger", start=0):
    prompts = ["a teddy bear", "a bear on a beach", "a watercolor bear", "pixel art bear"]
    return [
        GenerationJob(leaf, prompt_type, prompts[k % 4], 1000 + k, k)
        for k in range(start, start + n)
    ]


def pixels(folder: Path, job) -> np.ndarray:
    return np.asarray(Image.open(folder / job_file(job)).convert("RGB"), dtype=np.int16)


def lines(manifest: Path) -> list[str]:
    return [ln for ln in manifest.read_text().split("\n") if ln]


def test_layout_and_manifest(pipe, tmp_path):
    js = jobs(3)
    manifest = generate_images(
        pipe, js, tmp_path, checkpoint="base", settings=SETTINGS, progress=False
    )
    assert manifest == tmp_path / "manifest.jsonl"
    assert (tmp_path / "toys/bear/trigger/0000-s1000.png").is_file()
    rows = [json.loads(ln) for ln in lines(manifest)]
    assert [r["file"] for r in rows] == [
        f"toys/bear/trigger/{k:04d}-s{1000 + k}.png" for k in range(3)
    ]
    for row, job in zip(rows, js, strict=True):
        assert row["checkpoint"] == "base"
        assert (row["leaf"], row["prompt_type"], row["prompt"], row["seed"], row["index"]) == (
            job.leaf,
            job.prompt_type,
            job.prompt,
            job.seed,
            job.index,
        )
        assert row["settings"]["steps"] == 2 and "batch_size" not in row["settings"]
        assert len(row["sha256"]) == 64
    assert Image.open(tmp_path / rows[0]["file"]).size == (64, 64)


def test_batched_equals_unbatched_and_order_free(pipe, tmp_path):
    js = jobs(4)
    batched, single, reordered = tmp_path / "b", tmp_path / "s", tmp_path / "r"
    generate_images(pipe, js, batched, checkpoint="base", settings=SETTINGS, progress=False)
    one = GenerationSettings(steps=2, height=64, width=64, batch_size=1)
    generate_images(pipe, js, single, checkpoint="base", settings=one, progress=False)
    generate_images(pipe, js[::-1], reordered, checkpoint="base", settings=SETTINGS, progress=False)
    diffs = [np.abs(pixels(batched, j) - pixels(single, j)).max() for j in js]
    diffs += [np.abs(pixels(batched, j) - pixels(reordered, j)).max() for j in js]
    # CPU fp32: batch size changes the summation order inside oneDNN/MKL kernels, so a few pixels
    # (~0.01 %) land one 8-bit level apart; everything else is bit-identical.
    assert max(diffs) <= 1, diffs
    off = [(pixels(batched, j) != pixels(single, j)).mean() for j in js]
    assert max(off) < 1e-3, off  # a handful of pixels at a rounding boundary, not a different image
    # Images differ between seeds (the generator really is per image).
    assert np.abs(pixels(batched, js[0]) - pixels(batched, js[1])).max() > 0


def test_paired_seeds_across_checkpoints(pipe, tmp_path):
    """Same job → same initial noise: with an unchanged model, 'tuned' images equal base images."""
    js = jobs(2)
    generate_images(
        pipe, js, tmp_path / "base", checkpoint="base", settings=SETTINGS, progress=False
    )
    generate_images(
        pipe, js, tmp_path / "ck", checkpoint="ck-000010", settings=SETTINGS, progress=False
    )
    for j in js:
        assert (pixels(tmp_path / "base", j) == pixels(tmp_path / "ck", j)).all()


def test_resume_skips_finished_jobs(pipe, tmp_path):
    generate_images(pipe, jobs(3), tmp_path, checkpoint="base", settings=SETTINGS, progress=False)
    files = sorted(tmp_path.rglob("*.png"))
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    time.sleep(0.01)
    manifest = generate_images(
        pipe, jobs(5), tmp_path, checkpoint="base", settings=SETTINGS, progress=False
    )
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes
    assert len(lines(manifest)) == 5
    before = manifest.read_bytes()
    all_mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.png")}
    generate_images(pipe, jobs(5), tmp_path, checkpoint="base", settings=SETTINGS, progress=False)
    assert manifest.read_bytes() == before
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.png")} == all_mtimes
    todo, done = pending_jobs(jobs(5), tmp_path, checkpoint="base", settings=SETTINGS)
    assert todo == [] and len(done) == 5


class _RecordingPipe:
    """Stands in for a diffusers pipeline: records each call's batch and returns grey images whose
    value encodes the batch, so a test sees exactly which batch made each file."""

    def __init__(self) -> None:
        from diffusers.image_processor import VaeImageProcessor

        self.calls: list[list[int]] = []
        self.image_processor = VaeImageProcessor()
        self.scheduler = None

    def __call__(self, *, prompt, generator, height, width, **_):
        from types import SimpleNamespace

        seeds = [g.initial_seed() for g in generator]
        self.calls.append(seeds)
        level = (sum(seeds) % 200 + 20) / 255.0
        return SimpleNamespace(images=np.full((len(prompt), height, width, 3), level, np.float32))


def test_resume_makes_missing_images_in_their_original_batch(tmp_path, monkeypatch):
    """Pixels depend on the batch on CPU (see test_batched_equals_unbatched...), so a rerun must
    make a missing image in the same batch as an uninterrupted run: batches sit at fixed positions
    of the job list, and a batch with finished images is made again whole (only the missing ones
    are written)."""
    import t2ibench.pipeline.generate as gen

    monkeypatch.setattr(gen, "_set_scheduler", lambda pipe, name: None)
    fake = _RecordingPipe()
    js = jobs(10)
    generate_images(fake, js, tmp_path, checkpoint="base", settings=SETTINGS, progress=False)
    assert fake.calls == [[1000, 1001, 1002, 1003], [1004, 1005, 1006, 1007], [1008, 1009]]
    reference = {j.index: (tmp_path / job_file(j)).read_bytes() for j in js}
    untouched = {j.index: (tmp_path / job_file(j)).stat().st_mtime_ns for j in js}
    for k in (5, 9):
        (tmp_path / job_file(js[k])).unlink()
    fake.calls.clear()
    manifest = generate_images(
        fake, js, tmp_path, checkpoint="base", settings=SETTINGS, progress=False
    )
    assert fake.calls == [[1004, 1005, 1006, 1007], [1008, 1009]]
    assert {j.index: (tmp_path / job_file(j)).read_bytes() for j in js} == reference
    for j in js:  # finished images of a re-made batch are not rewritten
        if j.index not in (5, 9):
            assert (tmp_path / job_file(j)).stat().st_mtime_ns == untouched[j.index]
    assert len(lines(manifest)) == 10


def test_truncated_line_file_without_line_and_changed_file(pipe, tmp_path):
    js = jobs(4)
    manifest = generate_images(
        pipe, js[:2], tmp_path, checkpoint="base", settings=SETTINGS, progress=False
    )
    good = manifest.read_text()
    # A kill mid-append: half a line. A kill after the rename: an image without its line. A stale temp.
    manifest.write_text(good + good.split("\n")[0][:40])
    stray = tmp_path / job_file(js[2])
    stray.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64)).save(stray)
    temp = stray.with_name(f".{stray.name}.abcd1234.t2ibench-tmp")
    temp.write_bytes(b"half")
    assert len(read_manifest(manifest)) == 2  # the truncated tail is tolerated
    # A finished image changed on disk (hash mismatch) is redone, its old line dropped.
    changed = tmp_path / job_file(js[1])
    Image.new("RGB", (64, 64), "white").save(changed)
    generate_images(pipe, js, tmp_path, checkpoint="base", settings=SETTINGS, progress=False)
    rows = [json.loads(ln) for ln in lines(manifest)]  # every line parses: the tail was cut
    assert sorted(r["file"] for r in rows) == sorted(job_file(j) for j in js)  # no duplicates
    assert not temp.exists()
    for row in rows:
        assert (tmp_path / row["file"]).is_file()
    assert np.asarray(Image.open(changed)).std() > 0  # regenerated, not the white square


def test_other_checkpoint_or_settings_in_same_folder_refused(pipe, tmp_path):
    generate_images(pipe, jobs(1), tmp_path, checkpoint="base", settings=SETTINGS, progress=False)
    with pytest.raises(T2IBenchError, match="checkpoint 'base'"):
        generate_images(
            pipe, jobs(1), tmp_path, checkpoint="other", settings=SETTINGS, progress=False
        )
    three = GenerationSettings(steps=3, height=64, width=64)
    with pytest.raises(T2IBenchError, match="other settings"):
        generate_images(pipe, jobs(1), tmp_path, checkpoint="base", settings=three, progress=False)
    # batch size does not change pixels, so it may differ between runs
    bs1 = GenerationSettings(steps=2, height=64, width=64, batch_size=1)
    generate_images(pipe, jobs(2), tmp_path, checkpoint="base", settings=bs1, progress=False)


def test_full_disk_keeps_finished_images(pipe, tmp_path, monkeypatch):
    import t2ibench.pipeline.generate as gen

    real, calls = gen._write_png, {"n": 0}

    def flaky(image, path):
        calls["n"] += 1
        if calls["n"] > 4:  # the second batch finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(image, path)

    monkeypatch.setattr(gen, "_write_png", flaky)
    with pytest.raises(T2IBenchError, match="disk full") as err:
        generate_images(
            pipe, jobs(8), tmp_path, checkpoint="base", settings=SETTINGS, progress=False
        )
    assert str(tmp_path) in str(err.value)
    records = read_manifest(tmp_path / "manifest.jsonl")
    assert len(records) == 4 and all((tmp_path / r.file).is_file() for r in records)
    monkeypatch.setattr(gen, "_write_png", real)
    generate_images(pipe, jobs(8), tmp_path, checkpoint="base", settings=SETTINGS, progress=False)
    assert len(read_manifest(tmp_path / "manifest.jsonl")) == 8


@pytest.mark.parametrize("leaf", ["../evil", "toys/..", "/abs", "a//b"])
def test_unsafe_names_refused(leaf):
    with pytest.raises(ConfigError, match="safe folder name"):
        job_file(GenerationJob(leaf, "trigger", "p", 1000, 0))


def test_duplicate_jobs_refused(tmp_path):
    with pytest.raises(ConfigError, match="two jobs write"):
        pending_jobs(jobs(1) + jobs(1), tmp_path, checkpoint="base", settings=SETTINGS)


def test_bad_settings():
    with pytest.raises(ConfigError, match="scheduler"):
        GenerationSettings(scheduler="nope")
    with pytest.raises(ConfigError, match="multiple of 8"):
        GenerationSettings(height=100)


def test_other_schedulers_run(pipe, tmp_path):
    s = GenerationSettings(
        steps=2, height=64, width=64, scheduler="euler", negative_prompt="blurry"
    )
    generate_images(pipe, jobs(1), tmp_path, checkpoint="base", settings=s, progress=False)
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"  # restored afterwards
    assert read_manifest(tmp_path / "manifest.jsonl")[0].settings["scheduler"] == "euler"


def kill_9_jobs():
    return [
        GenerationJob("toys/bear", "trigger", f"a bear number {k}", 1000 + k, k) for k in range(60)
    ]


KILL_9_SETTINGS = GenerationSettings(steps=4, height=64, width=64, batch_size=1)


def test_kill_9_then_resume(pipe, tmp_path):
    """SIGKILL to a process writing images, then the same generation again (in this process):
    nothing duplicated, missing or redone. The killed process is a fork of this one
    (tests/forked.py: a real process, without a fresh Python's imports)."""
    from tests.forked import Forked

    out = tmp_path / "imgs"

    def child():
        generate_images(pipe, kill_9_jobs(), out, checkpoint="base", settings=KILL_9_SETTINGS,
                        progress=False)  # fmt: skip
        return 0, "", ""

    proc = Forked(child, tmp_path)
    manifest = out / "manifest.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if manifest.exists() and len(lines(manifest)) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the child finished before it could be killed {proc.stderr}"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    before = {r.file: (out / r.file).stat().st_mtime_ns for r in read_manifest(manifest)}
    assert 3 <= len(before) < 60
    generate_images(pipe, kill_9_jobs(), out, checkpoint="base", settings=KILL_9_SETTINGS,
                    progress=False)  # fmt: skip
    records = read_manifest(manifest)
    assert len(lines(manifest)) == len(records) == 60  # nothing duplicated, nothing missing
    for file, mtime in before.items():
        assert (out / file).stat().st_mtime_ns == mtime  # nothing finished was redone
    assert not list(out.rglob("*.t2ibench-tmp"))
    assert len(list(out.rglob("*.png"))) == 60


def test_cli_generate_base(cache, tmp_path):
    from typer.testing import CliRunner

    from t2ibench.cli import app
    from t2ibench.data.demo import make_demo_dataset

    data = make_demo_dataset(tmp_path / "data")
    args = ["generate", "base", "--dataset", str(data), "--prompt-types", "trigger,style"]
    args += ["--images-per-leaf", "2", "--size", "64", "--steps", "2", "--out", str(tmp_path / "o")]
    args += ["--no-progress", "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    records = read_manifest(tmp_path / "o" / "base" / "manifest.jsonl")
    assert {r.prompt_type for r in records} == {"trigger", "style"}
    assert all(r.checkpoint == "base" for r in records)
    leaves = {r.leaf for r in records if r.prompt_type == "trigger"}
    assert len(leaves) >= 2 and all(
        len([r for r in records if r.leaf == lf and r.prompt_type == "trigger"]) == 2
        for lf in leaves
    )
    bad = CliRunner().invoke(app, [*args[:5], "nope", *args[6:]])
    assert isinstance(bad.exception, ConfigError) and "nope" in str(bad.exception)
    # the executor options: one clear line before any work, and no Ray import for a local run
    for extra, says in [
        (["--workers", "2"], "only with --executor ray"),
        (["--executor", "slurm"], "not local or ray"),
    ]:
        bad = CliRunner().invoke(app, [*args, *extra])
        assert isinstance(bad.exception, ConfigError) and says in str(bad.exception), bad.output


def test_local_generation_does_not_import_ray():
    """Ray is an optional extra: nothing on the local path imports it."""
    code = (
        "import sys; import t2ibench.cli, t2ibench.pipeline.run, t2ibench.pipeline.generate, "
        "t2ibench.pipeline.evaluate, t2ibench.runconfig; assert 'ray' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_adapter_checkpoint_on_base(pipe, cache, tmp_path):
    """A LoHa file goes on the base for its images and comes off again; base images still pair."""
    import torch

    from t2ibench.adapters import AlgoParams, get_trainer
    from t2ibench.adapters.files import save_adapter
    from t2ibench.adapters.network import AdapterNetwork
    from t2ibench.pipeline.generate import generate_checkpoints

    parts = {"unet": pipe.unet, "te": pipe.text_encoder}
    net = AdapterNetwork.create(
        get_trainer("loha").create_module,
        parts,
        {"unet": "full", "te": "attn-mlp"},
        AlgoParams(dim=2, alpha=2),
    )
    with torch.no_grad():
        torch.manual_seed(0)
        for p in net.parameters():  # trained-looking weights: the zero-init factor is not zero
            p.normal_(0, 0.3)
    ckpt = save_adapter(net, tmp_path / "loha-000001.safetensors", {})
    manifests = generate_checkpoints(
        "tiny", [ckpt, "base"], jobs(2), tmp_path / "out", settings=SETTINGS, progress=False
    )
    assert set(manifests) == {"base", "loha-000001"}
    base_dir, tuned_dir = tmp_path / "out" / "base", tmp_path / "out" / "loha-000001"
    assert read_manifest(manifests["loha-000001"])[0].checkpoint == "loha-000001"
    for j in jobs(2):
        assert np.abs(pixels(base_dir, j) - pixels(tuned_dir, j)).max() > 0
    # The base ran after the adapter was taken off: its images equal a fresh base's.
    generate_images(
        pipe, jobs(2), tmp_path / "again", checkpoint="base", settings=SETTINGS, progress=False
    )
    for j in jobs(2):
        assert (pixels(base_dir, j) == pixels(tmp_path / "again", j)).all()
