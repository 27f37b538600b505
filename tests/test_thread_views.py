"""The views of a threaded program's trace: its schedule, the picture, the stepper.

A real recording of ``thr_mutex`` (four threads taking a mutex and sleeping) and its
replay: the turns the threads took add up to the calls they made, the replay's
schedule is the recording's, the picture has a lane per thread, and the stepper keeps
every thread's call apart (seqs count each thread's calls, so two threads have a
call 0 each).
"""
from __future__ import annotations

import pytest

import tft_lab
from tft_lab.plots import SWITCH_COLORS, thread_schedule
from tft_lab.stepping import describe_step, render_step, schedule, step_table
from tft_lab.strace import format_call
from tft_lab.testing import build_program


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    log = tmp_path_factory.mktemp("threads") / "mutex.log"
    status, engine = tft_lab.record([str(build_program("thr_mutex")), "4"], log)
    assert status == 0
    rec = tft_lab.to_dataframe(engine.events)
    status, engine = tft_lab.replay(log)
    assert status == 0
    return rec, tft_lab.to_dataframe(engine.events)


def test_the_turns_cover_every_call_once_and_follow_the_switches(traces):
    rec, _ = traces
    turns = schedule(rec)
    calls = rec[rec["kind"] == "syscall"]
    assert turns["calls"].sum() == len(calls)
    per_thread = turns.groupby("tid")["calls"].sum().to_dict()
    assert per_thread == calls.groupby("tid").size().to_dict()
    assert set(turns["tid"]) == set(calls["tid"]) and turns["tid"].nunique() == 5
    # each turn starts where the last one ended, and the next turn is the thread the switch named
    assert (turns["start"].iloc[1:].to_numpy() == turns["end"].iloc[:-1].to_numpy()).all()
    switched = turns[turns["ended_by"] != "end"]
    assert switched["next_tid"].iloc[:-1].tolist() == turns["tid"].iloc[1:len(switched)].tolist()
    assert set(turns.loc[turns["ended_by"] == "block", "blocked_in"]) <= {"futex", "clock_nanosleep"}
    assert turns["tid"].iloc[0] == rec["pid"].iloc[0]   # the first thread starts the others


def test_the_replay_takes_the_recordings_schedule(traces):
    rec, rep = traces
    cols = ["tid", "first_seq", "last_seq", "ended_by", "blocked_in", "next_tid"]
    a = schedule(rec)[cols]
    b = schedule(rep, replica="backup")[cols]
    assert a.astype(str).values.tolist() == b.astype(str).values.tolist()


def test_the_picture_has_a_lane_per_thread_and_a_trace_per_reason(traces):
    rec, _ = traces
    fig = thread_schedule(rec)
    names = {d.name for d in fig.data}
    assert "block" in names and "switch" in names and names - {"switch"} <= set(SWITCH_COLORS)
    assert len(fig.layout.yaxis.tickvals) == rec["tid"].nunique()
    bars = [d for d in fig.data if d.type == "bar"]
    assert sum(len(d.y) for d in bars) == len(schedule(rec))
    assert thread_schedule(rec.iloc[0:0]).layout.title.text.startswith("Thread schedule")


def test_the_stepper_keeps_each_threads_calls_apart(traces):
    rec, _ = traces
    steps = step_table(rec)
    assert len(steps) == len(rec)            # one replica: every row is its own step
    assert steps.groupby(["pid", "seq", "kind"]).size().max() > 1   # threads share seqs...
    assert not steps.duplicated(["pid", "tid", "seq", "kind", "syscall", "rank", "nth"]).any()   # ...not steps
    sw = steps[(steps["kind"] == "switch") & (steps["tid"] != steps["pid"])].iloc[0]   # a worker's
    info = describe_step(rec, sw)
    html = render_step(info)
    assert f"thread <b>{info['tid']}</b>" in html and "runs ---" in info["call"]
    row = rec.iloc[int(sw["row_primary"])]
    assert format_call(row) == f"--- thread {row['tid']} blocks in its call after seq {row['seq']}: " \
                               f"thread {row['result']} runs ---"


def test_processes_scheduled_as_one_are_one_schedule(tmp_path):
    """Children that share their parent's memory (``shared_procs``: a process-shared semaphore
    taken in turns) are scheduled with it: the turns span every process, hand over from one
    process to another, cover every call, and the replay takes the recording's."""
    log = tmp_path / "shared.log"
    status, engine = tft_lab.record([str(build_program("shared_procs"))], log)
    assert status == 0
    rec = tft_lab.to_dataframe(engine.events)
    status, engine = tft_lab.replay(log)
    assert status == 0
    rep = tft_lab.to_dataframe(engine.events)
    turns = schedule(rec)
    calls = rec[rec["kind"] == "syscall"]
    assert rec["pid"].nunique() == 4 and set(turns["tid"]) == set(calls["tid"])
    assert turns["calls"].sum() == len(calls)
    pid_of = dict(zip(calls["tid"], calls["pid"]))
    handed = {(pid_of[t], pid_of[int(n)]) for t, n in zip(turns["tid"], turns["next_tid"]) if n in pid_of}
    assert any(a != b for a, b in handed), handed
    cols = ["tid", "first_seq", "last_seq", "ended_by", "blocked_in", "next_tid"]
    again = schedule(rep, replica="backup")[cols]
    assert again.astype(str).values.tolist() == turns[cols].astype(str).values.tolist()
