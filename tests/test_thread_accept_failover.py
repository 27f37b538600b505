"""A connection accepted on a thread other than the process's first survives a failover.

The primary logs both ends' addresses with an ``accept`` (and a ``connect``) so that a
backup going live pairs the program's own sockets with each other again.  It read them
through the accepting thread's id, which ``pidfd_open`` refuses for a thread that is not
its process's first: no addresses were logged, and at go-live the connection was reset.
The guest (``tests/programs/thr_accept.c``) accepts on its second thread and echoes its
own forked client's lines; the client keeps its connection across a primary kill.
"""
from __future__ import annotations

import os

from tft_lab.testing import assert_no_leftovers, build_program, reap_adopted_zombies, run_cli

TIMEOUT = 120


def test_a_connection_accepted_on_a_second_thread_survives_a_failover(tmp_path, pids_before):
    guest = build_program("thr_accept")
    # The client sleeps 3 s between its two lines; the primary dies 1.5 s in, in that pause.
    p = run_cli(["run", "--fault", "primary@1.5s", "--", guest, "3000"], cwd=tmp_path,
                env=dict(os.environ, TMPDIR=str(tmp_path)), timeout=TIMEOUT)
    err = p.stderr.decode()
    assert "tft: failover" in err, err
    assert p.stdout == b"client: before after\nserved, client status 0\n", (p.stdout, err)
    assert p.returncode == 0, err
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)
