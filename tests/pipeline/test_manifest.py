"""read_manifest: tolerant of a truncated tail, strict about everything else, no path escapes."""

from __future__ import annotations

import json
import os

import pytest

from t2ibench.pipeline.manifest import (
    ManifestError,
    ManifestRecord,
    append_records,
    read_manifest,
    repair_tail,
    safe_join,
)


def rec(file="a/b/trigger/0000-s1000.png", **kw):
    base = dict(
        checkpoint="base", leaf="a/b", prompt_type="trigger", prompt="p", seed=1000, file=file
    )
    return {**base, **kw}


def write(path, rows, tail=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
    return path


def test_roundtrip(tmp_path):
    r = ManifestRecord(
        "base",
        "a/b",
        "style",
        "p",
        1001,
        "a/b/style/0001-s1001.png",
        1,
        "ab" * 32,
        "pixel art",
        {"steps": 2},
    )
    append_records(tmp_path / "manifest.jsonl", [r])
    assert read_manifest(tmp_path / "manifest.jsonl") == [r]
    assert read_manifest(tmp_path / "manifest.jsonl")[0].settings == {"steps": 2}


def test_truncated_last_line_is_tolerated_and_repaired(tmp_path):
    path = write(tmp_path / "manifest.jsonl", [rec()], tail='{"checkpoint": "ba')
    assert len(read_manifest(path)) == 1
    repair_tail(path)
    assert path.read_text().endswith("\n") and len(path.read_text().splitlines()) == 1
    append_records(path, [ManifestRecord(**rec(file="x.png"))])
    assert [r.file for r in read_manifest(path)] == ["a/b/trigger/0000-s1000.png", "x.png"]


def test_bad_line_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "manifest.jsonl"
    path.write_text(json.dumps(rec()) + "\n{broken\n" + json.dumps(rec(file="c.png")) + "\n")
    with pytest.raises(ManifestError, match="line 2"):
        read_manifest(path)


def test_missing_field_and_wrong_type(tmp_path):
    bad = rec()
    del bad["seed"]
    with pytest.raises(ManifestError, match="'seed'"):
        read_manifest(write(tmp_path / "m1.jsonl", [bad]))
    with pytest.raises(ManifestError, match="'seed' must be an integer"):
        read_manifest(write(tmp_path / "m2.jsonl", [rec(seed="1000")]))


@pytest.mark.parametrize(
    "file, match",
    [
        ("../outside.png", "escapes"),
        ("a/../../outside.png", "escapes"),
        ("/etc/passwd", "absolute"),
        ("C:/x.png", "absolute"),
        ("a\\..\\x.png", "absolute"),
    ],
)
def test_path_escape_refused(tmp_path, file, match):
    path = write(tmp_path / "manifest.jsonl", [rec(file=file)])
    with pytest.raises(ManifestError, match=match) as err:
        read_manifest(path)
    assert "manifest.jsonl line 1" in str(err.value) and "'file'" in str(err.value)


def test_symlink_escape_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "images"
    root.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(ManifestError, match="resolves outside"):
        safe_join(root, "link/x.png", where="test")
    assert safe_join(root, "ok/x.png", where="test") == root / "ok" / "x.png"


def test_item17_duplicate_manifest_lines(tmp_path, caplog):
    # a line repeated word for word is read once, and said
    path = write(
        tmp_path / "manifest.jsonl", [rec(index=0), rec(index=1, file="x.png"), rec(index=0)]
    )
    with caplog.at_level("WARNING"):
        assert [r.index for r in read_manifest(path)] == [0, 1]
    assert "1 repeated line" in caplog.text
    # two different lines for one file: which one describes the image is unknown
    path = write(tmp_path / "manifest.jsonl", [rec(prompt="old"), rec(prompt="new")])
    with pytest.raises(ManifestError, match="line 2: file .* also on line 1"):
        read_manifest(path)
    # one image under two files would be scored twice
    path = write(tmp_path / "manifest.jsonl", [rec(index=3), rec(index=3, file="copy.png")])
    with pytest.raises(ManifestError, match="copy.png.*scored twice|scored twice"):
        read_manifest(path)


def test_minimal_manifest_from_another_tool(tmp_path):
    path = write(tmp_path / "manifest.jsonl", [rec()])
    (r,) = read_manifest(path)
    assert r.sha256 is None and r.index is None and r.path(tmp_path) == tmp_path / r.file
