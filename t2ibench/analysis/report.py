"""Render the analysis as one self-contained HTML file (images inlined) and a Markdown summary.

Every string that comes from the data (config names, captions, categories, file names) goes through
:func:`html.escape` in HTML and :func:`md_escape` in Markdown, so a value such as ``<script>`` shows
as text.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from t2ibench.fsutil import atomic_write


@dataclass
class Section:
    """One report section: paragraphs, tables and figures, in order."""

    title: str
    blocks: list[tuple[str, object]] = field(default_factory=list)

    def text(self, s: str) -> Section:
        self.blocks.append(("text", s))
        return self

    def bullets(self, items: list[str]) -> Section:
        self.blocks.append(("bullets", items))
        return self

    def table(self, df: pd.DataFrame, caption: str = "", max_rows: int = 60) -> Section:
        self.blocks.append(("table", (df, caption, max_rows)))
        return self

    def figure(self, path: Path, caption: str = "") -> Section:
        self.blocks.append(("figure", (path, caption)))
        return self

    def link(self, href: str, text: str) -> Section:
        """A link to a companion page (a relative path inside the report folder)."""
        self.blocks.append(("link", (href, text)))
        return self

    def grid(self, header: list[str], rows: list[tuple[str, list]], caption: str = "") -> Section:
        """An image grid: ``rows`` of ``(label, [data URI or None, ...])`` under ``header``."""
        self.blocks.append(("grid", (header, rows, caption)))
        return self


def _fmt(v: object) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3g}"
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return ""
    return str(v)


def md_escape(s: str) -> str:
    """Escape a data string for a Markdown table cell or paragraph."""
    s = html.escape(s, quote=False)
    for ch in ("\\", "|", "*", "_", "`", "[", "]"):
        s = s.replace(ch, "\\" + ch)
    return s.replace("\n", " ")


def _cell(text: str) -> str:
    """Escaped cell text that may wrap after ``_`` and ``/`` (``mean_abs_shap_lr_level``,
    ``<run>/<checkpoint>``): with ``table{max-width:100%}`` tables then fit the page without
    breaking words elsewhere."""
    return html.escape(text).replace("_", "_<wbr>").replace("/", "/<wbr>")


def _html_table(df: pd.DataFrame, caption: str, max_rows: int) -> str:
    shown = df.head(max_rows)
    head = "".join(f"<th>{_cell(str(c))}</th>" for c in shown.columns)
    idx = shown.index.name is not None or not isinstance(shown.index, pd.RangeIndex)
    if idx:
        head = f"<th>{_cell(str(shown.index.name or ''))}</th>" + head
    rows = []
    for i, r in shown.iterrows():
        cells = "".join(f"<td>{_cell(_fmt(v))}</td>" for v in r.to_numpy())
        if idx:
            cells = f"<th>{_cell(_fmt(i))}</th>" + cells
        rows.append(f"<tr>{cells}</tr>")
    more = (
        f"<p class='note'>{len(df) - max_rows} more rows in the CSV.</p>"
        if len(df) > max_rows
        else ""
    )
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (
        f"<div class='scroll'><table>{cap}<thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>{more}"
    )


def _html_grid(header: list[str], rows: list[tuple[str, list]], caption: str) -> str:
    head = "<th></th>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for label, cells in rows:
        tds = []
        for h, uri in zip(header, cells, strict=False):
            if uri and str(uri).startswith("data:image/"):
                alt = html.escape(f"{h}: {label}", quote=True)
                tds.append(f"<td><img class='thumb' alt='{alt}' src='{uri}'></td>")
            else:
                tds.append("<td class='note'>missing</td>")
        body.append(f"<tr><th class='lbl'>{html.escape(label)}</th>{''.join(tds)}</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (
        f"<div class='scroll'><table class='grid'>{cap}<thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _md_table(df: pd.DataFrame, caption: str, max_rows: int) -> str:
    shown = df.head(max_rows)
    idx = shown.index.name is not None or not isinstance(shown.index, pd.RangeIndex)
    cols = ([str(shown.index.name or "")] if idx else []) + [str(c) for c in shown.columns]
    lines = []
    if caption:
        lines.append(f"*{md_escape(caption)}*\n")
    lines.append("| " + " | ".join(md_escape(c) for c in cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for i, r in shown.iterrows():
        cells = ([_fmt(i)] if idx else []) + [_fmt(v) for v in r.to_numpy()]
        lines.append("| " + " | ".join(md_escape(c) for c in cells) + " |")
    if len(df) > max_rows:
        lines.append(f"\n({len(df) - max_rows} more rows in the CSV.)")
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.85em;max-width:100%}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3} caption{caption-side:top;text-align:left;font-style:italic;padding:4px 0}
img{max-width:100%;border:1px solid #eee} figure{margin:1em 0} .note{color:#666;font-size:0.85em}
.scroll{max-width:100%;overflow-x:auto} table.grid td{padding:2px;text-align:center}
img.thumb{display:block;margin:0 auto;width:96px;height:auto;image-rendering:pixelated}
th.lbl{max-width:16em;text-align:left;font-weight:normal;font-size:0.9em}
"""


def render_html(title: str, sections: list[Section], path: Path, base_dir: Path) -> Path:
    """Write the HTML report with every figure embedded as base64 PNG."""
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for sec in sections:
        parts.append(f"<h2>{html.escape(sec.title)}</h2>")
        for kind, payload in sec.blocks:
            if kind == "text":
                parts.append(f"<p>{html.escape(str(payload))}</p>")
            elif kind == "bullets":
                items = "".join(f"<li>{html.escape(str(x))}</li>" for x in payload)
                parts.append(f"<ul>{items}</ul>")
            elif kind == "link":
                href, text = payload
                parts.append(
                    f"<p><a href='{html.escape(str(href), quote=True)}'>{html.escape(text)}</a></p>"
                )
            elif kind == "table":
                df, caption, max_rows = payload
                parts.append(_html_table(df, caption, max_rows))
            elif kind == "grid":
                parts.append(_html_grid(*payload))
            elif kind == "figure":
                fig_path, caption = payload
                data = base64.b64encode(Path(fig_path).read_bytes()).decode("ascii")
                rel = Path(fig_path).relative_to(base_dir).as_posix()
                parts.append(
                    f"<figure><img alt='{html.escape(rel, quote=True)}' "
                    f"src='data:image/png;base64,{data}'>"
                    f"<figcaption>{html.escape(caption)} ({html.escape(rel)})</figcaption></figure>"
                )
    parts.append("</body></html>")
    return _write_text(path, "\n".join(parts))


def render_markdown(title: str, sections: list[Section], path: Path, base_dir: Path) -> Path:
    """Write the Markdown summary; figures are linked by relative path."""
    out = [f"# {md_escape(title)}\n"]
    for sec in sections:
        out.append(f"## {md_escape(sec.title)}\n")
        for kind, payload in sec.blocks:
            if kind == "text":
                out.append(md_escape(str(payload)) + "\n")
            elif kind == "bullets":
                out.append("\n".join(f"- {md_escape(str(x))}" for x in payload) + "\n")
            elif kind == "link":
                href, text = payload
                out.append(f"[{md_escape(text)}]({str(href).replace(' ', '%20')})\n")
            elif kind == "table":
                df, caption, max_rows = payload
                out.append(_md_table(df, caption, max_rows) + "\n")
            elif kind == "grid":
                out.append(f"*{md_escape(payload[2])}: image grid in report.html*\n")
            elif kind == "figure":
                fig_path, caption = payload
                rel = Path(fig_path).relative_to(base_dir).as_posix()
                out.append(f"![{md_escape(caption)}]({rel.replace(' ', '%20')})\n")
    return _write_text(path, "\n".join(out))


def _write_text(path: Path, text: str) -> Path:
    return atomic_write(path, text)
