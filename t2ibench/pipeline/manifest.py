"""The images manifest: one JSON object per line (``manifest.jsonl``) for every finished image.

Written only by appending complete, fsynced lines after the image is in place, so a killed writer
leaves at most a truncated last line, which readers skip and the next writer cuts off. File names
are relative POSIX paths that must stay inside the manifest's folder.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from t2ibench.errors import T2IBenchError
from t2ibench.fsutil import atomic_write

MANIFEST_NAME = "manifest.jsonl"
REQUIRED = ("checkpoint", "leaf", "prompt_type", "prompt", "seed", "file")
log = logging.getLogger(__name__)


class ManifestError(T2IBenchError, ValueError):
    """A manifest line is malformed or names a file outside its folder."""


@dataclass(frozen=True)
class ManifestRecord:
    """One generated image. ``file`` is relative to the manifest's folder."""

    checkpoint: str
    leaf: str
    prompt_type: str
    prompt: str
    seed: int
    file: str
    index: int | None = None
    sha256: str | None = None
    variant: str = ""
    settings: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    def path(self, root: Path) -> Path:
        """Absolute path of the image, checked to lie inside ``root``."""
        return safe_join(root, self.file, where=f"{root}/{MANIFEST_NAME}")


_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_join(root: Path, name: str, *, where: str, field_name: str = "file") -> Path:
    """``root / name`` for a relative POSIX ``name`` that cannot leave ``root``.

    Refuses absolute paths, drive letters, backslashes, ``..`` parts and symlinks that resolve
    outside ``root``, each with one error naming ``where`` and the field.
    """
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{where}: field {field_name!r} must be a non-empty relative path")
    pure = PurePosixPath(name)
    if pure.is_absolute() or _DRIVE.match(name) or "\\" in name:
        raise ManifestError(
            f"{where}: field {field_name!r} = {name!r} is absolute; paths are relative"
        )
    if ".." in pure.parts:
        raise ManifestError(f"{where}: field {field_name!r} = {name!r} escapes the folder ('..')")
    root = Path(root).absolute()
    path = root.joinpath(*pure.parts)
    real_root = root.resolve()
    if not path.resolve().is_relative_to(real_root):
        raise ManifestError(f"{where}: field {field_name!r} = {name!r} resolves outside {root}")
    return path


def _record(data: Any, where: str) -> ManifestRecord:
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected a JSON object")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise ManifestError(f"{where}: missing field(s) {', '.join(map(repr, missing))}")
    for key in ("checkpoint", "leaf", "prompt_type", "prompt", "file"):
        if not isinstance(data[key], str):
            raise ManifestError(f"{where}: field {key!r} must be a string")
    for key in ("seed", "index"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ManifestError(f"{where}: field {key!r} must be an integer")
    settings = data.get("settings") or {}
    if not isinstance(settings, dict):
        raise ManifestError(f"{where}: field 'settings' must be an object")
    return ManifestRecord(
        checkpoint=data["checkpoint"],
        leaf=data["leaf"],
        prompt_type=data["prompt_type"],
        prompt=data["prompt"],
        seed=data["seed"],
        file=data["file"],
        index=data.get("index"),
        sha256=data.get("sha256"),
        variant=str(data.get("variant") or ""),
        settings=settings,
    )


def read_manifest(path: Path) -> list[ManifestRecord]:
    """Records of ``path`` in file order.

    A truncated last line (a writer killed mid-append) is skipped with a warning; any other bad line
    is a :class:`ManifestError` naming the file, line and field. Every ``file`` is checked to stay
    inside the manifest's folder. A line repeated word for word is read once (with a warning); two
    different lines for the same ``file``, or for the same image (checkpoint, leaf, prompt type,
    index, seed, variant) under two files, are an error: the image would be ambiguous, or scored
    twice.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text ({exc.reason})") from None
    lines = text.split("\n")
    complete = text.endswith("\n")
    root = path.parent
    records: dict[str, ManifestRecord] = {}
    line_of: dict[str, int] = {}
    image_of: dict[tuple, str] = {}
    repeated = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        is_tail = number == len(lines) and not complete
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            if is_tail:
                log.warning("%s: ignoring a truncated last line", where)
                continue
            raise ManifestError(f"{where}: not JSON ({exc.msg})") from None
        record = _record(data, where)
        safe_join(root, record.file, where=where)
        earlier = records.get(record.file)
        if earlier is not None:
            if earlier.to_json() == record.to_json():
                repeated += 1
                continue
            raise ManifestError(
                f"{where}: file {record.file!r} is also on line {line_of[record.file]} with other "
                "content; keep the line that describes the image and delete the other"
            )
        if record.index is not None:
            key = (record.checkpoint, record.leaf, record.prompt_type, record.index, record.seed,
                   record.variant)  # fmt: skip
            if key in image_of:
                raise ManifestError(
                    f"{where}: image {record.leaf}/{record.prompt_type} #{record.index} (seed "
                    f"{record.seed}) is also file {image_of[key]!r}; it would be scored twice"
                )
            image_of[key] = record.file
        records[record.file] = record
        line_of[record.file] = number
    if repeated:
        log.warning("%s: %d repeated line(s) read once", path, repeated)
    return list(records.values())


def changed_files(root: Path, records: Iterable[ManifestRecord]) -> list[tuple[str, str]]:
    """``(file, why)`` for every record whose image is missing or no longer hashes to its sha256
    (records without a sha256, from other tools, are only checked to exist)."""
    from t2ibench.fsutil import file_sha256

    out = []
    for rec in records:
        path = rec.path(Path(root))
        if not path.is_file():
            out.append((rec.file, "missing"))
            continue
        if rec.sha256 is not None:
            if file_sha256(path) != rec.sha256:
                out.append((rec.file, "changed since it was generated (sha256 differs)"))
    return out


def manifest_digest(records: Iterable[ManifestRecord]) -> str:
    """A digest of the images a manifest lists (file and sha256): equal digests, equal images."""
    import hashlib

    items = sorted((r.file, r.sha256 or "") for r in records)
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def repair_tail(path: Path) -> None:
    """Cut a truncated last line (no newline) off ``path`` so the next append starts clean."""
    with open(path, "rb+") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        # Walk back to the last newline; the manifest is small enough to read whole.
        fh.seek(0)
        data = fh.read()
        keep = data.rfind(b"\n") + 1
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
        log.warning("%s: removed a truncated last line (%d bytes)", path, size - keep)


def append_records(path: Path, records: Iterable[ManifestRecord]) -> None:
    """Append complete lines and fsync; call only after the images themselves are in place."""
    payload = "".join(r.to_json() + "\n" for r in records)
    if not payload:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())


def write_manifest(path: Path, records: Iterable[ManifestRecord]) -> None:
    """Replace ``path`` atomically with exactly ``records``."""
    atomic_write(path, "".join(r.to_json() + "\n" for r in records))
