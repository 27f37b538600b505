"""compare(): aligning the primary's and the backup's traces, flagging divergences."""
import pandas as pd
import pytest

from tft_lab import compare
from tft_lab.trace import TraceEvent, to_dataframe

PID = 100


def call(replica, seq, syscall, args="", result=0, cls="input", action=None, epoch=None):
    action = action or {"primary": "logged", "backup": "emulated", "tracer": "ran"}[replica]
    return TraceEvent(replica, PID, seq, seq // 4 if epoch is None else epoch, "syscall", syscall, args,
                      result, cls, action, "", 1000 * seq, 0)


def signal(replica, seq, name, state):
    action = "deferred" if state == "arrived" else "delivered"
    return TraceEvent(replica, PID, seq, seq // 4, "signal", name, "", 0, "event", action, state, 1000 * seq + 1, 0)


# The program: read the clock, ask its pid, read stdin, write it out.
PROGRAM = [
    ("clock_gettime", "CLOCK_REALTIME, {...}", 0),
    ("getpid", "", 4242),
    ("read", '0, "hi\\n", 64', 3),
    ("write", '1, "hi\\n", 3', 3),
]


def run(replica, program=PROGRAM):
    return [call(replica, seq, *c) for seq, c in enumerate(program)]


def edit(program, seq, **changes):
    """The program with call ``seq`` changed (syscall=, args=, result=)."""
    name, args, result = program[seq]
    new = (changes.get("syscall", name), changes.get("args", args), changes.get("result", result))
    return [new if i == seq else c for i, c in enumerate(program)]


def test_identical_replicas_do_not_diverge():
    aligned = compare(to_dataframe(run("primary")), to_dataframe(run("backup")))
    assert list(aligned["seq"]) == [0, 1, 2, 3]
    assert list(aligned["syscall_primary"]) == list(aligned["syscall_backup"]) == [c[0] for c in PROGRAM]
    assert not aligned["diverged"].any()
    assert set(aligned["reason"]) == {""}


def test_columns():
    aligned = compare(to_dataframe(run("primary")), to_dataframe(run("backup")))
    for col in ("pid", "seq", "epoch", "syscall_primary", "syscall_backup", "args_primary", "args_backup",
                "result_primary", "result_backup", "action_primary", "action_backup", "diverged", "reason"):
        assert col in aligned.columns
    assert aligned["diverged"].dtype == bool


def test_the_replicas_acting_differently_is_not_a_divergence():
    aligned = compare(to_dataframe(run("primary")), to_dataframe(run("backup")))
    assert list(aligned["action_primary"]) == ["logged"] * 4
    assert list(aligned["action_backup"]) == ["emulated"] * 4
    assert not aligned["diverged"].any()


@pytest.mark.parametrize(
    "change, reason",
    [
        (dict(result=4243), "result differs"),
        (dict(args="<other>"), "args differ"),
        (dict(syscall="getppid"), "syscall differs"),
        # A different call with other arguments: the call is what counts.
        (dict(syscall="getppid", args="1", result=1), "syscall differs"),
        (dict(args="<other>", result=7), "args differ"),
    ],
)
def test_exactly_the_differing_row_is_flagged_with_its_reason(change, reason):
    backup = run("backup", edit(PROGRAM, 1, **change))
    aligned = compare(to_dataframe(run("primary")), to_dataframe(backup))
    assert list(aligned["diverged"]) == [False, True, False, False]
    assert aligned.loc[1, "reason"] == reason


def test_a_backup_that_stopped_early_is_missing_calls():
    aligned = compare(to_dataframe(run("primary")), to_dataframe(run("backup")[:2]))
    assert list(aligned["reason"]) == ["", "", "missing on backup", "missing on backup"]
    assert aligned["syscall_backup"].isna().tolist() == [False, False, True, True]
    assert aligned["result_backup"].isna().tolist() == [False, False, True, True]


def test_a_backup_that_made_an_extra_call():
    extra = run("backup") + [call("backup", 4, "exit_group", "0", 0, cls="local", action="ran")]
    aligned = compare(to_dataframe(run("primary")), to_dataframe(extra))
    assert list(aligned["reason"]) == ["", "", "", "", "missing on primary"]
    assert aligned.loc[4, "syscall_backup"] == "exit_group"
    assert pd.isna(aligned.loc[4, "syscall_primary"])


def test_a_signal_delivery_is_aligned_after_the_call_it_follows():
    primary = run("primary") + [signal("primary", 1, "SIGALRM", "arrived"),
                                signal("primary", 2, "SIGALRM", "delivered")]
    backup = run("backup") + [signal("backup", 2, "SIGALRM", "delivered")]
    aligned = compare(to_dataframe(primary), to_dataframe(backup))
    # The arrival (primary only) is not compared; the delivery follows read (seq 2).
    assert list(zip(aligned["seq"], aligned["kind"])) == [
        (0, "syscall"), (1, "syscall"), (2, "syscall"), (2, "signal"), (3, "syscall")]
    assert not aligned["diverged"].any()


def test_a_signal_delivered_at_another_seq_diverges_twice():
    primary = run("primary") + [signal("primary", 1, "SIGALRM", "delivered")]
    backup = run("backup") + [signal("backup", 2, "SIGALRM", "delivered")]
    aligned = compare(to_dataframe(primary), to_dataframe(backup))
    flagged = aligned[aligned["diverged"]]
    assert list(zip(flagged["seq"], flagged["reason"])) == [(1, "missing on backup"), (2, "missing on primary")]


def test_another_signal_delivered():
    primary = run("primary") + [signal("primary", 2, "SIGALRM", "delivered")]
    backup = run("backup") + [signal("backup", 2, "SIGUSR1", "delivered")]
    aligned = compare(to_dataframe(primary), to_dataframe(backup))
    assert aligned[aligned["diverged"]]["reason"].tolist() == ["signal differs"]


def test_one_dataframe_with_both_replicas_is_split_by_replica():
    backup = run("backup", edit(PROGRAM, 3, result=2))
    both = to_dataframe(run("primary") + backup)
    one = compare(both)
    two = compare(to_dataframe(run("primary")), to_dataframe(backup))
    pd.testing.assert_frame_equal(one, two)
    assert one["reason"].tolist() == ["", "", "", "result differs"]


def test_several_processes_are_kept_apart():
    child = [c._replace(pid=101) for c in run("primary")[:2]]
    aligned = compare(to_dataframe(run("primary") + child), to_dataframe(run("backup")))
    assert list(aligned["pid"]) == [100, 100, 100, 100, 101, 101]
    assert aligned["reason"].tolist()[4:] == ["missing on backup"] * 2


def test_a_trace_without_replicas_is_refused_with_advice():
    with pytest.raises(ValueError, match="compare\\(primary_df, backup_df\\)"):
        compare(to_dataframe(run("tracer")))
