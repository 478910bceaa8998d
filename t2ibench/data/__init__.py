"""The t2ibench dataset spec: a kohya-style folder tree plus a ``dataset.toml``.

Layout::

    ROOT/
      dataset.toml
      <category>/<class>/image.png + image.txt           (leaf "<category>/<class>")
      <category>/<class>/<subclass>/image.png + .txt      (leaf "<category>/<class>/<subclass>")

``dataset.toml``::

    [dataset]
    name = "my-concepts"                     # optional

    [classes."anime/abukuma"]
    trigger = "whoo"                         # unique token of the class
    class_word = "anime girl"
    kind = "character"                       # character | object | scene | style (text cleaning)
    class_name = "abukuma"                   # optional; replaces the trigger for objects/scenes
    alter_templates = "person"               # a set in prompts/alter/, or a .txt in ROOT
    repeats = "auto"                         # or an int; auto balances classes
    descriptor = "whoo anime girl"           # optional; default "<trigger> <class_word>"

    [classes."anime/abukuma".subclasses."onex_outfit"]
    trigger = "onex"
    keyword = "onex outfit"                  # the caption's subclass keyword

Captions follow the paper: ``"[trigger] [class word], [subclass keyword], tag1, ..."``; each caption
must contain its class trigger (and its subclass trigger) as a whole word.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from t2ibench.errors import DatasetError
from t2ibench.fsutil import file_sha256

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
KINDS = ("character", "object", "scene", "style")
DATASET_FILE = "dataset.toml"
_CLASS_KEYS = {
    "trigger",
    "class_word",
    "kind",
    "class_name",
    "alter_templates",
    "repeats",
    "descriptor",
    "subclasses",
}
_SUBCLASS_KEYS = {"trigger", "keyword", "descriptor"}


def contains_word(text: str, word: str) -> bool:
    """Whole-word, case-insensitive containment (``wai`` is not in ``waist``)."""
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, flags=re.IGNORECASE) is not None


@dataclass(frozen=True)
class Subclass:
    name: str
    trigger: str
    keyword: str
    descriptor: str | None = None


@dataclass(frozen=True)
class Concept:
    """One class of the dataset (``key`` = "<category>/<class>")."""

    key: str
    category: str
    name: str
    trigger: str
    class_word: str
    kind: str
    class_name: str
    alter_templates: str
    repeats: int | str
    descriptor: str
    subclasses: dict[str, Subclass] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageRecord:
    path: Path
    caption: str
    leaf: str
    concept: str


@dataclass(frozen=True)
class Leaf:
    """The unit of evaluation: a class, or a subclass (outfit) of a class."""

    key: str
    concept: Concept
    subclass: Subclass | None
    images: tuple[ImageRecord, ...]

    @property
    def category(self) -> str:
        return self.concept.category

    @property
    def descriptor(self) -> str:
        """The concept descriptor that trigger/alter/style prompts are built from."""
        if self.subclass is None:
            return self.concept.descriptor
        if self.subclass.descriptor:
            return self.subclass.descriptor
        return f"{self.concept.descriptor}, {self.subclass.keyword}"

    @property
    def captions(self) -> list[str]:
        return [im.caption for im in self.images]


@dataclass
class Dataset:
    root: Path
    name: str
    concepts: dict[str, Concept]
    leaves: dict[str, Leaf]

    @property
    def images(self) -> list[ImageRecord]:
        return [im for leaf in self.leaves.values() for im in leaf.images]

    def concept_images(self, concept_key: str) -> list[ImageRecord]:
        return [im for im in self.images if im.concept == concept_key]

    @cached_property
    def _auto_repeats(self) -> dict[str, int]:
        counts = {k: len(self.concept_images(k)) for k in self.concepts}
        most = max(counts.values())
        return {k: max(1, round(most / n)) for k, n in counts.items()}

    def repeats(self, concept_key: str) -> int:
        """Times each image of the class is shown per epoch ("auto": equal exposure per class,
        the class with the most images gets 1, as in the paper's Tables 3–4)."""
        r = self.concepts[concept_key].repeats
        return self._auto_repeats[concept_key] if r == "auto" else int(r)

    @cached_property
    def sha256(self) -> str:
        """Content hash of dataset.toml, every image and every caption (paths included)."""
        h = hashlib.sha256()
        h.update((self.root / DATASET_FILE).read_bytes())
        for im in sorted(self.images, key=lambda r: r.path.as_posix()):
            rel = im.path.relative_to(self.root).as_posix()
            h.update(rel.encode() + b"\0" + bytes.fromhex(file_sha256(im.path)))
            h.update(im.caption.encode() + b"\0")
        return h.hexdigest()

    def tree(self):
        """A rich Tree: categories → classes → leaves with image counts and repeats."""
        from rich.tree import Tree

        top = Tree(f"[bold]{self.name}[/] ({len(self.images)} images, {len(self.leaves)} leaves)")
        for cat in sorted({c.category for c in self.concepts.values()}):
            cat_node = top.add(f"[bold]{cat}[/]")
            for key in sorted(k for k, c in self.concepts.items() if c.category == cat):
                c = self.concepts[key]
                n = len(self.concept_images(key))
                node = cat_node.add(
                    f"{c.name}  trigger={c.trigger!r} kind={c.kind} images={n} "
                    f"repeats={self.repeats(key)}"
                )
                for leaf in sorted(
                    (lf for lf in self.leaves.values() if lf.concept.key == key),
                    key=lambda lf: lf.key,
                ):
                    node.add(f"{leaf.key}: {len(leaf.images)} images, '{leaf.descriptor}'")
        return top


def _err(path: Path, field_name: str, message: str) -> DatasetError:
    return DatasetError(f"{path}: {field_name}: {message}")


def _str_field(table: dict, key: str, where: Path, field_prefix: str, default=None) -> str:
    value = table.get(key, default)
    if value is None:
        raise _err(where, f"{field_prefix}.{key}", "missing (required)")
    if not isinstance(value, str) or not value.strip():
        raise _err(where, f"{field_prefix}.{key}", f"must be a non-empty string, got {value!r}")
    return value.strip()


def _parse_concepts(toml_path: Path) -> tuple[str, dict[str, Concept]]:
    try:
        spec = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _err(toml_path, "file", "missing: every dataset needs a dataset.toml") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _err(toml_path, "syntax", str(exc)) from None
    unknown = set(spec) - {"dataset", "classes"}
    if unknown:
        raise _err(toml_path, ", ".join(sorted(unknown)), "unknown top-level key")
    meta = spec.get("dataset", {})
    if set(meta) - {"name"}:
        raise _err(toml_path, "dataset." + ", ".join(sorted(set(meta) - {"name"})), "unknown key")
    name = str(meta.get("name", toml_path.parent.name))
    classes = spec.get("classes")
    if not classes:
        raise _err(toml_path, "classes", 'no [classes."<category>/<class>"] table')
    concepts: dict[str, Concept] = {}
    triggers: dict[str, str] = {}
    for key, table in classes.items():
        fp = f'classes."{key}"'
        parts = key.split("/")
        if len(parts) != 2 or not all(parts) or any(p in (".", "..") for p in parts):
            raise _err(toml_path, fp, "key must be '<category>/<class>'")
        if not isinstance(table, dict):
            raise _err(toml_path, fp, "must be a table")
        unknown = set(table) - _CLASS_KEYS
        if unknown:
            raise _err(
                toml_path,
                f"{fp}.{sorted(unknown)[0]}",
                f"unknown key (known: {sorted(_CLASS_KEYS)})",
            )
        trigger = _str_field(table, "trigger", toml_path, fp)
        class_word = _str_field(table, "class_word", toml_path, fp)
        kind = _str_field(table, "kind", toml_path, fp)
        if kind not in KINDS:
            raise _err(toml_path, f"{fp}.kind", f"must be one of {KINDS}, got {kind!r}")
        repeats = table.get("repeats", "auto")
        if not (repeats == "auto" or (isinstance(repeats, int) and repeats >= 1)):
            raise _err(
                toml_path, f"{fp}.repeats", f"must be 'auto' or an integer ≥ 1, got {repeats!r}"
            )
        if trigger.lower() in triggers:
            raise _err(
                toml_path,
                f"{fp}.trigger",
                f"{trigger!r} is also the trigger of {triggers[trigger.lower()]}",
            )
        triggers[trigger.lower()] = key
        subclasses = {}
        for sub_name, sub in (table.get("subclasses") or {}).items():
            sfp = f"{fp}.subclasses.{sub_name}"
            if not isinstance(sub, dict):
                raise _err(toml_path, sfp, "must be a table")
            if set(sub) - _SUBCLASS_KEYS:
                raise _err(
                    toml_path, f"{sfp}.{sorted(set(sub) - _SUBCLASS_KEYS)[0]}", "unknown key"
                )
            sub_trigger = _str_field(sub, "trigger", toml_path, sfp)
            keyword = _str_field(sub, "keyword", toml_path, sfp, default=f"{sub_trigger} outfit")
            subclasses[sub_name] = Subclass(sub_name, sub_trigger, keyword, sub.get("descriptor"))
        concepts[key] = Concept(
            key=key,
            category=parts[0],
            name=parts[1],
            trigger=trigger,
            class_word=class_word,
            kind=kind,
            class_name=_str_field(table, "class_name", toml_path, fp, default=class_word),
            alter_templates=_str_field(table, "alter_templates", toml_path, fp),
            repeats=repeats,
            descriptor=_str_field(
                table, "descriptor", toml_path, fp, default=f"{trigger} {class_word}"
            ),
            subclasses=subclasses,
        )
    return name, concepts


def _check_inside(root: Path, path: Path, field_name: str) -> None:
    """Refuse a symlink (or a symlinked folder above it) that leads outside the dataset folder,
    as ``../`` paths are refused: a caption linked to an outside file would become prompts."""
    real = path.resolve()
    if not real.is_relative_to(root):
        raise _err(path, field_name, f"resolves to {real}, outside the dataset folder {root}")


def _read_image_record(
    img: Path, leaf: str, concept: Concept, sub: Subclass | None, root: Path
) -> ImageRecord:
    from t2ibench.images import check_image

    _check_inside(root, img, "image")
    try:
        check_image(img)  # the shared decoder's cheap check (a truncated JPEG included)
    except DatasetError as exc:
        reason = str(exc).removeprefix(f"{img}: ")
        raise _err(img, "image", reason) from None
    cap_path = img.with_suffix(".txt")
    if not cap_path.is_file():
        raise _err(img, "caption", f"missing caption file {cap_path.name}")
    _check_inside(root, cap_path, "caption")
    try:
        caption = cap_path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise _err(cap_path, "caption", "not UTF-8 text") from None
    if not caption:
        raise _err(cap_path, "caption", "empty caption")
    if not contains_word(caption, concept.trigger):
        raise _err(
            cap_path,
            "caption",
            f"does not contain the trigger {concept.trigger!r} of {concept.key}",
        )
    if sub is not None and not contains_word(caption, sub.trigger):
        raise _err(cap_path, "caption", f"does not contain the subclass trigger {sub.trigger!r}")
    return ImageRecord(path=img, caption=caption, leaf=leaf, concept=concept.key)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_dataset(path: str | Path) -> Dataset:
    """Read and validate a dataset folder. Raises :class:`DatasetError` naming file and field."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise _err(root, "dataset", "not a folder")
    if (root / DATASET_FILE).exists():
        _check_inside(root, root / DATASET_FILE, "file")
    name, concepts = _parse_concepts(root / DATASET_FILE)
    leaves: dict[str, Leaf] = {}
    for key, concept in concepts.items():
        folder = root / key
        if not folder.is_dir():
            raise _err(root / DATASET_FILE, f'classes."{key}"', f"folder {folder} does not exist")
        _check_inside(root, folder, "folder")
        direct = _images_in(folder)
        if direct:
            records = tuple(_read_image_record(p, key, concept, None, root) for p in direct)
            leaves[key] = Leaf(key, concept, None, records)
        for sub_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            sub = concept.subclasses.get(sub_dir.name)
            if sub is None:
                raise _err(
                    sub_dir,
                    f'classes."{key}".subclasses',
                    f'subfolder {sub_dir.name!r} has no [classes."{key}".subclasses.{sub_dir.name}] entry',
                )
            _check_inside(root, sub_dir, "folder")
            leaf_key = f"{key}/{sub_dir.name}"
            records = tuple(
                _read_image_record(p, leaf_key, concept, sub, root) for p in _images_in(sub_dir)
            )
            if not records:
                raise _err(sub_dir, "images", "empty leaf: no images")
            leaves[leaf_key] = Leaf(leaf_key, concept, sub, records)
        for sub_name in concept.subclasses:
            if not (folder / sub_name).is_dir():
                raise _err(
                    root / DATASET_FILE,
                    f'classes."{key}".subclasses.{sub_name}',
                    f"folder {folder / sub_name} does not exist",
                )
        if not any(lf.concept.key == key for lf in leaves.values()):
            raise _err(folder, "images", "empty leaf: the class has no images")
    # Image folders not declared in dataset.toml would silently be skipped: refuse them.
    for cat_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for cls_dir in sorted(p for p in cat_dir.iterdir() if p.is_dir()):
            key = f"{cat_dir.name}/{cls_dir.name}"
            if key not in concepts and (
                _images_in(cls_dir) or any(p.is_dir() for p in cls_dir.iterdir())
            ):
                raise _err(
                    root / DATASET_FILE,
                    "classes",
                    f'folder {key} has images but no [classes."{key}"] entry',
                )
    return Dataset(root=root, name=name, concepts=concepts, leaves=leaves)


from t2ibench.data.demo import make_demo_dataset  # noqa: E402

__all__ = [
    "KINDS",
    "Concept",
    "Dataset",
    "DatasetError",
    "ImageRecord",
    "Leaf",
    "Subclass",
    "contains_word",
    "load_dataset",
    "make_demo_dataset",
]
