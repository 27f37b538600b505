"""The compiled lane: the calls a recorder answers itself, answered without Python.

A recorder (and the primary of ``tft run``) answers the pid family, the system-wide clocks,
gettimeofday, time and small getrandoms at their seccomp stop (tft_lab/answers.py).  Where
the compiled core is built, ``tft_lab._core.lane`` does that in C, stop after stop, for a
program that is one task and has no signal held back, and hands every other stop back to
Python; a replay (and a backup) answers them from their records there too
(``tft_lab._core.replay_lane``).  What a user sees must not change: the same output, the same log, signals at the
same points, a Ctrl-C that ends the run cleanly.  On the pure path (``TFT_PURE=1``) the lane
does not exist and these tests check that nothing was answered there.
"""
from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tft_lab._backend import core
from tft_lab._process import start_cli
from tft_lab.log import LogWriter, read_log
from tft_lab.recorder import record
from tft_lab.replayer import replay as replay_in_process
from tft_lab.syscalls import number
from tft_lab.testing import build_program, new_log_path, nothing_left_running, replay


def _record_in_process(argv, log, capfd, **kw):
    status, engine = record([str(a) for a in argv], str(log), keep_trace=False, **kw)
    return status, engine, capfd.readouterr().out


@pytest.mark.parametrize("mode", ["getppid", "clock"])
def test_a_loop_of_answered_calls_is_answered_in_the_lane_and_replays(mode, tmp_path, capfd):
    log = new_log_path(tmp_path)
    status, engine, out = _record_in_process([build_program("syscall_loop"), "3000", mode], log, capfd)
    assert status == 0 and f"mode={mode}" in out
    if core is None:
        assert engine.lane_calls == 0
    else:
        # all but the calls that end an epoch (1 in 64), and the program's start-up
        assert engine.lane_calls > 3000 * 0.95, engine.lane_calls
    sys_records = [r for r in read_log(log) if r.type == "sys"]
    assert [r["seq"] for r in sys_records] == list(range(len(sys_records)))   # none lost, none twice
    rep = replay(log)
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout.decode() == out   # the loop's timing too: its clock is the recorded one


def test_signals_that_arrive_in_the_lane_are_delivered_at_an_epoch_boundary(tmp_path, capfd):
    """timer_signals takes a SIGALRM every 2 ms in a getppid loop: each arrives while the lane
    answers, is held back (the lane hands the stop to Python and stays out until it is
    delivered) and is delivered where its epoch ends; the replay delivers them there again."""
    log = new_log_path(tmp_path)
    status, engine, out = _record_in_process([build_program("timer_signals"), "20000"], log, capfd, epoch=64)
    assert status == 0
    sigs = [r for r in read_log(log) if r.type == "sig"]
    boundary = [r for r in sigs if r["mode"] == "boundary"]
    assert boundary, "no signal arrived during the loop"
    assert all((r["seq"] + 1) % 64 == 0 for r in boundary)
    if core is not None:
        assert engine.lane_calls > 1000   # (how many depends on how often the timer fired)
    rep = replay(log)
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout.decode() == out


def test_ctrl_c_in_the_lane_ends_the_recording_with_its_records(tmp_path, pids_before):
    """Ctrl-C while the program makes nothing but answered calls: tft stops, leaves nothing
    running, and its log holds the calls made before it, every one of them in order."""
    log = new_log_path(tmp_path)
    p = start_cli(["record", "--log", log, "--", build_program("syscall_loop"), "100000000"],
                  stdout=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode != 0, err
    seqs = [r["seq"] for r in read_log(log) if r.type == "sys"]
    assert len(seqs) > 1000 and seqs == list(range(len(seqs)))
    nothing_left_running(pids_before)


def test_a_replay_answers_the_loop_from_its_log_in_the_lane(tmp_path, capfd):
    log = new_log_path(tmp_path)
    status, _, out = _record_in_process([build_program("syscall_loop"), "3000", "clock"], log, capfd)
    assert status == 0
    status, engine = replay_in_process(str(log), keep_trace=False)
    assert status == 0 and capfd.readouterr().out == out   # the logged clock, to the nanosecond
    if core is None:
        assert engine.lane_calls == 0
    else:
        assert engine.lane_calls > 3000 * 0.95, engine.lane_calls


def _rewrite(log, new_log, change) -> None:
    """Copy ``log`` to ``new_log``, each record through ``change(fields, blobs)``."""
    writer = LogWriter(new_log)
    try:
        for rec in read_log(log):
            fields = {k: v for k, v in rec.items() if k != "blobs"}
            blobs = list(rec.get("blobs", []))
            change(fields, blobs)
            writer.write(fields, blobs)
    finally:
        writer.close()


@pytest.mark.parametrize("what", ["args", "addrs"])
def test_a_call_that_differs_from_its_record_is_a_divergence_named_by_python(what, tmp_path, capfd):
    """The lane answers a call only when it is exactly the logged one: a clock_gettime whose
    clock id (``args``) or buffer (``addrs``) differs from its record at seq 1000 is handed
    back, and the replay stops there with the divergence error it gives without the lane."""
    log, bad = new_log_path(tmp_path), new_log_path(tmp_path)
    status, _, _ = _record_in_process([build_program("syscall_loop"), "3000", "clock"], log, capfd)
    assert status == 0
    nr = number("clock_gettime")

    def change(fields, blobs):
        if fields["t"] == "sys" and fields["seq"] == 1000:
            assert fields["nr"] == nr
            if what == "args":
                fields["args"] = [fields["args"][0] ^ 4]        # CLOCK_MONOTONIC_RAW for MONOTONIC
            else:
                fields["addrs"] = [fields["addrs"][0] + 64]     # a buffer elsewhere on its stack
    _rewrite(log, bad, change)
    rep = replay(bad)
    assert rep.returncode == 3, rep.stderr
    err = rep.stderr.decode()
    assert "diverged" in err and "clock_gettime" in err and "seq 1000" in err, err
