"""After a failover the program sees its own (virtual) pids in ``/proc``.

Live, a backup's processes have this replica's pids while the program knows the primary's.
Paths under ``/proc/<pid>`` were translated already; what came back through an fd on
``/proc`` was not: the listing of ``/proc`` and the pid fields of ``stat`` and ``status``
showed this replica's pids, so ``ps -p $$`` found nothing after a failover.  The shell
script here prints what it sees before a pause (the primary is killed in it) and after.
"""
from __future__ import annotations

import os
import shutil

import pytest

from tft_lab import procview
from tft_lab.testing import assert_no_leftovers, reap_adopted_zombies, run_cli

TIMEOUT = 120

SCRIPT = r"""
sleep 3
echo "self $$ $PPID"
echo "stat $(cut -d' ' -f1,4 /proc/self/stat)"
cat /proc/$$/stat | cut -d' ' -f1,4 | sed 's/^/shstat /'
grep -E '^(Pid|PPid):' /proc/$$/status | tr '\t\n' '  ' | sed 's/^/status /'; echo
echo "ps $(ps -p $$ -o pid=,comm= | tr -s ' ')"
ps -e -o pid= | tr -d ' ' | grep -qx "$$" && echo "listed yes" || echo "listed no"
"""


def test_proc_rewrites_are_exact():
    virt = {4242: 17, 4243: 18}.get
    to_virtual = lambda p: virt(p, p)   # noqa: E731 - a stand-in PidMap
    stat = b"4243 (a b) c)) S 4242 4242 4242 34816 4242 4194304 1 2\n"
    assert procview.rewrite_stat(stat, to_virtual) == b"18 (a b) c)) S 17 17 17 34816 17 4194304 1 2\n"
    status = b"Name:\tsh\nTgid:\t4243\nPid:\t4243\nPPid:\t4242\nTracerPid:\t9\nNSpid:\t4243\n"
    assert procview.rewrite_status(status, to_virtual) == \
        b"Name:\tsh\nTgid:\t18\nPid:\t18\nPPid:\t17\nTracerPid:\t9\nNSpid:\t18\n"
    assert procview.view_of("/proc") == "dir" and procview.view_of("/proc/self/stat") == "stat"
    assert procview.view_of("/proc/12/task/13/status") == "status" and procview.view_of("/proc/12/maps") is None


@pytest.mark.skipif(shutil.which("ps") is None, reason="needs ps (procps)")
def test_proc_shows_the_programs_own_pids_after_a_failover(tmp_path, pids_before):
    script = tmp_path / "who.sh"
    script.write_text(SCRIPT)
    p = run_cli(["run", "--fault", "primary@1.5s", "--", "/bin/sh", script], cwd=tmp_path,
                env=dict(os.environ, TMPDIR=str(tmp_path)), timeout=TIMEOUT)
    err = p.stderr.decode()
    assert "tft: failover" in err, err
    assert p.returncode == 0, err
    seen = dict(line.split(" ", 1) for line in p.stdout.decode().splitlines())
    me = seen["self"].split()[0]
    # The shell's own parent is outside the program (the supervisor): this replica's.
    assert seen["shstat"].split()[0] == me, seen
    assert seen["status"].split()[:2] == ["Pid:", me], seen
    assert seen["ps"].split() == [me, "sh"], seen
    assert seen["listed"] == "yes", seen
    cut_pid, cut_ppid = seen["stat"].split()
    assert cut_ppid == me, seen   # cut's parent is the shell, by the pid the shell knows
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)
