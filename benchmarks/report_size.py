"""Size of report.html files and what it is made of (inlined JPEG thumbnails, PNG figures, the rest).

    python benchmarks/report_size.py "default run=/tmp/default/results/loha-.../report/report.html" \\
        "tiny sweep=/tmp/sweep/out/report/report.html" --out benchmarks/results/report_size_DATE.md

The default run is ``t2ibench run --trainer loha`` (offline default); the tiny sweep is the grid of
``tests/analysis/test_report_browser.py`` (``SWEEP_GRID``: three configs, one seed, two epochs).
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from t2ibench.analysis.images import REPORT_BUDGET_BYTES  # noqa: E402


def breakdown(path: Path) -> dict[str, int]:
    text = path.read_text(encoding="utf-8")
    jpeg = sum(len(m) for m in re.findall(r"data:image/jpeg;base64,[A-Za-z0-9+/=]+", text))
    png = sum(len(m) for m in re.findall(r"data:image/png;base64,[A-Za-z0-9+/=]+", text))
    total = path.stat().st_size
    return {"total": total, "jpeg": jpeg, "png": png, "rest": total - jpeg - png,
            "thumbnails": text.count("data:image/jpeg"), "figures": text.count("data:image/png")}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", help="label=path/to/report.html")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    lines = [
        f"# Report size ({datetime.date.today().isoformat()})",
        "",
        f"Measured by `python benchmarks/report_size.py` (budget {REPORT_BUDGET_BYTES / 1e6:.1f} MB, "
        "`REPORT_BUDGET_BYTES`). JPEG = inlined image thumbnails, PNG = inlined figures "
        "(base64 text, as stored in the file).",
        "",
        "| report | total MB | JPEG thumbnails (n) | PNG figures (n) | HTML + tables |",
        "|---|---:|---:|---:|---:|",
    ]
    for item in args.reports:
        label, _, path = item.partition("=")
        b = breakdown(Path(path))
        lines.append(
            f"| {label} | {b['total'] / 1e6:.2f} | {b['jpeg'] / 1e6:.2f} ({b['thumbnails']}) | "
            f"{b['png'] / 1e6:.2f} ({b['figures']}) | {b['rest'] / 1e6:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
