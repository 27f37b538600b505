"""An interrupted ``tft run`` (Ctrl-C, SIGTERM) still writes the trace it has.

``tft record`` and ``tft replay`` write their ``--trace-out`` even when they stop on an
error; ``tft run --trace`` wrote nothing when the operator stopped it, exactly when the
trace would show where the program was.  Now the trace is written (mode 0600) with the
rows both replicas streamed so far, and the run still leaves no process and no temporary
directory behind.
"""
from __future__ import annotations

import os
import signal
import stat

import pandas as pd
import pytest

from tft_lab._process import start_cli
from tft_lab.run import EXIT_INTERRUPTED
from tft_lab.testing import assert_no_leftovers, reap_adopted_zombies

TIMEOUT = 120


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_an_interrupted_run_writes_its_trace(sig, counter, tmp_path, pids_before):
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    out = tmp_path / "run.csv"
    run = start_cli(["run", "--trace", out, "--", counter, 100], env=dict(os.environ, TMPDIR=str(tmpdir)))
    try:
        lines = [run.stdout.readline() for _ in range(5)]   # a line every 100 ms: 10 s in all
        assert all(lines), "the program printed fewer than 5 lines"
        run.send_signal(sig)
        _, err = run.communicate(timeout=TIMEOUT)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == EXIT_INTERRUPTED, err
    assert err.endswith(b"tft: interrupted; the program was stopped\n"), err
    assert out.exists(), "no trace written by the interrupted run"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    df = pd.read_csv(out)
    assert (df["kind"] == "syscall").any()
    assert "primary" in set(df["replica"]), set(df["replica"])
    assert (df["syscall"] == "write").sum() >= 5, "the trace lacks the writes the program made"
    assert os.listdir(tmpdir) == []
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)
