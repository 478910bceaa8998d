"""The analyse stage of ``t2ibench run``: the run's results table → ``report/`` through
:func:`t2ibench.analysis.analyze`, redone only when the rows or the analysis code changed.

``run`` is the run in progress (:class:`t2ibench.pipeline.stage.Run`); it is not imported here
because the pipeline sits above the analysis.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


def analysis_inputs(results_dir: Path) -> str:
    """Digest of what the report depends on: the results rows and the analysis code's version."""
    import pandas as pd

    import t2ibench
    from t2ibench.results import read_results

    df = read_results(results_dir)
    h = hashlib.sha256(f"{t2ibench.__version__}|{list(df.columns)}".encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


class AnalyseStage:
    name = "analyze"
    kept = "same results and settings as before, report kept"

    def done(self, run: Any) -> bool:
        return (
            run.state.info("analyze").get("inputs") == self._inputs(run)
            and (run.run_dir / "report" / "report.html").is_file()
        )

    def run(self, run: Any) -> None:
        from t2ibench.analysis import analyze
        from t2ibench.analysis.sequential import budget_section

        section = budget_section(run.results_dir / "budget.csv")
        analyze(
            run.results_dir, run.run_dir / "report", extra_sections=[section] if section else []
        )
        run.state.mark("analyze", inputs=self._inputs(run))

    @staticmethod
    def _inputs(run: Any) -> str:
        return run.once("analyze", lambda: analysis_inputs(run.results_dir))
