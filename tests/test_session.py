"""tft_lab.session: running tft from Python (and so from a notebook), each run in child processes.

``run``, ``record`` and ``replay`` return a :class:`Run` with the program's
output and the trace; ``live`` pauses the program after every event. Whatever
happens to the caller (a timeout, an interrupt), no process is left behind: no
``tft`` coordinator, no supervisor, no traced program.
"""
from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from tft_lab import session
from tft_lab.testing import nothing_left_running, leftover_processes




def test_run_returns_the_output_status_and_both_replicas_trace(clocks, pids_before):
    r = session.run([clocks], epoch=32, progress=False)
    assert r.returncode == 0 and r.outcome == "completed" and r.stderr == ""
    assert r.stdout.count("\n") >= 10
    assert set(r.trace["replica"].astype(str)) == {"primary", "backup"}
    assert isinstance(r.trace["cls"].dtype, pd.CategoricalDtype)
    assert "completed" in repr(r) and "trace rows" in repr(r)
    nothing_left_running(pids_before)


def test_a_command_line_string_is_split_like_a_shell(counter):
    r = session.run(f"{counter} 2", progress=False)
    assert r.returncode == 0 and r.stdout.count("\n") == 2


def test_progress_is_reported_to_a_callback(clocks):
    seen = []
    session.run([clocks], progress=seen.append)
    assert seen and seen[-1].startswith("finished")
    assert "primary:" in seen[-1] and "backup:" in seen[-1]


def test_record_then_replay_prints_the_same_bytes(clocks, tmp_path):
    rec = session.record([clocks], str(tmp_path / "c.log"), progress=False)
    rep = session.replay(rec.log, progress=False)
    assert rec.returncode == rep.returncode == 0
    assert rep.stdout == rec.stdout and rep.stdout
    assert set(rec.trace["replica"].astype(str)) == {"primary"}
    assert set(rep.trace["replica"].astype(str)) == {"backup"}


def test_a_primary_fault_gives_a_failover_with_its_time(counter, pids_before):
    r = session.run([counter, "4"], fault=["primary@25"], progress=False)
    assert r.outcome == "failover" and r.returncode == 0
    assert r.failover_ms is not None
    assert "failover" in r.stderr
    nothing_left_running(pids_before)


def test_live_pauses_after_every_event_until_told(clocks):
    s = session.live([clocks], epoch=8)
    assert s.current["event"]["kind"] == "exec"
    ts = [s.current["event"]["t_ns"]]
    for _ in range(5):
        ts.append(s.step("next")["event"]["t_ns"])
    assert ts == sorted(ts)
    assert s.step("epoch")["event"]["epoch"] >= 1
    r = s.result()
    assert r.returncode == 0 and s.current is None


def _assert_stopped_cleanly(pids_before, started: float, limit: float) -> None:
    assert time.monotonic() - started < limit
    nothing_left_running(pids_before, grace=8)
    names = [p.cmdline for p in leftover_processes(pids_before)]
    assert not any("tft_lab.cli" in n or "counter" in n for n in names)


def test_a_timeout_stops_a_replicated_run_and_leaves_no_process(counter, pids_before):
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        session.run([counter, "100"], timeout=1.5, progress=False)   # 100 lines take 10 s
    _assert_stopped_cleanly(pids_before, started, 5)


def test_a_timeout_stops_a_recording_and_leaves_no_process(counter, pids_before):
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        session.record([counter, "100"], timeout=1.5, progress=False)
    _assert_stopped_cleanly(pids_before, started, 5)


def test_an_interrupt_stops_a_run_in_a_thread_and_leaves_no_process(counter, pids_before):
    # The notebook's stop button raises KeyboardInterrupt wherever the cell is;
    # here the progress callback raises it, on a thread of its own.
    ticks, errors = [], []

    def interrupt_after_a_second(text):
        ticks.append(text)
        if len(ticks) > 5:
            raise KeyboardInterrupt

    def target():
        try:
            session.run([counter, "100"], progress=interrupt_after_a_second)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    started = time.monotonic()
    t = threading.Thread(target=target)
    t.start()
    t.join(30)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], KeyboardInterrupt)
    _assert_stopped_cleanly(pids_before, started, 10)


def test_a_missing_program_raises(tmp_path):
    with pytest.raises(Exception, match="no such file"):
        session.run([str(tmp_path / "nothing-here")], progress=False)


def test_bad_options_are_reported_with_the_reason(counter):
    r = session.run([counter, "1"], commit="sometimes", progress=False)
    assert r.returncode != 0 and "commit" in r.stderr
    r = session.run([counter, "1"], fault=["bogus"], progress=False)
    assert r.returncode != 0 and "bad fault 'bogus'" in r.stderr
    r = session.replay("/nonexistent/x.log", progress=False)
    assert r.returncode == 2 and "no such log file" in r.stderr


def test_live_refuses_an_unknown_step_command(clocks):
    s = session.live([clocks])
    with pytest.raises(ValueError, match="unknown command 'jump'"):
        s.step("jump")
    assert s.result().returncode == 0
