"""What a live replica logs after a failover is what its program did: a fresh backup follows it.

A live replica translates pid arguments to its own kernel's (``wait4(pid)``), but ``-1``
("any child") is ``-1`` there too: rewritten anyway (as a 64-bit -1, where bash's
``waitpid(-1)`` passes a 32-bit one), the call was logged with arguments the program never
passed, and every fresh backup diverged at the shell's next ``wait``.
"""
from __future__ import annotations

import json

import pytest

from tft_lab.testing import nothing_left_running, run_cli

SCRIPT = "for i in 1 2 3; do sleep 0.2 & wait; done; echo done"


@pytest.mark.parametrize("at", [40, 120])
def test_a_fresh_backup_follows_a_shell_that_waits_after_a_failover(at, tmp_path, pids_before):
    rj = tmp_path / "run.json"
    p = run_cli(["run", "--heartbeat", "2", "--result-json", rj, "--fault", f"primary@{at}", "--",
                 "bash", "-c", SCRIPT], timeout=120)
    assert p.returncode == 0 and p.stdout == b"done\n", p.stderr.decode()
    res = json.loads(rj.read_text())
    assert res["outcome"] == "failover", res
    fresh = res["backups"][1:]
    assert fresh and all(b["outcome"] != "diverged" for b in fresh), [b.get("error") for b in fresh]
    nothing_left_running(pids_before)
