"""Image-folder layouts: how ``t2ibench evaluate IMAGES --layout NAME`` reads folders other tools
and benchmarks write (DreamBooth's subjects, CustomConcept101's sample folders, DreamBench++'s
source / prompt / generated triplets, and t2ibench's own manifest).

A layout turns a folder into a :class:`LayoutScan`: the generated images as manifest records
(checkpoint, leaf, prompt type, prompt, seed, file — the results schema's keys) and an in-memory
:class:`~t2ibench.data.Dataset` whose leaves hold each subject's reference images and say which
identifier the text cleaning removes. The evaluate stage then scores it exactly as it scores
t2ibench's own images. A folder that does not fit stops with one :class:`LayoutError` line naming
the first file or folder (in sorted order) that does not.

File names: image extensions match in any case (``00.JPG`` is a JPEG); the files operating systems
and file managers leave behind (:data:`OS_FILES`: ``Thumbs.db``, ``desktop.ini``, ``.DS_Store``,
macOS ``._*`` AppleDouble files, ``__MACOSX/``, ...) and hidden files are skipped. Every image a
scan lists (generated and reference) is then decode-checked (:func:`t2ibench.images.check_image`)
before the scan returns, so an undecodable file stops the run before any encoder loads, with one
line naming it; "not a readable image" means exactly that.

Each built-in layout is one module in this package that registers itself
(:func:`register_layout` at its bottom); third parties register through the entry-point group
``t2ibench.layouts``. Light: no torch.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from t2ibench.data import Concept, Dataset, ImageRecord, Leaf
from t2ibench.errors import DatasetError, T2IBenchError
from t2ibench.pipeline.manifest import ManifestRecord
from t2ibench.registry import Registry


class LayoutError(T2IBenchError, ValueError):
    """A folder does not fit the layout asked for; the message names the first path that does not."""


@dataclass(frozen=True)
class LayoutScan:
    """What a layout read: images under ``root`` (``records[i].file`` is relative to it)."""

    layout: str
    root: Path
    records: list[ManifestRecord]
    dataset: Dataset
    #: the prompts carry no identifier, so text cleaning leaves them as they are
    identifier_free: bool = False
    checkpoint_info: dict[str, dict] = field(default_factory=dict)

    @property
    def single_reference(self) -> bool:
        """Every leaf has exactly one reference image: pairing each image with its own
        reference is then the all-pairs mean over the leaf."""
        return all(len(leaf.images) == 1 for leaf in self.dataset.leaves.values())


@dataclass(frozen=True)
class Layout:
    """A registered layout. ``scan(images, dataset=..., checkpoint=..., identifier=...)``;
    ``dataset`` is the references folder for layouts that keep them apart (``needs_dataset``)."""

    name: str
    description: str
    scan: Callable[..., LayoutScan] = field(repr=False)
    needs_dataset: bool = True
    #: what ``identifier`` defaults to (the token the layout's prompts use)
    default_identifier: str | None = None


LAYOUTS: Registry[Layout] = Registry("layout", entry_point_group="t2ibench.layouts")
DEFAULT_LAYOUT = "t2ibench"


def register_layout(layout: Layout, *, overwrite: bool = False) -> Layout:
    LAYOUTS.register(layout.name, layout, overwrite=overwrite)
    return layout


def get_layout(name: str) -> Layout:
    return LAYOUTS.get(name)


def list_layouts() -> list[str]:
    return LAYOUTS.names()


def scan_layout(
    name: str,
    images: str | Path,
    *,
    dataset: str | Path | None = None,
    checkpoint: str | None = None,
    identifier: str | None = None,
) -> LayoutScan:
    """Read ``images`` as layout ``name``; :class:`LayoutError` if it does not fit."""
    layout = get_layout(name)
    images = Path(images).expanduser()
    if not images.is_dir():
        raise LayoutError(f"{images}: not a folder (layout {name} reads a folder of images)")
    if layout.needs_dataset and dataset is None:
        raise LayoutError(
            f"--dataset: layout {name} needs the references folder ({layout.description})"
        )
    if dataset is not None:
        dataset = Path(dataset).expanduser()
        if not dataset.is_dir():
            raise LayoutError(f"{dataset}: not a folder (the references of layout {name})")
    scan = layout.scan(
        images.absolute(),
        dataset=None if dataset is None else dataset.absolute(),
        checkpoint=checkpoint,
        identifier=identifier if identifier is not None else layout.default_identifier,
    )
    check_images(scan)
    return scan


def check_images(scan: LayoutScan) -> None:
    """Decode-check every image ``scan`` lists, generated and reference, in order (cheap: see
    :func:`t2ibench.images.check_image`); :class:`LayoutError` naming the first that fails."""
    from t2ibench.images import check_image

    paths = [scan.root / r.file for r in scan.records]
    paths += [im.path for leaf in scan.dataset.leaves.values() for im in leaf.images]
    for path in dict.fromkeys(paths):
        try:
            check_image(path)
        except DatasetError as exc:
            raise LayoutError(str(exc)) from None


# --- helpers the layouts share ---------------------------------------------------------------

#: What operating systems, file managers and archivers leave in folders (lower-case names): never
#: a user's image or subject, skipped by every layout. Hidden names (``.DS_Store``, ``._*``
#: AppleDouble files, ``.ipynb_checkpoints``) are skipped too.
OS_FILES = frozenset(
    {
        "thumbs.db",  # Windows Explorer thumbnail cache
        "ehthumbs.db",
        "ehthumbs_vista.db",
        "desktop.ini",  # Windows folder settings
        "icon\r",  # macOS custom folder icon
        "__macosx",  # macOS zip resource forks
        "$recycle.bin",
        "system volume information",
        "@eadir",  # Synology NAS thumbnails
    }
)


def is_os_file(name: str) -> bool:
    """A hidden file or one of :data:`OS_FILES`: not part of a layout."""
    return name.startswith(".") or name.lower() in OS_FILES


def entries(folder: Path) -> list[Path]:
    """``folder``'s entries in sorted order, hidden ones (``.DS_Store``, ``._00.jpg``,
    ``.ipynb_checkpoints``) and :data:`OS_FILES` (``Thumbs.db``, ``desktop.ini``) skipped; a
    symlink leading outside ``folder`` is refused."""
    out = []
    real = folder.resolve()
    for p in sorted(folder.iterdir(), key=lambda q: q.name):
        if is_os_file(p.name):
            continue
        if not p.resolve().is_relative_to(real):
            raise LayoutError(f"{p}: a link to {p.resolve()}, outside {folder}")
        out.append(p)
    return out


def image_files(folder: Path, suffixes: Iterable[str], what: str) -> list[Path]:
    """The files of ``folder`` (``what``: e.g. "the real images of subject 'dog'"), their suffixes
    matched in any case (``.JPG`` = ``.jpg``); a file with another suffix or a folder is an error
    (whether a file decodes is :func:`check_images`' question, asked after the scan)."""
    suffixes = tuple(dict.fromkeys(s.lower() for s in suffixes))
    out = []
    for p in entries(folder):
        if not p.is_file():
            raise LayoutError(f"{p}: a folder among {what} (expected only files here)")
        if not p.name.lower().endswith(suffixes):
            raise LayoutError(
                f"{p}: unexpected file among {what} (expected names ending "
                f"{', '.join(suffixes)}, in any case)"
            )
        out.append(p)
    if not out:
        raise LayoutError(f"{folder}: no files ending {', '.join(suffixes)} ({what})")
    return out


def subfolders(folder: Path, what: str) -> list[Path]:
    out = []
    for p in entries(folder):
        if not p.is_dir():
            raise LayoutError(f"{p}: not a folder (expected only {what} folders here)")
        out.append(p)
    if not out:
        raise LayoutError(f"{folder}: no {what} folders")
    return out


def make_leaf(
    category: str,
    name: str,
    references: Sequence[Path],
    identifier: str,
    class_word: str,
) -> Leaf:
    """A leaf "<category>/<name>" with ``references``; text cleaning removes ``identifier`` (a
    whole word) and keeps the rest ("a sks dog" → "a dog"), as t2ibench does for characters."""
    key = f"{category}/{name}"
    concept = Concept(
        key=key,
        category=category,
        name=name,
        trigger=identifier,
        class_word=class_word,
        kind="character",
        class_name=class_word,
        alter_templates="",
        repeats=1,
        descriptor=f"{identifier} {class_word}",
    )
    images = tuple(ImageRecord(path=p, caption="", leaf=key, concept=key) for p in references)
    return Leaf(key=key, concept=concept, subclass=None, images=images)


def make_dataset(root: Path, name: str, leaves: Iterable[Leaf]) -> Dataset:
    leaves = {lf.key: lf for lf in leaves}
    return Dataset(
        root=root,
        name=name,
        concepts={lf.concept.key: lf.concept for lf in leaves.values()},
        leaves=leaves,
    )


def relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


# Built-in layouts register themselves on import: every module of this package.
for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = [
    "DEFAULT_LAYOUT",
    "LAYOUTS",
    "Layout",
    "LayoutError",
    "LayoutScan",
    "OS_FILES",
    "check_images",
    "get_layout",
    "is_os_file",
    "list_layouts",
    "register_layout",
    "scan_layout",
]
