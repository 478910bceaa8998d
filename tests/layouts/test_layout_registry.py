"""The layout registry: built-ins register themselves, a plug-in layout plugs in the same way,
an unknown name is one line with the known ones."""

from __future__ import annotations

import pytest
from layout_testing import noise

from t2ibench.errors import T2IBenchError
from t2ibench.layouts import (
    LAYOUTS,
    Layout,
    LayoutScan,
    get_layout,
    image_files,
    list_layouts,
    make_dataset,
    make_leaf,
    register_layout,
    relative,
    scan_layout,
)
from t2ibench.pipeline.manifest import ManifestRecord


def test_builtins_and_unknown_name():
    assert {"t2ibench", "dreambooth", "customconcept101", "dreambench-pp"} <= set(list_layouts())
    assert get_layout("dreambooth").default_identifier == "sks"
    with pytest.raises(T2IBenchError, match="Did you mean 'dreambooth'"):
        get_layout("dreambooht")


def test_a_plugin_layout(tmp_path, monkeypatch):
    """A flat folder of <concept>.png next to refs/<concept>.png: one leaf per concept."""

    def scan(images, *, dataset, checkpoint, identifier):
        leaves, records = [], []
        for p in image_files(images, (".png",), "an image"):
            leaf = make_leaf("flat", p.stem, [dataset / f"{p.stem}.png"], "zz", p.stem)
            leaves.append(leaf)
            records.append(ManifestRecord(checkpoint or "x", leaf.key, "trigger", p.stem, 0,
                                          relative(images, p), 0))  # fmt: skip
        return LayoutScan("flat", images, records, make_dataset(dataset, "flat", leaves))

    monkeypatch.setitem(LAYOUTS._items, "flat", None)
    register_layout(Layout("flat", "flat test layout", scan), overwrite=True)
    noise(tmp_path / "gen" / "cat.png", 1)
    noise(tmp_path / "refs" / "cat.png", 2)
    got = scan_layout("flat", tmp_path / "gen", dataset=tmp_path / "refs")
    assert [r.leaf for r in got.records] == ["flat/cat"] and got.single_reference
