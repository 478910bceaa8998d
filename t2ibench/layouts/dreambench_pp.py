"""Layout ``dreambench-pp``: a method's output folder as DreamBench++ writes and scores it
(Peng et al., ICLR 2025; yuangpeng/dreambench_plus, ``generate_images.py``, ``eval_clip_and_dino.py``).

::

    IMAGES/                                    one method's folder
      src_image/<id>/<i>_<j>.jpg               the instance's source image, one copy per output
      tgt_image/<id>/<i>_<j>.jpg               generated image j for prompt i
      text/<id>/<i>_<j>.txt                    the prompt it was generated from

``<id>`` is DreamBench++'s collection id ``<category>_<index>_<subject>`` (category
``live_subject_animal``, ``live_subject_human``, ``object`` or ``style``). The three folders pair by
``<id>/<i>_<j>``, as the reference scripts do; every generated image needs its source copy and its
prompt, and every source copy and prompt its generated image. The source copies of an instance are
the same image, read once (identical bytes), so each leaf has one reference and scoring against it
is DreamBench++'s per-image pairing. Prompts are used as they are (no identifier). Rows: leaf
"<category>/<id>", prompt type ``alter``, seed j; checkpoint = the method folder's name.
DreamBench++ reports one mean over all images: the rows' mean weighted by ``n_images``.
"""

from __future__ import annotations

import re
from pathlib import Path

from t2ibench.layouts import (
    Layout,
    LayoutError,
    LayoutScan,
    entries,
    image_files,
    make_dataset,
    make_leaf,
    register_layout,
    relative,
    subfolders,
)

#: The reference scripts' IMAGE_EXT (utils/image_utils.py): png, jpeg, jpg in either case
#: (t2ibench matches every layout's suffixes in any case).
SUFFIXES = (".png", ".jpeg", ".jpg")
CATEGORIES = ("live_subject_animal", "live_subject_human", "object", "style")
_ID = re.compile(rf"^({'|'.join(CATEGORIES)})_(\d+)_(.+)$")
_STEM = re.compile(r"^(\d+)_(\d+)$")


def _by_stem(files: list[Path]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in files:
        stem = p.name.rsplit(".", 1)[0]
        if stem in out:
            raise LayoutError(f"{p}: a second file for {stem!r} (also {out[stem].name})")
        out[stem] = p
    return out


def scan(
    images: Path, *, dataset: Path | None, checkpoint: str | None, identifier: str | None
) -> LayoutScan:
    from t2ibench.fsutil import file_sha256
    from t2ibench.pipeline.manifest import ManifestRecord

    for part in ("src_image", "tgt_image", "text"):
        if not (images / part).is_dir():
            raise LayoutError(f"{images / part}: missing (DreamBench++ writes src_image/, "
                              "tgt_image/ and text/ per method)")  # fmt: skip
    checkpoint = checkpoint or images.name
    records, leaves = [], []
    ids = {p.name for p in subfolders(images / "tgt_image", "instance")}
    for part in ("src_image", "text"):  # an instance with sources or prompts but no outputs
        for p in entries(images / part):
            if p.name not in ids:
                raise LayoutError(f"{p}: no tgt_image/{p.name} for it")
    for folder in subfolders(images / "tgt_image", "instance"):
        inst = folder.name
        m = _ID.match(inst)
        if not m:
            raise LayoutError(
                f"{folder}: not a DreamBench++ instance id (<category>_<index>_<subject>, "
                f"category one of {', '.join(CATEGORIES)})"
            )
        for part in ("src_image", "text"):
            if not (images / part / inst).is_dir():
                raise LayoutError(f"{images / part / inst}: missing (for {folder})")
        targets = _by_stem(image_files(folder, SUFFIXES, f"the generated images of {inst}"))
        sources = _by_stem(
            image_files(images / "src_image" / inst, SUFFIXES, f"the sources of {inst}")
        )
        texts = _by_stem(image_files(images / "text" / inst, (".txt",), f"the prompts of {inst}"))
        for stems in (sources, texts):
            extra = sorted(set(stems) - set(targets))
            if extra:
                raise LayoutError(f"{stems[extra[0]]}: no tgt_image/{inst}/{extra[0]}.* for it")
        found = []
        for stem, path in targets.items():
            sm = _STEM.match(stem)
            if not sm:
                raise LayoutError(f"{path}: expected <prompt index>_<image index> (e.g. 0_0.jpg)")
            for stems, where in ((sources, "src_image"), (texts, "text")):
                if stem not in stems:
                    raise LayoutError(f"{path}: no {where}/{inst}/{stem}.* for it")
            found.append((int(sm.group(1)), int(sm.group(2)), stem, path))
        # The copies of the source image: one reference per distinct content.
        distinct: dict[str, Path] = {}
        for stem in sorted(sources):
            distinct.setdefault(file_sha256(sources[stem]), sources[stem])
        # The instance id as the "identifier": it never occurs in a prompt, so cleaning keeps
        # the prompts as they are.
        leaf = make_leaf(m.group(1), inst, list(distinct.values()), inst, m.group(3))
        leaves.append(leaf)
        for index, (_, j, stem, path) in enumerate(sorted(found)):
            prompt = texts[stem].read_text(encoding="utf-8").strip()
            records.append(ManifestRecord(checkpoint, leaf.key, "alter", prompt, j,
                                          relative(images, path), index))  # fmt: skip
    return LayoutScan(
        layout="dreambench-pp",
        root=images,
        records=records,
        dataset=make_dataset(images, "dreambench-pp", leaves),
        identifier_free=True,
    )


register_layout(
    Layout(
        name="dreambench-pp",
        description="DreamBench++: IMAGES/{src_image,tgt_image,text}/<id>/<i>_<j>.*",
        scan=scan,
        needs_dataset=False,
    )
)
