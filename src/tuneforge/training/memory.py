"""This process's resident memory as the kernel counts it: the peak since a reset, and a heap trim.

compare measures each run in a fresh process with these; advise measures each method's calibration in its own
process with them (after a trim, so what an earlier method freed is given back rather than reused unseen).
"""
from __future__ import annotations

import ctypes
import resource
from pathlib import Path


def reset_peak_rss() -> bool:
    """Start this process's resident high-water mark (VmHWM) afresh; False where the kernel cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")  # 5: reset the peak RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _status(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss() -> int:
    """This process's peak resident bytes since `reset_peak_rss` (or since exec).

    Not ru_maxrss: Linux carries the parent's resident size at fork into the child's ru_maxrss across exec, so
    a run started from a 1.5 GB process reads >= 1.5 GB whatever it did (measured: a 14 MB child read 1,514 MB;
    CI's pytest process made full fine-tuning's growth read 855 MB instead of 555 MB). VmHWM belongs to the
    process's own memory map.
    """
    found = _status("VmHWM")
    return found if found is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss() -> int:
    found = _status("VmRSS")
    return found if found is not None else peak_rss()


def trim_heap() -> None:
    """Give the C heap's free pages back to the kernel (glibc malloc_trim), so RSS is what is live."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# The resident memory of the libraries a run imports after its data pass, which a calibration in an advise
# process has usually imported already: scikit-learn (metrics, the probe) 104 MB, matplotlib (Agg) 23 MB
# (measured after torch, transformers and peft, 2026-12-01).
RUN_LIBRARIES_MB = 127


def load_run_libraries() -> None:
    """Import them now, so that a measured growth never counts them once (and a run's estimate adds them)."""
    import matplotlib

    matplotlib.use("Agg")  # the only backend tuneforge draws with (evaluation/plots.py)
    import matplotlib.pyplot  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.metrics  # noqa: F401
