"""The pictures: each a function from a DataFrame to a plotly figure."""
import pandas as pd
import plotly.graph_objects as go
import pytest

from tft_lab import compare
from tft_lab.plots import (deferrals, epoch_timeline, overhead, overhead_ratios, side_by_side,
                           signal_deferral)
from tft_lab.strace import format_args, format_call, format_result
from tft_lab.trace import TraceEvent, to_dataframe

MS = 1_000_000
PID = 100
EPOCH = 4


def call(replica, seq, syscall, args="", result=0, cls="input", wait_ns=0, pid=PID):
    action = {"primary": "logged", "backup": "emulated"}[replica]
    # The backup runs half a millisecond behind the primary.
    t = seq * MS + (MS // 2 if replica == "backup" else 0)
    return TraceEvent(replica, pid, seq, seq // EPOCH, "syscall", syscall, args, result, cls, action, "", t, wait_ns)


def signal(replica, seq, name, state, t_ns):
    action = "deferred" if state == "arrived" else "delivered"
    return TraceEvent(replica, PID, seq, seq // EPOCH, "signal", name, "", 0, "event", action, state, t_ns, 0)


def ten_calls(replica):
    """Ten calls (epochs 0, 0.., 1.., 2..): one output that waited 300 µs to commit (primary)."""
    calls = [call(replica, seq, "clock_gettime", "CLOCK_MONOTONIC, {...}") for seq in range(10)]
    calls[5] = call(replica, 5, "write", '1, "tick\\n", 5', 5, cls="output",
                    wait_ns=300_000 if replica == "primary" else 0)
    calls[6] = call(replica, 6, "brk", "NULL", 0x5555_0000, cls="local")
    return calls


@pytest.fixture
def trace():
    """Both replicas, ten calls each; SIGALRM arrives after seq 1 and is delivered
    after seq 3; SIGUSR1 arrives after seq 6, delivered after seq 7; SIGTERM
    arrives after seq 9 and is still pending."""
    return to_dataframe(
        ten_calls("primary") + ten_calls("backup") + [
            signal("primary", 1, "SIGALRM", "arrived", int(1.3 * MS)),
            signal("primary", 3, "SIGALRM", "delivered", int(3.1 * MS)),
            signal("backup", 3, "SIGALRM", "delivered", int(3.6 * MS)),
            signal("primary", 6, "SIGUSR1", "arrived", int(6.2 * MS)),
            signal("primary", 7, "SIGUSR1", "delivered", int(7.1 * MS)),
            signal("backup", 7, "SIGUSR1", "delivered", int(7.6 * MS)),
            signal("primary", 9, "SIGTERM", "arrived", int(9.2 * MS)),
        ]
    )


def named(items, name):
    return [x for x in items if x.name == name]


# -- epoch_timeline -------------------------------------------------------------


def test_timeline_has_one_lane_per_replica_and_process(trace):
    fig = epoch_timeline(trace)
    assert isinstance(fig, go.Figure)
    assert list(fig.layout.yaxis.ticktext) == ["primary pid 100", "backup pid 100"]


def test_timeline_colours_calls_by_class(trace):
    fig = epoch_timeline(trace)
    by_class = {t.name: len(t.x) for t in fig.data if t.name in ("input", "output", "local")}
    assert by_class == {"input": 16, "output": 2, "local": 2}


def test_timeline_draws_one_line_per_epoch_boundary_in_each_lane(trace):
    # Ten calls at epoch length 4 are epochs 0, 1, 2: two boundaries per lane.
    lines = named(epoch_timeline(trace).layout.shapes, "epoch boundary")
    assert len(lines) == 4
    # The primary's first boundary is at its seq 4 (4 ms).
    assert sorted(line.x0 for line in lines)[0] == 4.0


def test_timeline_epoch_length_redraws_the_epochs(trace):
    # At epoch length 2 the ten calls span five epochs: four boundaries per lane.
    fig = epoch_timeline(trace, epoch_length=2)
    assert len(named(fig.layout.shapes, "epoch boundary")) == 8
    assert "epoch length 2" in fig.layout.title.text


def test_timeline_draws_one_arrow_per_deferred_signal(trace):
    arrows = named(epoch_timeline(trace).layout.annotations, "deferral")
    # SIGALRM and SIGUSR1 were deferred on the primary; SIGTERM is still pending;
    # the backup only delivers (it never saw them arrive).
    assert len(arrows) == 2
    alrm = min(arrows, key=lambda a: a.ax)
    assert (alrm.ax, alrm.x) == (1.3, 3.1)  # from arrival to delivery, in ms
    assert "arrived after seq 1, delivered after seq 3 (2 calls" in alrm.hovertext


def test_timeline_marks_signal_arrivals_and_deliveries(trace):
    fig = epoch_timeline(trace)
    assert len(named(fig.data, "signal arrived")[0].x) == 3
    assert len(named(fig.data, "signal delivered")[0].x) == 4


def test_timeline_draws_commit_waits_as_bars_ending_at_the_call(trace):
    (waits,) = named(epoch_timeline(trace).data, "commit wait")
    # One segment (start, end, gap) for the primary's write at 5 ms that waited 0.3 ms.
    assert list(waits.x) == [4.7, 5.0, None]


def test_timeline_failover_line_only_when_given(trace):
    assert named(epoch_timeline(trace).layout.shapes, "failover") == []
    fig = epoch_timeline(trace, failover_t_ns=8 * MS)
    (line,) = named(fig.layout.shapes, "failover")
    assert line.x0 == line.x1 == 8.0
    (label,) = named(fig.layout.annotations, "failover")
    assert label.text == "failover"


def test_timeline_of_an_empty_trace_says_so():
    fig = epoch_timeline(to_dataframe([]))
    assert fig.layout.annotations[0].text == "no events"


# -- signals --------------------------------------------------------------------


def test_deferrals_pair_arrival_with_delivery(trace):
    d = deferrals(trace)
    primary = d[d["replica"] == "primary"].set_index("signal")
    assert primary.loc["SIGALRM", ["arrival_seq", "delivery_seq", "deferral_calls"]].tolist() == [1, 3, 2]
    assert primary.loc["SIGALRM", "deferral_ns"] == int(1.8 * MS)
    assert pd.isna(primary.loc["SIGTERM", "delivery_seq"])  # pending
    assert d["replica"].tolist() == ["primary"] * 3 + ["backup"] * 2
    backup = d[d["replica"] == "backup"]
    assert backup["arrival_seq"].isna().all() and backup["delivery_seq"].tolist() == [3, 7]


def test_signal_deferral_shows_the_deferral_length(trace):
    fig = signal_deferral(trace)
    by_calls = [t for t in fig.data if t.name == "delivery" and t.xaxis == "x"][0]
    # Primary first: SIGALRM, SIGUSR1, the pending SIGTERM; then the backup's
    # deliveries, made where the log said (it never saw the signals arrive).
    assert list(by_calls.y) == ["SIGALRM #1 · primary pid 100", "SIGUSR1 #2 · primary pid 100",
                                "SIGTERM #3 · primary pid 100", "SIGALRM #4 · backup pid 100",
                                "SIGUSR1 #5 · backup pid 100"]
    assert list(by_calls.text) == ["+2 calls", "+1 calls", "pending", "as logged", "as logged"]
    segments = [t for t in fig.data if t.name == "deferral" and t.xaxis == "x"][0]
    assert [x for x in segments.x if x is not None] == [1, 3, 6, 7]


def test_signal_deferral_without_signals():
    fig = signal_deferral(to_dataframe(ten_calls("primary")))
    assert fig.layout.annotations[0].text == "no events"


# -- side by side ---------------------------------------------------------------


def test_side_by_side_marks_divergences_in_red(trace):
    backup = trace[trace["replica"] == "backup"].copy()
    backup.loc[backup["seq"] == 2, "result"] = 99
    aligned = compare(trace[trace["replica"] == "primary"], backup)
    fig = side_by_side(aligned)
    (table,) = fig.data
    seq_column = list(table.cells.values[1])
    primary_call_fill = list(table.cells.fill.color[3])
    red = [s for s, c in zip(seq_column, primary_call_fill) if c != "white"]
    assert red == [2]
    assert "1 divergence in 12 events" in fig.layout.title.text
    assert table.cells.values[3][2] == "clock_gettime(CLOCK_MONOTONIC, {...}) = 0"
    assert table.cells.values[5][2] == "clock_gettime(CLOCK_MONOTONIC, {...}) = 99"
    assert table.cells.values[7][2] == "result differs"


def test_side_by_side_shows_a_missing_call_as_a_dash(trace):
    primary = trace[trace["replica"] == "primary"]
    backup = trace[(trace["replica"] == "backup") & (trace["seq"] < 8)]
    (table,) = side_by_side(compare(primary, backup)).data
    assert list(table.cells.values[5])[-2:] == ["—", "—"]
    assert list(table.cells.values[7])[-2:] == ["missing on backup"] * 2


# -- overhead -------------------------------------------------------------------


@pytest.fixture
def bench():
    rows = [
        ("loop", "native", "", 0, 1.0), ("loop", "native", "", 0, 1.2), ("loop", "strace", "", 0, 9.0),
        ("loop", "run", "output", 1, 20.0), ("loop", "run", "output", 64, 12.0),
        ("loop", "run", "none", 1, 10.0), ("loop", "run", "none", 64, 4.4),
        ("cat", "native", "", 0, 2.0), ("cat", "run", "output", 1, 8.0), ("cat", "run", "output", 64, 6.0),
    ]
    return pd.DataFrame(rows, columns=["workload", "mode", "commit", "epoch", "seconds"])


def test_overhead_ratios_divide_by_the_median_native_time(bench):
    r = overhead_ratios(bench).set_index(["workload", "mode", "commit", "epoch"])["ratio"]
    assert r[("loop", "run", "none", 64)] == pytest.approx(4.0)  # 4.4 / median(1.0, 1.2)
    assert r[("cat", "run", "output", 1)] == pytest.approx(4.0)
    assert "native" not in {m for _, m, _, _ in r.index}


def test_overhead_has_one_panel_per_workload_and_a_series_per_mode_and_commit(bench):
    fig = overhead(bench)
    assert [a.text for a in fig.layout.annotations if a.text in ("cat", "loop")] == ["cat", "loop"]
    assert sorted({t.name for t in fig.data}) == ["run (none)", "run (output)", "strace"]
    # strace was measured at one epoch length only: a dashed reference line.
    (strace,) = [t for t in fig.data if t.name == "strace"]
    assert strace.line.dash == "dash" and list(strace.y) == [pytest.approx(9 / 1.1)] * 2
    run_output_loop = [t for t in fig.data if t.name == "run (output)" and t.xaxis == "x2"][0]
    assert list(run_output_loop.x) == [1, 64]


def test_overhead_lists_each_series_once_in_the_legend(bench):
    fig = overhead(bench)
    assert sorted(t.name for t in fig.data if t.showlegend is not False) == ["run (none)", "run (output)", "strace"]


def test_overhead_needs_a_native_measurement(bench):
    with pytest.raises(ValueError, match="no 'native' measurement.*cat"):
        overhead(bench[~((bench["workload"] == "cat") & (bench["mode"] == "native"))])


# -- formatting -------------------------------------------------------------------


def test_format_call_is_strace_style():
    fail = call("primary", 0, "openat", 'AT_FDCWD, "/nope", O_RDONLY', -2, cls="local")
    assert format_call(fail._asdict()) == 'openat(AT_FDCWD, "/nope", O_RDONLY) = -1 ENOENT (No such file or directory)'
    assert format_call(call("primary", 0, "brk", "NULL", 0x5555_0000)._asdict()) == "brk(NULL) = 0x55550000"
    sig = signal("primary", 3, "SIGALRM", "delivered", 0)
    assert format_call(sig._asdict()) == "--- SIGALRM delivered after seq 3 ---"


def test_a_result_no_replica_has_is_a_question_mark_and_pointers_are_hex():
    assert format_result("read", pd.NA) == "?"
    assert format_result("read", float("nan")) == "?"
    assert format_result("read", None) == "?"
    assert format_args([3, 0x7ffd_0000, 4096]) == "3, 0x7ffd0000, 4096"


def test_deferrals_is_the_steppers_own():
    from tft_lab import stepping

    assert deferrals is stepping.deferrals   # the notebooks import it from tft_lab.plots
