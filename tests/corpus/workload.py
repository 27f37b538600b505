"""What a corpus workload is, and the one call that adds one: :func:`workload`.

A workload is an everyday command (an argv, or a shell snippet run by ``bash -c``)
run in a fresh folder that :func:`workload`'s ``files`` and ``setup`` prepare.
The harness (:mod:`.harness`) runs it natively and under tft and compares:

- ``normalise``: None when the program is deterministic (stdout and stderr must be
  byte-identical to the native run's); else a function ``bytes -> bytes`` applied to
  both sides before comparing (a run is then compared *by structure*).
- ``files``: how the folder must end compared to the native run: ``"exact"``
  (every path, type, permission and content), ``"names"`` (paths and types only:
  for archives holding timestamps) or ``"none"``.
- ``threaded``: the program starts threads (a label for the table: threads are
  replicated, docs/threads.md, and held to every check).

Adding a workload is one call in :mod:`.workloads`::

    workload("sort-uniq", "sort words.txt | uniq -c | sort -rn", files={"words.txt": WORDS})
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence, Union

Normaliser = Callable[[bytes], bytes]
Command = Union[str, Sequence[str]]

#: Every file and directory a setup makes gets this mtime, so listings, archives and
#: ``find -newer`` see the same times in every fresh folder (2001-09-09).
FIXED_MTIME = 1_000_000_000


@dataclass(frozen=True)
class Workload:
    """One everyday program of the corpus."""

    name: str
    """Unique, used in test ids, known failures and the compatibility table."""
    argv: tuple[str, ...]
    """The command, as run in the folder (a snippet becomes ``bash -c SNIPPET``)."""
    kind: str
    """A short category for the table: shell, coreutils, archive, git, build, db, script, python, server."""
    files: Mapping[str, Union[str, bytes]] = field(default_factory=dict)
    """Files to create (relative path -> content; parents made as needed)."""
    setup: Callable[[Path], None] | None = None
    """More setup, run after ``files`` are written, with the folder's path."""
    normalise: Normaliser | None = None
    """None: deterministic, compared exactly.  Else applied to stdout and stderr first."""
    compare_files: str = "exact"
    """``exact``, ``names`` or ``none`` (see the module docstring)."""
    threaded: bool = False
    """Starts threads (held to every check, like the others)."""
    timeout: float = 60.0
    """Seconds any single run of it may take before it counts as hung."""
    note: str = ""
    """What it exercises, for the table."""
    refused: str = ""
    """Words of the one-line refusal tft must give it (record and run), for a program tft_lab
    cannot replicate and says so; "" (most): it must pass every check."""

    def prepare(self, folder: Path) -> None:
        """Fill the (empty, existing) ``folder``: files, then ``setup``, then fixed mtimes."""
        for rel, content in self.files.items():
            p = folder / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content.encode() if isinstance(content, str) else content)
            if rel.endswith(".sh") or rel.endswith(".py") and content[:2] in ("#!", b"#!"):
                p.chmod(0o755)
        if self.setup is not None:
            self.setup(folder)
        for root, dirs, names in os.walk(folder, topdown=False):
            for n in names + dirs:
                os.utime(os.path.join(root, n), (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)
        os.utime(folder, (FIXED_MTIME, FIXED_MTIME))


REGISTRY: dict[str, Workload] = {}


def workload(name: str, command: Command, *, kind: str, files: Mapping[str, Union[str, bytes]] | None = None,
             setup: Callable[[Path], None] | None = None, normalise: Normaliser | None = None,
             compare_files: str = "exact", threaded: bool = False, timeout: float = 60.0,
             note: str = "", refused: str = "") -> Workload:
    """Declare a corpus workload (see :class:`Workload` for each field) and register it.

    ``command`` is an argv list, or a string run as ``bash -c STRING``.  Raises
    ValueError for a duplicate name or an unknown ``compare_files``.
    """
    if name in REGISTRY:
        raise ValueError(f"workload {name!r} declared twice")
    if compare_files not in ("exact", "names", "none"):
        raise ValueError(f"compare_files must be exact, names or none, not {compare_files!r}")
    argv = ("/bin/bash", "-c", command) if isinstance(command, str) else tuple(command)
    w = Workload(name, argv, kind, dict(files or {}), setup, normalise, compare_files, threaded, timeout, note,
                 refused)
    REGISTRY[name] = w
    return w


# --- normalisers: what "the same by structure" means for non-deterministic programs -------------

_DIGITS = re.compile(rb"\d+")
_HEX = re.compile(rb"\b(?=[0-9a-f]*[a-f])[0-9a-f]{7,}\b")   # not digit-only runs: those are numbers


def digits(b: bytes) -> bytes:
    """Every run of digits becomes ``N`` (times, pids, random numbers, ports)."""
    return _DIGITS.sub(b"N", b)


_UUID = re.compile(rb"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def digits_and_hex(b: bytes) -> bytes:
    """:func:`digits` after UUIDs become ``U`` and hex strings of 7+ characters ``N`` (hashes, ids:
    a random hex string is sometimes all digits, so both read as a number)."""
    return digits(_HEX.sub(b"N", _UUID.sub(b"U", b)))


def sorted_lines(b: bytes) -> bytes:
    """The lines in sorted order (processes that print concurrently)."""
    return b"\n".join(sorted(b.splitlines()))
