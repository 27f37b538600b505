"""The ptrace mechanism, and the one place that decides which implementation runs it.

``core`` is the compiled module :mod:`tft_lab._core` when it was built at install (it
holds the per-stop requests: decoding a stop, GET_SYSCALL_INFO, GETREGS/SETREGS, resume),
or None: then :mod:`tft_lab._backend.ptrace` runs its pure-Python versions of the same
functions.  ``TFT_PURE=1`` in the environment forces the pure path (to compare the two, or
to rule the C core out when chasing a bug).  ``BACKEND`` says which one is in use.
"""
from __future__ import annotations

import os
from types import ModuleType

core: ModuleType | None = None
if os.environ.get("TFT_PURE", "") != "1":
    try:
        from .. import _core as core
    except ImportError:   # not built (no compiler at install): the pure path
        core = None

#: "compiled" or "pure": which implementation of the per-stop mechanism runs.
BACKEND = "compiled" if core is not None else "pure"
