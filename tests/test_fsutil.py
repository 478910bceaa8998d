"""The shared file-system plumbing: atomic writes, hashing, cache root, offline switch, lock."""

import errno
import hashlib
import os
import stat
from pathlib import Path

import pytest

from t2ibench.errors import FileWriteError, T2IBenchError
from t2ibench.fsutil import (
    TMP_MARK,
    atomic_folder,
    atomic_write,
    atomic_write_with,
    cache_root,
    exclusive_lock,
    file_sha256,
    hub_offline,
    remove_stale_temps,
)


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_text_and_bytes_with_umask_mode(tmp_path, umask):
    text = atomic_write(tmp_path / "a" / "x.txt", "héllo\n")
    raw = atomic_write(tmp_path / "y.bin", b"\x00\x01")
    assert text.read_text(encoding="utf-8") == "héllo\n" and raw.read_bytes() == b"\x00\x01"
    assert _mode(text) == _mode(raw) == 0o644  # ordinary files, not mkstemp's 0600
    via_writer = atomic_write_with(tmp_path / "z.txt", lambda p: Path(p).write_text("z"))
    assert _mode(via_writer) == 0o644
    os.umask(0o077)
    assert _mode(atomic_write(tmp_path / "private.txt", "p")) == 0o600
    assert not list(tmp_path.rglob(f"*{TMP_MARK}"))


def test_failed_write_keeps_the_old_file_and_names_the_path(tmp_path):
    target = atomic_write(tmp_path / "results.csv", "old")

    def half_then_full(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(FileWriteError) as info:
        atomic_write_with(target, half_then_full)
    msg = str(info.value)
    assert msg.startswith(f"{target}: cannot write (No space left on device)")
    assert "finished work is kept" in msg and "\n" not in msg
    assert isinstance(info.value, T2IBenchError) and info.value.errno == errno.ENOSPC
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temp left behind


def test_unwritable_folder_is_one_clear_error(tmp_path):
    blocker = atomic_write(tmp_path / "file", "x")
    with pytest.raises(FileWriteError, match="cannot write"):
        atomic_write(blocker / "child.txt", "y")  # parent is a file


def test_remove_stale_temps(tmp_path):
    keep = atomic_write(tmp_path / "d" / "img.png", b"png")
    stale = keep.with_name(f".img.png.abcd1234{TMP_MARK}")
    stale.write_bytes(b"half")
    remove_stale_temps(tmp_path)
    assert keep.is_file() and not stale.exists()


def test_file_sha256_streams_and_memoises(tmp_path):
    path = tmp_path / "w.bin"
    data = os.urandom(3 * (1 << 20) + 17)  # several read blocks
    path.write_bytes(data)
    assert file_sha256(path) == file_sha256(path, memo=True) == hashlib.sha256(data).hexdigest()
    path.write_bytes(b"changed, and a different size")
    assert file_sha256(path, memo=True) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_cache_root_reads_the_environment_now(monkeypatch, tmp_path):
    monkeypatch.setenv("T2IBENCH_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("T2IBENCH_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_root() == tmp_path / ".cache" / "t2ibench"


@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_hub_offline_honours_both_variables(monkeypatch, var):
    import huggingface_hub.constants as constants

    for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "T2IBENCH_OFFLINE"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert not hub_offline()
    monkeypatch.setenv(var, "1")
    assert hub_offline()
    # Base-model loading and the encoders ask the same switch (they once read different variables).
    import t2ibench.encoders.base as encoders_base
    from t2ibench.architectures import hub_pipeline

    asked = {}

    class Pipeline:
        @classmethod
        def from_pretrained(cls, repo_id, **kwargs):
            asked.update(kwargs)
            return cls()

    hub_pipeline(Pipeline, "some/repo", {})
    assert asked["local_files_only"] is True and encoders_base.hub_offline()


def test_atomic_folder_swaps_stale_keeps_complete_and_survives_errors(tmp_path):
    final = tmp_path / "model"

    def complete(p: Path) -> bool:
        return (p / "done").is_file()

    final.mkdir()
    (final / "partial").write_text("stale")
    with atomic_folder(final, complete) as tmp:
        (tmp / "done").write_text("1")
    assert sorted(p.name for p in final.iterdir()) == ["done"]
    assert _mode(final) == 0o777 & ~_umask_now()
    with pytest.raises(RuntimeError), atomic_folder(final, lambda _: False) as tmp:
        (tmp / "other").write_text("x")
        raise RuntimeError("build failed")
    assert sorted(p.name for p in final.iterdir()) == ["done"]  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no build folder left


def _umask_now() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_exclusive_lock_refuses_a_second_writer(tmp_path):
    lock = tmp_path / ".lock"
    with exclusive_lock(lock, "busy: someone else writes here"):
        with pytest.raises(T2IBenchError, match="busy: someone else"):
            with exclusive_lock(lock, "busy: someone else writes here"):
                pass
    with exclusive_lock(lock, "busy"):  # released after the block
        pass


def test_item28_remove_inside_refuses_paths_out_of_the_root(tmp_path):
    from t2ibench.fsutil import UnsafePathError, remove_inside

    root = tmp_path / "run"
    (root / "results" / "parts" / "a").mkdir(parents=True)
    (root / "f.txt").write_text("x")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    (root / "link").symlink_to(victim, target_is_directory=True)
    (root / "images").symlink_to(victim, target_is_directory=True)
    for bad in ("../victim", str(victim), root / "results" / ".." / ".." / "victim", root, ".",
                root / "images" / "keep.txt"):  # fmt: skip
        with pytest.raises(UnsafePathError, match="refused"):
            remove_inside(bad, root)
    assert (victim / "keep.txt").read_text() == "keep"
    # inside: folders, files and links (the link itself, never its target)
    assert remove_inside("results/parts/a", root) and not (root / "results/parts/a").exists()
    assert remove_inside(root / "f.txt", root) and not (root / "f.txt").exists()
    assert remove_inside(root / "link", root) and not (root / "link").is_symlink()
    assert (victim / "keep.txt").read_text() == "keep"
    assert remove_inside(root / "gone", root) is False
