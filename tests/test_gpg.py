"""gpg and the agent it starts: a threaded daemon inside the program, replicated.

``gpg --symmetric`` starts ``gpg-agent --daemon``, which forks away (setsid), serves gpg
over a Unix socket from one thread per connection (nPth), and is stopped at the end by
``gpgconf --kill all``.  Found with it, one regression each:

- its ``inotify_add_watch`` was not in the syscall table and ran natively, failing on the
  replay's stand-in fd (tests/test_unlisted_syscalls.py has the small case);
- a thread that gives way at a blocking call, or blocks in the kernel with no other thread
  ready, logs no switch: the next switch in the log is another thread's, which the replay
  took for a divergence;
- after a thread's ``exit_group`` the thread the schedule held was resumed while the kernel
  was killing it (``ptrace GETREGS failed: No such process``);
- an accepted connection's stand-in took the lowest free fd where the primary's kernel had
  given a higher one, because the thread that freed the lower one had closed it after the
  accept on the primary and had exited before it in the backup;
- the agent's Unix sockets could not be listened on again after a failover: their files,
  left by the dead primary's agent, made bind fail (``Address already in use``) for 2.5 s.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tft_lab.testing import assert_no_leftovers, new_log_path, record, replay, run_cli

pytestmark = pytest.mark.skipif(not shutil.which("gpg"), reason="gpg is not installed (Debian: gnupg)")

SCRIPT = ("mkdir -m 700 g && gpg --homedir g --batch --quiet --pinentry-mode loopback --passphrase x "
          "--symmetric -o f.gpg f.txt && gpg --homedir g --batch --quiet --pinentry-mode loopback "
          "--passphrase x -d f.gpg | cmp - f.txt && echo same; gpgconf --homedir g --kill all; echo done")


def fresh(folder) -> None:
    shutil.rmtree(folder / "g", ignore_errors=True)
    (folder / "f.gpg").unlink(missing_ok=True)
    (folder / "f.txt").write_text("alpha beta\n" * 50)


def agents(folder) -> int:
    """gpg-agents serving ``folder``'s home directory (whoever started them)."""
    return len(subprocess.run(["pgrep", "-f", f"gpg-agent --homedir {folder / 'g'}"], capture_output=True).stdout.split())


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "w"   # short: the agent's socket path must fit in a sockaddr_un
    d.mkdir()
    fresh(d)
    yield d
    subprocess.run(["gpgconf", "--homedir", str(d / "g"), "--kill", "all"], capture_output=True)


def test_gpg_and_its_agent_replay_as_recorded(folder, pids_before):
    for _ in range(2):
        log = new_log_path(folder.parent)
        rec = record(["bash", "-c", SCRIPT], log, cwd=folder)
        assert (rec.returncode, rec.stdout) == (0, b"same\ndone\n"), rec.stderr
        fresh(folder)
        rep = replay(log)
        assert (rep.returncode, rep.stdout) == (0, rec.stdout), rep.stderr
        assert not (folder / "f.gpg").exists()   # the replay wrote nothing
        fresh(folder)
    assert agents(folder) == 0
    assert_no_leftovers(pids_before)


def test_gpg_and_its_agent_survive_a_failover_anywhere(folder, pids_before):
    res_path = folder.parent / "res.json"
    p = run_cli(["run", "--heartbeat", "2", "--result-json", res_path, "--", "bash", "-c", SCRIPT], cwd=folder,
                timeout=120)
    res = json.loads(res_path.read_text())
    assert (p.returncode, p.stdout, res["outcome"]) == (0, b"same\ndone\n", "completed"), p.stderr
    calls = res["primary"]["calls"]
    for share in (0.15, 0.45, 0.75, 0.95):
        fresh(folder)
        n = int(calls * share)
        p = run_cli(["run", "--heartbeat", "2", "--result-json", res_path, "--fault", f"primary@{n}", "--",
                     "bash", "-c", SCRIPT], cwd=folder, timeout=120)
        res = json.loads(res_path.read_text())
        assert p.returncode == 0 and res["outcome"] == "failover", (n, calls, p.stderr)
        assert p.stdout in (b"same\ndone\n", b"same\nsame\ndone\n", b"same\ndone\ndone\n"), (n, p.stdout, p.stderr)
        assert b"could not be rebuilt" not in p.stderr, (n, p.stderr)   # its sockets are listened on again
    assert agents(folder) == 0
    assert_no_leftovers(pids_before)
