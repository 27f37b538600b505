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
#: Why the pure path runs ("" when the compiled core does): shown by ``tft --version``.
WHY_PURE = ""
if os.environ.get("TFT_PURE", "") != "1":
    try:
        from .. import _core as core
    except ImportError:   # not built (no compiler at install): the pure path
        core = None
        WHY_PURE = "tft_lab._core not built"
else:
    WHY_PURE = "TFT_PURE=1"

#: "compiled" or "pure": which implementation of the per-stop mechanism runs.
BACKEND = "compiled" if core is not None else "pure"


def describe() -> str:
    """One line naming the backend in use, for people: "compiled core" or "pure Python (why)"."""
    return "compiled core" if core is not None else f"pure Python ({WHY_PURE})"
