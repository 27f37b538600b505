"""tft_lab: transparent fault tolerance at the system-call interface.

A ptrace supervisor records every answer an unmodified Linux program gets from
outside its address space and re-executes the program from that log (record /
replay), the basis of primary/backup replication as in Bressoud's TFT.

Public names are re-exported here; everything in ``_``-modules is private.
"""
from .errors import (AckTimeout, ChannelError, DivergenceError, LogError, PeerFailed, PeerSilent, ProgramError,
                     TftError, TracingError, UnsupportedError)
from .trace import TraceEvent, to_dataframe

__version__ = "0.1.0"

__all__ = [
    "AckTimeout", "ChannelError", "DivergenceError", "LogError", "PeerFailed", "PeerSilent", "ProgramError", "TftError",
    "TracingError", "UnsupportedError", "TraceEvent", "to_dataframe", "record", "replay", "trace",
    "compare", "sweep", "load_ipython_extension",
]


def __getattr__(name):
    # compare() needs pandas: imported on first use, so that the tft command starts fast.
    if name == "compare":
        from .align import compare

        return compare
    raise AttributeError(f"module 'tft_lab' has no attribute {name!r}")


def record(argv, log, *, epoch: int = 64):
    """Record ``argv`` (a list) into the log file ``log``; returns (exit status, engine)."""
    from .recorder import record as _record

    return _record(list(argv), log, epoch=epoch)


def replay(log):
    """Replay the log file ``log``; returns (recorded exit status, engine)."""
    from .replayer import replay as _replay

    return _replay(log)


def trace(argv, out=None):
    """Run ``argv`` printing every syscall strace-style with its class; returns (status, engine)."""
    import sys

    from .tracer import trace as _trace

    return _trace(list(argv), out or sys.stderr)


def sweep(argv, **kw):
    """Crash-point sweep of ``argv``: a DataFrame, one row per point (see :func:`tft_lab.sweeps.sweep`)."""
    from .sweeps import sweep as _sweep

    return _sweep(argv, **kw)


def load_ipython_extension(ipython):  # pragma: no cover - exercised by the notebooks
    from .magic import load_ipython_extension as _load

    _load(ipython)
