"""The signals a program starts with blocked and ignored are part of how it starts.

A program inherits its signal mask and its ignored signals through exec: ``nohup``
ignores SIGHUP, a shell's background job ignores SIGINT, a parent may block a
signal around a fork. A program may ask (``sigprocmask``, ``sigaction`` with no
new action) or behave differently (CPython keeps an ignored SIGINT ignored), so
the log records both sets and the replay, or the backup, starts the program with
them; and tft gives the program the sets tft itself inherited, not the handlers
its supervisors install.
"""
from __future__ import annotations

import signal
import subprocess
import sys

from test_bad_input import one_line_error, write_log
from tft_lab.log import read_log
from tft_lab.testing import assert_no_leftovers, replay

#: Prints what the program started with: the blocked signals, and how SIGHUP and SIGINT are handled.
SHOW = ["python3", "-S", "-c",
        "import signal; print(sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])), "
        "signal.getsignal(signal.SIGHUP), signal.getsignal(signal.SIGINT))"]


def _inheriting(argv, *, block=(signal.SIGUSR1,), ignore=(signal.SIGHUP, signal.SIGINT), cwd=None):
    """Run ``argv`` as a child that starts with ``block`` blocked and ``ignore`` ignored, and
    nothing else (whatever the test run inherited: a job started with ``&`` from a script
    ignores SIGINT and SIGQUIT)."""
    def prepare():
        for sig in signal.valid_signals():
            if sig not in (signal.SIGKILL, signal.SIGSTOP):
                try:
                    signal.signal(sig, signal.SIG_IGN if sig in ignore else signal.SIG_DFL)
                except (OSError, ValueError):
                    pass   # one the C library keeps for itself
        signal.pthread_sigmask(signal.SIG_SETMASK, block)
    return subprocess.run(argv, preexec_fn=prepare, capture_output=True, timeout=60, cwd=cwd,
                          stdin=subprocess.DEVNULL)


def _tft(*args) -> list[str]:
    return [sys.executable, "-m", "tft_lab.cli", *map(str, args)]


def test_the_replay_starts_the_program_as_the_recording_did(tmp_path, pids_before):
    native = _inheriting(SHOW)
    assert native.stdout.startswith(b"[<Signals.SIGUSR1: 10>] 1 1"), native.stdout
    log = tmp_path / "show.log"
    rec = _inheriting(_tft("record", "--log", log, "--", *SHOW))
    assert rec.returncode == 0 and rec.stdout == native.stdout, rec.stderr
    header = read_log(log)[0]
    assert header["sigblk"] == 1 << (signal.SIGUSR1 - 1)
    assert header["sigign"] == (1 << (signal.SIGHUP - 1)) | (1 << (signal.SIGINT - 1))
    # replayed from a process that blocks and ignores nothing: the program starts as recorded
    rep = replay(log)
    assert (rep.returncode, rep.stdout, rep.stderr) == (0, native.stdout, b"")
    assert_no_leftovers(pids_before)


def test_tft_gives_the_program_what_tft_inherited_not_its_own_handlers(tmp_path, pids_before):
    """``tft run`` catches SIGHUP and SIGTERM, its supervisors ignore SIGINT, Python ignores
    SIGPIPE and SIGXFSZ: none of that reaches the program, on the primary or after a failover."""
    status = ["grep", "^Sig[BI]", "/proc/self/status"]
    native = _inheriting(status, ignore=(signal.SIGHUP,))
    plain = subprocess.run(status, capture_output=True, timeout=60)
    assert native.stdout != plain.stdout
    for cmd in (_tft("run", "--", *status), _tft("run", "--fault", "primary@8", "--", *status),
                _tft("record", "--log", tmp_path / "s.log", "--", *status)):
        p = _inheriting(cmd, ignore=(signal.SIGHUP,))
        assert p.returncode == 0 and p.stdout == native.stdout, (cmd, p.stdout, p.stderr)
        q = subprocess.run(cmd, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        assert q.returncode == 0 and q.stdout == plain.stdout, (cmd, q.stdout, q.stderr)
    assert_no_leftovers(pids_before)


def test_a_log_from_before_the_signal_sets_replays_and_a_forged_set_is_refused(tmp_path):
    log = tmp_path / "show.log"
    assert subprocess.run(_tft("record", "--log", log, "--", *SHOW), capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=60).returncode == 0
    records = read_log(log)
    for name in ("sigblk", "sigign"):
        del records[0][name]
    write_log(tmp_path / "old.log", records)
    old = replay(tmp_path / "old.log")
    assert old.returncode == 0 and old.stdout.startswith(b"[] "), old.stderr
    records[0]["sigblk"] = -1
    write_log(tmp_path / "forged.log", records)
    assert "signal set out of range" in one_line_error(replay(tmp_path / "forged.log"))
