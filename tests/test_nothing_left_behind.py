"""Nothing left behind: what the notebook API keeps in temporary folders goes away.

A notebook user never calls ``close()``: a live session dropped while its program is
paused lets the program run on and removes its folder once it ends; a folder made in a
Jupyter kernel goes when the kernel goes, even when it is killed (nbval stops its
kernels with SIGKILL: no exit handler runs).  The whole suite is checked too (a session
fixture in ``conftest.py`` fails the run if it leaves any ``tft*`` entry).
"""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import time

import pytest

from tft_lab import session
from tft_lab.testing import nothing_left_running


def _gone(path: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not os.path.exists(path)


def test_a_dropped_live_session_lets_its_program_finish_and_removes_its_folder(clocks, pids_before):
    s = session.live([clocks])
    s.step("next")
    work = os.path.dirname(s.event_files["primary"])
    assert os.path.isdir(work)
    del s
    gc.collect()
    assert _gone(work, 30), f"{work} is still there"
    nothing_left_running(pids_before)   # (an orphaned tft, ended, is reaped here)


def test_a_closed_live_session_that_ran_to_its_end_removes_its_folder(clocks):
    s = session.live([clocks])
    s.result()
    work = os.path.dirname(s.event_files["primary"])
    s.close()
    assert not os.path.exists(work)


EXIT = """
import os
from tft_lab import session
s = session.live([{clocks!r}])
s.step("next")
print(os.path.dirname(s.event_files["primary"]))
"""


def test_a_live_session_still_held_at_exit_has_its_folder_removed(clocks, tmp_path, pids_before):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    p = subprocess.run([sys.executable, "-c", EXIT.format(clocks=clocks)], env=env, capture_output=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    work = p.stdout.decode().strip()
    assert work.startswith(str(tmp_path)) and _gone(work, 10), work
    nothing_left_running(pids_before)   # (an orphaned tft, ended, is reaped here)


KERNEL = """
import json, os, sys, time
from jupyter_client.manager import start_new_kernel
km, kc = start_new_kernel(kernel_name="python3")
out = []
kc.execute_interactive("from tft_lab import session; print(session.scratch_dir())",
                       output_hook=lambda m: out.append(m["content"].get("text", "")), timeout=60)
path = "".join(out).strip()
made = os.path.isdir(path)
kc.stop_channels()
km.shutdown_kernel(now=True)          # SIGKILL, as nbval does
print(json.dumps({"path": path, "made": made}))
"""


def test_a_folder_made_in_a_kernel_goes_when_the_kernel_is_killed(tmp_path):
    pytest.importorskip("jupyter_client")
    pytest.importorskip("ipykernel")
    env = dict(os.environ, TMPDIR=str(tmp_path))
    p = subprocess.run([sys.executable, "-c", KERNEL], env=env, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    import json

    got = json.loads(p.stdout.decode().strip().splitlines()[-1])
    assert got["made"] and got["path"].startswith(str(tmp_path)), got
    assert _gone(got["path"], 10), f"{got['path']} outlived its kernel"


SPAWN_THEN_WAIT = """
import os, time
from tft_lab._backend import ptrace as pt
# Widen the window in which the program, forked and traced, has not stopped for its tracer
# yet: a supervisor killed in it used to leave its program stopped (SIGSTOP, untraced, an
# orphan) for good.
stop = os.kill
os.kill = lambda pid, sig: (time.sleep(2), stop(pid, sig))
pt.spawn("/bin/true", ["true"], {}, "/", [])
"""


def test_a_supervisor_killed_while_it_starts_its_program_leaves_no_stopped_orphan(pids_before):
    helper = subprocess.Popen([sys.executable, "-c", SPAWN_THEN_WAIT])
    deadline = time.monotonic() + 20
    children = []
    while not children and time.monotonic() < deadline:
        try:
            with open(f"/proc/{helper.pid}/task/{helper.pid}/children") as f:
                children = [int(c) for c in f.read().split()]
        except OSError:
            pass
        time.sleep(0.05)
    assert children, "the program was not forked"
    helper.kill()
    helper.wait()
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{c}") and _state(c) != "Z" for c in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(not os.path.exists(f"/proc/{c}") or _state(c) == "Z" for c in children), \
        [(c, _state(c)) for c in children]
    nothing_left_running(pids_before)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
