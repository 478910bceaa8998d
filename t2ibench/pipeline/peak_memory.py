"""Wall time and peak memory of a block of work (the train stage), for the report's cost section.

CPU: the process's peak resident set size (``VmHWM``). On Linux the peak is reset when the block
starts (``/proc/self/clear_refs``), so a sweep's second run does not inherit the first run's peak;
where that is not possible the value is the process's peak so far (``rss_scope`` = ``process``: an
upper bound). GPU: ``torch.cuda.max_memory_allocated`` after a reset of the peak statistics (memory
held by tensors; the CUDA context and allocator cache come on top).
"""

from __future__ import annotations

import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _reset_rss_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")  # 5 = reset the peak RSS (Linux ≥ 4.0)
        return True
    except OSError:
        return False


def rss_peak_bytes() -> int:
    """The process's peak resident set size since start (or since the last reset)."""
    try:
        m = re.search(r"^VmHWM:\s+(\d+)\s+kB", _STATUS.read_text(), re.MULTILINE)
        if m:
            return int(m.group(1)) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, kB elsewhere


class PeakMemory:
    """``with PeakMemory("cuda") as m: ...`` then ``m.record()``: seconds, peak RSS, peak CUDA."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = str(device)
        self.seconds = 0.0
        self.rss_scope = "process"
        self.peak_rss_bytes: int | None = None
        self.peak_cuda_bytes: int | None = None

    def _cuda(self):
        if not self.device.startswith("cuda"):
            return None
        import torch

        return torch.cuda if torch.cuda.is_available() else None

    def __enter__(self) -> PeakMemory:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> PeakMemory:
        self.rss_scope = "block" if _reset_rss_peak() else "process"
        cuda = self._cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats(self.device)
        self._t0 = time.perf_counter()
        return self

    def stop(self) -> None:
        self.seconds = time.perf_counter() - self._t0
        self.peak_rss_bytes = rss_peak_bytes()
        cuda = self._cuda()
        if cuda is not None:
            self.peak_cuda_bytes = int(cuda.max_memory_allocated(self.device))

    def record(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 3),
            "peak_rss_bytes": self.peak_rss_bytes,
            "rss_scope": self.rss_scope,
            "peak_cuda_bytes": self.peak_cuda_bytes,
            "device": self.device,
        }
