"""The ``%tft`` IPython magic (``%load_ext tft_lab``).

    r = %tft run [--backup ...] [--commit ...] [--epoch N] [--fault ...] ./app ARGS
    r = %tft record [--epoch N] [--log FILE] ./app ARGS
    r = %tft replay FILE
    s = %tft step ./app ARGS          # a live stepper: the program pauses at every event
    df = %tft sweep [--at every] [--commit ...] [--epoch ...] [--check CMD] ./app ARGS

The options are the command line's (``tft run --help``).  Each returns a
:class:`tft_lab.session.Run` (``.trace``, ``.returncode``, ``.stdout``...),
``step`` a :class:`tft_lab.widgets.LiveStepper`, ``sweep`` the table of
:func:`tft_lab.sweep` (a DataFrame, one row per crash point; a progress bar
while it runs).  The supervisors run in their own processes; interrupting the
cell stops them and the program.
"""
from __future__ import annotations

import shlex

from IPython.core.magic import Magics, line_magic, magics_class

from . import session

USAGE = "usage: %tft run|record|replay|step|sweep [options] PROG [ARGS...]   (see tft run --help)"


def _split(line: str) -> tuple[str, list[str]]:
    words = shlex.split(line)
    if not words:
        raise ValueError(USAGE)
    return words[0], words[1:]


def _opts(cmd: str, words: list[str]):
    """Parse with the CLI's own parser, so the options are the same everywhere."""
    from .cli import _parser

    if cmd in ("run", "record", "sweep") and "--" not in words:
        # %tft run --epoch 7 ./app x: options first, then the program.
        i = 0
        while i < len(words) and words[i].startswith("-"):
            i += 1 if "=" in words[i] or words[i] in _FLAGS else 2
        words = words[:i] + ["--"] + words[i:]
    if cmd == "record" and not any(w == "--log" or w.startswith("--log=") for w in words):
        words = ["--log", ""] + words
    try:
        return _parser().parse_args([cmd, *words])
    except SystemExit:
        raise ValueError(USAGE) from None


_FLAGS: set[str] = set()


def _prog(args) -> list[str]:
    prog = args.prog[1:] if args.prog and args.prog[0] == "--" else args.prog
    if not prog:
        raise ValueError(USAGE)
    return prog


@magics_class
class TftMagics(Magics):
    @line_magic
    def tft(self, line: str):
        """Run a program under tft_lab from a cell; returns the run (see ``%tft?``)."""
        cmd, words = _split(line)
        if cmd == "run":
            a = _opts("run", words)
            return session.run(_prog(a), backup=a.backup, commit=a.commit, epoch=a.epoch, fault=a.fault,
                               heartbeat=a.heartbeat, arbiter=a.arbiter, lease_ttl=a.lease_ttl,
                               respawn=a.respawn, pause=a.pause)
        if cmd == "record":
            a = _opts("record", words)
            return session.record(_prog(a), a.log or None, epoch=a.epoch)
        if cmd == "replay":
            a = _opts("replay", words)
            return session.replay(a.log)
        if cmd == "step":
            from .widgets import LiveStepper

            a = _opts("run", words)
            return LiveStepper(session.live(_prog(a), backup=a.backup, commit=a.commit, epoch=a.epoch,
                                            heartbeat=a.heartbeat))
        if cmd == "sweep":
            from .sweeps import sweep, summary

            a = _opts("sweep", words)
            df = sweep(_prog(a), at=a.at, victim=a.victim, commit=a.commit.split(","),
                       epoch=[int(e) for e in a.epoch.split(",")], check=a.check, workers=a.workers,
                       cluster=a.cluster, timeout=a.timeout, heartbeat=a.heartbeat, out=a.out)
            print(summary(df))
            return df
        raise ValueError(USAGE)


def load_ipython_extension(ipython) -> None:
    ipython.register_magics(TftMagics)
