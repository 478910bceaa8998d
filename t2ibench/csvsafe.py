"""Spreadsheet-safe CSV: text cells that a spreadsheet would run as a formula get a leading ``'``.

Excel, LibreOffice and Google Sheets evaluate a cell that starts with ``=``, ``+``, ``-`` or ``@``
(and, after a tab or carriage return, the same), so a class named ``=cmd|' /C calc'!A0`` in a results
table would run on opening the CSV (OWASP "CSV injection"). Every CSV t2ibench writes goes through
:func:`to_csv`; numbers are left alone (``-0.5`` stays a number, in numeric and text columns alike).

The escape is reversible: :func:`unescape_cell` drops the one added quote, so a CSV written here
reads back to the original strings (``read_results`` does this for the text columns).
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

# One or more quotes before a trigger are escaped too, so that escaping stays a bijection.
_NEEDS_QUOTE = re.compile(r"^'*[=+\-@\t\r]")
_ESCAPED = re.compile(r"^'+[=+\-@\t\r]")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def escape_cell(value: Any) -> Any:
    """``value`` with a leading ``'`` when it is text a spreadsheet would read as a formula."""
    if isinstance(value, str) and _NEEDS_QUOTE.match(value) and not _is_number(value):
        return "'" + value
    return value


def unescape_cell(value: Any) -> Any:
    """The inverse of :func:`escape_cell` (for text read back from a CSV written here)."""
    if isinstance(value, str) and _ESCAPED.match(value) and not _is_number(value[1:]):
        return value[1:]
    return value


def _escape_values(values: pd.Index | pd.Series) -> Any:
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        return values.map(escape_cell)
    return values


def neutralise(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells, column names and index labels are spreadsheet-safe."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col].dtype):
            out[col] = out[col].map(escape_cell)
    out.columns = pd.Index([escape_cell(c) for c in out.columns], name=out.columns.name)
    if isinstance(out.index, pd.MultiIndex):
        out.index = out.index.set_levels([_escape_values(lv) for lv in out.index.levels])
    elif not isinstance(out.index, pd.RangeIndex):
        out.index = _escape_values(out.index)
    return out


def to_csv(df: pd.DataFrame, path: Any, **kwargs: Any) -> None:
    """``df.to_csv(path, **kwargs)`` with every text cell neutralised (see :func:`neutralise`)."""
    neutralise(df).to_csv(path, **kwargs)
