"""File-system plumbing shared by every stage: atomic writes, hashing, the cache root, the offline
switch and the one-writer lock.

Atomic writes go to a temporary name in the target's own folder (same file system, so the final
``os.replace`` is atomic), are fsynced, and get the usual permissions from the umask (not the 0600
of ``mkstemp``). A failed write raises :class:`~t2ibench.errors.FileWriteError`, one line naming
the path; what was written before stays as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from t2ibench.errors import FileWriteError, T2IBenchError

# Temporary files carry this in their name, so a folder can be swept of a killed writer's leftovers.
TMP_MARK = ".t2ibench-tmp"
_TRUE = {"1", "true", "yes", "on"}


def cache_root() -> Path:
    """t2ibench's own cache folder: ``$T2IBENCH_CACHE`` or ``~/.cache/t2ibench`` (read per call)."""
    env = os.environ.get("T2IBENCH_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "t2ibench"


def hub_offline() -> bool:
    """True when no download may happen: ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` (or
    ``T2IBENCH_OFFLINE``) is set now, or huggingface_hub was imported while offline."""
    env = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "T2IBENCH_OFFLINE")
    if any(os.environ.get(v, "").strip().lower() in _TRUE for v in env):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - diffusers depends on huggingface_hub
        return False
    return bool(constants.HF_HUB_OFFLINE)


_DIGESTS: dict[tuple, str] = {}
#: With ``memo=True``, files under this size are still hashed every time (≈0.1 s at most).
ALWAYS_HASH_BELOW = 64 << 20


def file_sha256(path: str | os.PathLike, *, memo: bool = False) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks.

    ``memo=True`` remembers the digest of files of :data:`ALWAYS_HASH_BELOW` or more for this
    process, for big weight files fingerprinted more than once, keyed on (path, device, inode, size,
    mtime, ctime): an in-place rewrite that keeps size and mtime (``os.utime``) still changes ctime,
    which no user call can set back, and a replaced file has a new inode. Missed: a rewrite within
    the same filesystem timestamp tick (milliseconds) as the previous hash, with the mtime set back.
    """
    path = Path(path)
    key = None
    if memo:
        st = path.stat()
        if st.st_size >= ALWAYS_HASH_BELOW:
            key = (
                str(path.resolve()),
                st.st_dev,
                st.st_ino,
                st.st_size,
                st.st_mtime_ns,
                st.st_ctime_ns,
            )
            if key in _DIGESTS:
                return _DIGESTS[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    if key is not None:
        _DIGESTS[key] = digest
    return digest


def _tmp_name(path: Path) -> Path:
    # Writers that infer a format from the name (savefig, to_csv compression) must be told it.
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{TMP_MARK}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Writers in Rust (safetensors' ``save_file``) raise their own exception type for an I/O error,
# with the OS error in its text: "I/O error: No space left on device (os error 28)".
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def os_error_of(exc: BaseException) -> OSError | None:
    """``exc`` as an :class:`OSError` when it is one or reports one in its text (a Rust writer's
    error), else None."""
    if isinstance(exc, OSError):
        return exc
    m = _RUST_OS_ERROR.search(str(exc))
    if m is None:
        return None
    code = int(m.group(1))
    return OSError(code, os.strerror(code))


def atomic_write_with(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to create a temporary file next to ``path``, then fsync it and rename it
    over ``path``. For writers that take a file name (``to_parquet``, ``save_file``, ``savefig``).
    An I/O error (a full disk), also one a Rust writer reports in its own exception type, is a
    one-line :class:`FileWriteError` naming ``path``."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except FileWriteError:
        raise
    except Exception as exc:
        os_error = os_error_of(exc)
        if os_error is None:
            raise
        raise FileWriteError(path, os_error) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return path


def atomic_write(path: str | os.PathLike, data: bytes | str, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` (bytes, or text in ``encoding``) to ``path`` atomically; returns ``path``."""
    payload = data.encode(encoding) if isinstance(data, str) else bytes(data)

    def write(tmp: Path) -> None:
        # O_EXCL on a fresh name; mode 0666 minus the umask, like any ordinary file.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)

    return atomic_write_with(path, write)


class UnsafePathError(T2IBenchError, ValueError):
    """A path to remove (or write) lies outside the folder it must stay in: refused, nothing done."""


def inside(path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """``path`` (relative paths are taken from ``root``) checked to lie strictly inside ``root``.

    ``..`` parts are resolved and so are symlinked parent folders; the last part itself is not
    followed (a symlink inside ``root`` is removed as a link, never what it points at). Raises
    :class:`UnsafePathError` otherwise. Paths read from state files (``checkpoints.json``,
    ``run.json``, manifests) go through here before anything is removed or written.
    """
    root_real = Path(os.path.realpath(root))
    raw = Path(path)
    full = Path(os.path.abspath(raw if raw.is_absolute() else Path(root) / raw))
    real = Path(os.path.realpath(full.parent)) / full.name
    if full.name in ("", ".", "..") or not real.is_relative_to(root_real) or real == root_real:
        raise UnsafePathError(f"{path}: outside {root}; refused (nothing removed or written)")
    return full


def remove_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Remove the file, link or folder ``path`` if it lies inside ``root`` (see :func:`inside`);
    a path outside ``root`` is an :class:`UnsafePathError` and nothing is removed. Every removal
    of a path built from data (a name in a state file, a config name) goes through here. Returns
    whether something was removed; a missing path is not an error."""
    target = inside(path, root)
    if target.is_symlink() or target.is_file():
        target.unlink(missing_ok=True)
        return True
    if target.is_dir():
        shutil.rmtree(target, ignore_errors=True)
        return True
    return False


def remove_stale_temps(folder: Path) -> None:
    """Delete temporary files a killed writer left anywhere below ``folder``."""
    for tmp in Path(folder).rglob(f".*{TMP_MARK}"):
        if tmp.is_file():
            with contextlib.suppress(UnsafePathError):  # reached through a symlink: not ours
                remove_inside(tmp, folder)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_folder(final: str | os.PathLike, complete: Callable[[Path], bool]) -> Iterator[Path]:
    """Build a folder under a temporary name and move it to ``final`` when the block ends.

    Yields the empty temporary folder (next to ``final``, ordinary permissions). On success, an
    existing ``final`` that is not ``complete`` is swapped out and removed; if another process put
    a ``complete`` folder there first, that one is kept. On error nothing at ``final`` changes.
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.build-"))
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; caches are ordinary folders
    except OSError as exc:
        raise FileWriteError(final, exc) from exc
    try:
        try:
            yield tmp
        except FileWriteError:
            raise
        except Exception as exc:  # a writer's I/O error (a full disk) in its own exception type
            os_error = os_error_of(exc)
            if os_error is None or isinstance(exc, OSError):
                raise
            raise FileWriteError(final, os_error) from exc
        old = None
        if final.exists() and not complete(final):
            old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(final, old)
        try:
            os.replace(tmp, final)
        except OSError:
            if not complete(final):  # someone else finishing the same build first is fine
                raise
        if old is not None:
            remove_inside(old, final.parent)
    except FileWriteError:
        raise
    except OSError as exc:
        raise FileWriteError(final, exc) from exc
    finally:
        if tmp.exists():
            remove_inside(tmp, final.parent)


class LockBusyError(T2IBenchError):
    """Another process holds the lock; ``lock_file`` names it (a sweep's runs wait on it)."""

    def __init__(self, message: str, lock_file: str) -> None:
        super().__init__(message)
        self.lock_file = lock_file

    def __reduce__(self):  # picklable across processes (a Ray task's error)
        return type(self), (str(self), self.lock_file)


@contextlib.contextmanager
def exclusive_lock(lock_file: str | os.PathLike, busy: str) -> Iterator[None]:
    """Hold an inter-process lock on ``lock_file`` for the block; if another process holds it,
    raise a :class:`LockBusyError` with the message ``busy`` instead of waiting."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(lock_file), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise LockBusyError(busy, str(lock_file)) from None
    try:
        yield
    finally:
        lock.release()
