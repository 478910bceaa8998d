"""``t2ibench evaluate-checkpoints DIR``: which epoch is best, for checkpoints made anywhere.

Every adapter in ``DIR`` (kohya / LyCORIS / t2ibench ``.safetensors`` files, PEFT and diffusers
LoRA folders: :mod:`t2ibench.adapters.foreign`) is read once to check it (a corrupt file, or a key
no registered trainer reads, stops with one line naming the file and the key), placed in training
order, then run through ``t2ibench run``'s own generate → evaluate → analyse stages in place of
training: the probe set (every prompt type, seeds paired with the base model's images), the base
scored as checkpoint ``base``, the results table, and the report with the checkpoint curves and
the recommended checkpoint (``analysis/checkpoints.py``).

Order: the epoch or step a file records (``t2ibench_epoch``, kohya's ``ss_epoch`` / ``ss_steps``,
ai-toolkit's ``training_info``), else the one in its name (``NAME-000010`` as kohya names epochs,
``epoch10``, ``e10``, ``step500``, ``checkpoint-500``). Files ordered by epoch get their epoch in
the results' ``epoch`` column (the curves' x axis); the step goes to ``step``.

The run folder is ``OUT/<DIR name>-<hash of the settings>``; ``checkpoints.json`` there records
each checkpoint's digest, so a rerun redoes nothing finished, scores only new files (training still
running), and redoes a file whose content changed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from t2ibench.errors import ConfigError
from t2ibench.fsutil import atomic_write, inside, remove_inside

log = logging.getLogger("t2ibench.checkpoints")

#: In the run folder: name → digest, epoch, step, format of every checkpoint scored.
CHECKPOINTS_RECORD = "checkpoints.json"
#: Pickle-based adapter files are not loaded (security): they are named in the log and skipped.
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")

# Numbers in names, most specific first: (regex on the stem, "epoch" | "step").
_NAME_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?:^|[-_.\s])(?:global[-_]?)?steps?[-_]?(\d+)", re.I), "step"),
    (re.compile(r"(?:^|[-_.\s])checkpoint[-_]?(\d+)", re.I), "step"),
    (re.compile(r"(?:^|[-_.\s])(?:epoch|ep|e)[-_]?(\d+)", re.I), "epoch"),
    (_TRAILING := re.compile(r"[-_](\d+)$"), "epoch"),  # kohya sd-scripts: NAME-000010
)


@dataclass
class FoundCheckpoint:
    """One adapter of the folder, checked, with its place in training."""

    path: Path
    name: str
    source_format: str  # kohya | lycoris | peft | diffusers
    algorithm: str  # the registered trainer(s) reading it, "+"-joined when mixed
    modules: int
    epoch: int | None
    step: int | None
    order_from: str  # "metadata" | "name"
    sha256: str
    seed: str = ""
    #: the base architectures its keys point at (``sdxl``; several when a naming is shared;
    #: empty when nothing in the keys tells) and the key that shows it
    bases: tuple[str, ...] = ()
    base_key: str = ""


@dataclass
class CheckpointsOptions:
    """One ``t2ibench evaluate-checkpoints``: the folder, the base and dataset, and the run
    settings (``layers`` as in :class:`t2ibench.pipeline.run.RunOptions`, e.g. fewer steps)."""

    folder: str
    base: str | None = None
    base_path: str | None = None
    dataset: str | None = None
    profile: str | None = None
    metric_profile: str | None = None
    layers: Sequence[tuple[str, Mapping[str, Any]]] = ()
    out: str = "results"
    name: str | None = None
    device: str = "cpu"
    progress: bool = True
    allow_pickle: bool = False
    analyze: bool = True
    labels: dict[str, Any] = field(default_factory=dict)


# --- finding and ordering -------------------------------------------------------------------------


def _int(value: Any) -> int | None:
    try:
        out = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return out if out >= 0 else None


def _first(meta: Mapping[str, str], *keys: str) -> int | None:
    for key in keys:
        value = _int(meta.get(key))
        if value is not None:
            return value
    return None


def position_from_metadata(meta: Mapping[str, str]) -> tuple[int | None, int | None]:
    """``(epoch, step)`` a checkpoint's metadata records (None: not recorded)."""
    epoch = _first(meta, "t2ibench_epoch", "ss_epoch")
    step = _first(meta, "t2ibench_step", "ss_steps")
    info = meta.get("training_info")  # ai-toolkit
    if info:
        try:
            data = json.loads(info)
        except json.JSONDecodeError:
            data = {}
        if isinstance(data, dict):
            epoch = epoch if epoch is not None else _int(data.get("epoch"))
            step = step if step is not None else _int(data.get("step"))
    return epoch, step


def position_from_name(stem: str) -> tuple[int | None, int | None]:
    """``(epoch, step)`` a checkpoint's name gives (``NAME-000010``, ``epoch10``, ``step500``)."""
    epoch = step = None
    for pattern, kind in _NAME_PATTERNS:
        m = pattern.search(stem)
        if m is None:
            continue
        if kind == "step" and step is None:
            step = int(m.group(1))
        elif kind == "epoch" and epoch is None and not (pattern is _TRAILING and step is not None):
            epoch = int(m.group(1))
    return epoch, step


def _digest(path: Path) -> str:
    import hashlib

    from t2ibench.fsutil import file_sha256

    if path.is_file():
        return file_sha256(path, memo=True)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}\0{file_sha256(f, memo=True)}\n".encode())
    return h.hexdigest()


def _inspect(path: Path) -> FoundCheckpoint:
    """Read and check one adapter (one line naming the file on any problem)."""
    from t2ibench.adapters.files import read_adapter
    from t2ibench.adapters.foreign import SOURCE_FORMAT, check_known_keys
    from t2ibench.architectures import adapter_architectures
    from t2ibench.pipeline.generate import checkpoint_name

    tensors, meta = read_adapter(path)
    trainers = check_known_keys(tensors, path)
    claims = adapter_architectures(tensors)
    epoch, step = position_from_metadata(meta)
    order_from = "metadata"
    if epoch is None and step is None:
        epoch, step = position_from_name(path.name if path.is_dir() else path.stem)
        order_from = "name"
    return FoundCheckpoint(
        path=path,
        name=checkpoint_name(path),
        source_format=meta.get(SOURCE_FORMAT, "kohya"),
        algorithm="+".join(sorted(set(trainers.values()))),
        modules=len(trainers),
        epoch=epoch,
        step=step,
        order_from=order_from,
        sha256=_digest(path),
        seed=str(meta.get("ss_seed", "")),
        bases=tuple(arch.name for arch, _ in claims),
        base_key=claims[0][1] if claims else "",
    )


def find_checkpoints(folder: Path | str) -> list[FoundCheckpoint]:
    """Every adapter in ``folder`` (not its sub-folders, except adapter folders), checked and in
    training order. Errors (ConfigError / AdapterFileError) are one line naming the file."""
    from t2ibench.adapters.foreign import is_adapter_folder

    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder (a folder of adapter checkpoints)")
    candidates = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_symlink() and not entry.resolve().is_relative_to(folder.resolve()):
            raise ConfigError(f"{entry}: a symlink out of {folder}; refused")
        if entry.is_file() and entry.suffix == ".safetensors":
            candidates.append(entry)
        elif entry.is_dir() and is_adapter_folder(entry):
            candidates.append(entry)
        elif entry.is_file() and entry.suffix in PICKLE_SUFFIXES:
            log.warning("%s: a pickle file, not loaded; convert it to .safetensors", entry)
    if not candidates:
        raise ConfigError(
            f"{folder}: no adapter here (*.safetensors files, PEFT folders with "
            "adapter_config.json, diffusers folders with pytorch_lora_weights.safetensors)"
        )
    found = [_inspect(p) for p in candidates]
    seen: dict[str, Path] = {}
    for f in found:
        if f.name == "base" or f.name in seen:
            other = seen.get(f.name, "the base model's name")
            raise ConfigError(f"{f.path}: its name {f.name!r} is taken by {other}; rename one")
        seen[f.name] = f.path
    return order_checkpoints(found)


def place_final_files(found: list[FoundCheckpoint]) -> None:
    """kohya sd-scripts names the epochs it saves along the way ``NAME-000001``, ``NAME-000002``
    and writes the end of training as plain ``NAME`` (without ``ss_epoch`` metadata when saved
    without it). An unnumbered checkpoint with numbered ``NAME-<digits>`` siblings is that final
    file: the last epoch, after the highest number — one saving interval later when the numbers
    are evenly spaced (what kohya's ``save_every_n_epochs`` gives), else one epoch later. Said in
    the log."""
    by_name = {f.name: f for f in found}
    for final in found:
        if final.epoch is not None or final.step is not None:
            continue
        siblings = sorted(
            f.epoch
            for f in found
            if f.epoch is not None and re.fullmatch(rf"{re.escape(final.name)}-\d+", f.name)
        )
        if not siblings:
            continue
        gaps = {b - a for a, b in zip(siblings, siblings[1:], strict=False)}
        interval = gaps.pop() if len(gaps) == 1 else 1
        final.epoch = siblings[-1] + interval
        final.order_from = "name (kohya's final file)"
        log.warning(
            "%s: no number in its name, beside %s: kohya's final file, taken as the last epoch "
            "(%d, after the highest number %d)",
            final.path.name,
            ", ".join(n for n in sorted(by_name) if n.startswith(final.name + "-")),
            final.epoch,
            siblings[-1],
        )


def order_checkpoints(found: list[FoundCheckpoint]) -> list[FoundCheckpoint]:
    """By epoch when every checkpoint has one, else by step when every one has one (the epoch
    column then stays empty); two at the same place, or one at none, is one line. kohya's
    unnumbered final file goes last (:func:`place_final_files`)."""
    place_final_files(found)
    for key in ("epoch", "step"):
        if all(getattr(f, key) is not None for f in found):
            break
    else:
        lost = next((f for f in found if f.epoch is None and f.step is None), None)
        if lost is not None:
            raise ConfigError(
                f"{lost.path}: cannot tell its epoch or step (no ss_epoch / ss_steps / "
                "t2ibench_epoch metadata, no number in its name); rename it, e.g. NAME-000010"
            )
        lost = next(f for f in found if f.epoch is None)
        raise ConfigError(
            f"{lost.path}: gives only a step where other checkpoints give an epoch; "
            "put one training run's checkpoints in a folder"
        )
    if key == "step":
        for f in found:  # ordered by step: epochs only where every checkpoint gave one
            f.epoch = None
    places: dict[int, FoundCheckpoint] = {}
    for f in found:
        at = getattr(f, key)
        if at in places:
            raise ConfigError(
                f"{f.path} and {places[at].path} are both at {key} {at}; "
                "put one training run's checkpoints in a folder"
            )
        places[at] = f
    return sorted(found, key=lambda f: (getattr(f, key), f.step or 0))


# --- the run --------------------------------------------------------------------------------------


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "checkpoints"


def result_columns(found: FoundCheckpoint, config: str) -> dict[str, Any]:
    """What each results row of ``found`` carries beyond the probe keys."""
    return {
        "config": config,
        "seed": found.seed,
        "epoch": found.epoch,
        "step": found.step,
        "algorithm": found.algorithm,
        "source_format": found.source_format,
    }


def check_bases(found: list[FoundCheckpoint], base: str) -> None:
    """Every checkpoint whose keys name a base family must name the base's (one line naming the
    expected and the found architecture otherwise), before anything is generated."""
    from t2ibench.architectures import BaseMismatchError, get_architecture
    from t2ibench.models.loading import base_architecture, resolve_spec

    arch = base_architecture(*resolve_spec(base))
    for f in found:
        if f.bases and arch.name not in f.bases:
            others = [get_architecture(name) for name in f.bases]
            names = " or ".join(f"{o.title} ({o.name})" for o in others)
            raise BaseMismatchError(
                f"{f.path}: an adapter for {names} (key {f.base_key!r}) but the base is "
                f"{arch.title} ({arch.name}: {base}); pass its base: --base "
                f"{others[0].name} --base-path DIR"
            )


def resolve_checkpoints(options: CheckpointsOptions, found: list[FoundCheckpoint] | None = None):
    """The :class:`~t2ibench.pipeline.run.ResolvedRun` that scores ``found`` (default: what
    :func:`find_checkpoints` finds in the folder) instead of training."""
    import hashlib

    from t2ibench.pipeline.run import RunOptions, resolve

    folder = Path(options.folder)
    found = find_checkpoints(folder) if found is None else found
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if options.base is not None:
        layers.append(("--base", {"base": options.base}))
    if options.base_path is not None:
        layers.append(("--base-path", {"base_path": options.base_path}))
    if options.dataset is not None:
        layers.append(("--dataset", {"dataset": options.dataset}))
    run_options = RunOptions(
        layers=[*layers, *options.layers],
        profile=options.profile,
        device=options.device,
        out=options.out,
        allow_pickle=options.allow_pickle,
        analyze=options.analyze,
        progress=options.progress,
        labels=dict(options.labels),
        metric_profile=options.metric_profile,  # computed by the evaluate stage, as for run
    )
    r = resolve(run_options)
    check_bases(found, r.base)
    config = _slug(folder.resolve().name)
    r.source = GivenCheckpoints(found, config, folder.resolve())
    ident = r.identity()
    r.run_hash = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
    from t2ibench.pipeline.generate import folder_name

    # --name is a leaf name inside --out (``../x`` or ``/x`` becomes a slug, never a path).
    r.run_dir = Path(options.out) / folder_name(options.name or f"{config}-{r.run_hash[:10]}")
    return r


class GivenCheckpoints:
    """The checkpoint source of ``evaluate-checkpoints``, in place of training: the files found,
    in training order. Its work is to forget what a changed file left (:func:`forget_changed`);
    it is done when ``checkpoints.json`` records the digests found now."""

    name = "checkpoints"
    kept = "the checkpoints are as scored before"

    def __init__(self, found: Sequence[FoundCheckpoint], config: str, folder: Path) -> None:
        self.found = list(found)
        self.config = config
        self.folder = folder

    def done(self, run: Any) -> bool:
        before = read_record(run.run_dir)  # checked as untrusted input
        return bool(before) and before == {f.name: f.sha256 for f in self.found}

    def run(self, run: Any) -> None:
        forget_changed(run.run_dir, self.found)

    def checkpoints(self, run: Any) -> list[Path]:
        return [f.path for f in self.found]

    def columns(self, run: Any) -> dict[str, dict[str, Any]]:
        return {f.name: result_columns(f, self.config) for f in self.found}

    def identity(self, resolved: Any) -> Any:
        # each checkpoint is checked by its own digest (checkpoints.json), not by the run hash
        return {"given": "evaluate-checkpoints"}

    def record(self) -> dict[str, Any]:
        return {
            "trainer": "evaluate-checkpoints",
            "checkpoints_folder": str(self.folder),
            "checkpoints": [_record(f) for f in self.found],
        }


def _record(f: FoundCheckpoint) -> dict[str, Any]:
    out = asdict(f)
    out["path"] = str(f.path)
    return out


def read_record(run_dir: Path) -> dict[str, str]:
    """``checkpoints.json`` of a run folder: name → digest. State files are untrusted input (a user
    may edit them): anything but a plain checkpoint name mapped to a hex digest is one line, before
    anything is removed."""
    from t2ibench.pipeline.generate import _SAFE_PART

    path = run_dir / CHECKPOINTS_RECORD
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("%s: not readable JSON; every checkpoint is checked again", path)
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a table of checkpoint name → digest; remove it to rescore")
    for name, digest in data.items():
        if not _SAFE_PART.match(name) or not isinstance(digest, str):
            raise ConfigError(
                f"{path}: {name!r} is not a checkpoint name (a plain file name, no '/' or '..'); "
                "the file was edited? remove it to rescore, nothing was deleted"
            )
    return data


def forget_changed(run_dir: Path, found: Sequence[FoundCheckpoint]) -> list[str]:
    """Before a rerun: a checkpoint whose file changed since it was scored loses its images and
    results (they are made again); when the set changed, the merged table is rebuilt from the
    parts of the checkpoints still there. Returns the names of the changed checkpoints.

    Nothing outside ``run_dir`` is ever removed, whatever ``checkpoints.json`` says
    (:func:`t2ibench.fsutil.remove_inside`)."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINTS_RECORD
    before = read_record(run_dir)
    now = {f.name: f.sha256 for f in found}
    changed = [n for n, digest in now.items() if n in before and before[n] != digest]
    doomed: list[Path] = []
    for name in changed:
        log.warning("%s: the file changed since it was scored; scoring it again", name)
        doomed += [run_dir / "images" / name, run_dir / "results" / "parts" / name]
    if before and (changed or set(before) != set(now)):
        from t2ibench.analysis.anchors import ANCHORS_DIR

        doomed += [run_dir / "results" / "parts" / gone for gone in sorted(set(before) - set(now))]
        doomed += [run_dir / "results" / t for t in ("results.parquet", "results.csv")]
        # copy detection and the image index cover the new images too
        doomed.append(run_dir / "results" / ANCHORS_DIR / "sources.json")
        # --budget adaptive: the rounds' decisions (racing compares every checkpoint) start over;
        # the images of unchanged checkpoints stay, so redoing the rounds makes none of them again
        from t2ibench.pipeline.adaptive import BUDGET_TABLE, STATE_NAME, VALUES_NAME

        doomed += [run_dir / STATE_NAME, run_dir / VALUES_NAME, run_dir / "results" / BUDGET_TABLE]
    for target in doomed:
        inside(target, run_dir)  # all checked before the first removal
    for target in doomed:
        remove_inside(target, run_dir)
    if before != now:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(now, indent=2, sort_keys=True))
    return changed


def evaluate_checkpoints(
    options: CheckpointsOptions, found: list[FoundCheckpoint] | None = None
) -> Path:
    """Find (unless given ``found``), order, generate, score and report; returns the run folder
    (resumable)."""
    from t2ibench.pipeline.run import execute

    found = find_checkpoints(options.folder) if found is None else found
    r = resolve_checkpoints(options, found)
    log.info(
        "checkpoints in order: %s",
        ", ".join(f"{f.name} ({_place(f)})" for f in found),
    )
    return execute(r)


def _place(f: FoundCheckpoint) -> str:
    at = f"epoch {f.epoch}" if f.epoch is not None else f"step {f.step}"
    return f"{at} from its {f.order_from}"


__all__ = [
    "CheckpointsOptions",
    "FoundCheckpoint",
    "evaluate_checkpoints",
    "find_checkpoints",
    "order_checkpoints",
    "position_from_metadata",
    "position_from_name",
    "resolve_checkpoints",
]
