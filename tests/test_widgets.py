"""The stepper over a recorded trace, driven without a browser."""
import pytest

from tft_lab.trace import TraceEvent, to_dataframe
from tft_lab.widgets import TraceStepper, step_table

MS = 1_000_000
PID = 100


def call(replica, seq, syscall, args, result, cls, action, t_ms):
    return TraceEvent(replica, PID, seq, seq // 2, "syscall", syscall, args, result, cls, action, "", int(t_ms * MS),
                      0)


def signal(replica, seq, name, state, t_ms):
    action = "deferred" if state == "arrived" else "delivered"
    return TraceEvent(replica, PID, seq, seq // 2, "signal", name, "", 0, "event", action, state, int(t_ms * MS), 0)


@pytest.fixture
def trace():
    """A recorded run, epoch length 2: SIGALRM arrives after getpid (seq 1) and is
    delivered after read (seq 3), at the epoch boundary."""
    primary = [
        call("primary", 0, "clock_gettime", "CLOCK_REALTIME, {...}", 0, "input", "logged", 0),
        call("primary", 1, "getpid", "", 4242, "identity", "logged", 1),
        signal("primary", 1, "SIGALRM", "arrived", 1.5),
        call("primary", 2, "brk", "NULL", 0x5555_0000, "local", "ran", 2),
        call("primary", 3, "read", '0, "hi\\n", 64', 3, "input", "logged", 3),
        signal("primary", 3, "SIGALRM", "delivered", 3.2),
        call("primary", 4, "write", '1, "hi\\n", 3', 3, "output", "logged", 4),
    ]
    backup = [
        call("backup", 0, "clock_gettime", "CLOCK_REALTIME, {...}", 0, "input", "emulated", 0.5),
        call("backup", 1, "getpid", "", 4242, "identity", "injected", 1.5),
        call("backup", 2, "brk", "NULL", 0x5555_0000, "local", "ran", 2.5),
        call("backup", 3, "read", '0, "hi\\n", 64', 3, "input", "emulated", 3.5),
        signal("backup", 3, "SIGALRM", "delivered", 3.6),
        call("backup", 4, "write", '1, "hi\\n", 3', 3, "output", "emulated", 4.5),
    ]
    # Listed backup first: the stepper orders events itself.
    return to_dataframe(backup + primary)


def names(stepper):
    out = []
    stepper.index = 0
    while True:
        c = stepper.current
        out.append(c["syscall"] if c["kind"] == "syscall" else f"{c['syscall']} {c['signal']}")
        if stepper.index == len(stepper.steps) - 1:
            return out
        stepper.next()


def test_one_step_per_event_in_program_order(trace):
    s = TraceStepper(trace)
    assert names(s) == ["clock_gettime", "getpid", "SIGALRM arrived", "brk", "read", "SIGALRM delivered", "write"]
    assert len(step_table(trace)) == 7


def test_next_and_prev_move_one_step_and_stop_at_the_ends(trace):
    s = TraceStepper(trace)
    assert s.index == 0 and s.current["syscall"] == "clock_gettime"
    s.prev()
    assert s.index == 0
    s.next()
    s.next()
    assert s.current["syscall"] == "SIGALRM" and s.current["signal"] == "arrived"
    s.prev()
    assert s.current["syscall"] == "getpid"
    s.index = 99
    s.next()
    assert s.index == 6 and s.current["syscall"] == "write"


def test_the_buttons_and_the_slider_step_too(trace):
    s = TraceStepper(trace)
    s.next_button.click()
    assert s.current["syscall"] == "getpid"
    s.prev_button.click()
    assert s.current["syscall"] == "clock_gettime"
    s.slider.value = 4
    assert s.current["syscall"] == "read"
    assert "5 of 7" in s.position.value


def test_the_view_shows_the_call_its_class_epoch_and_what_each_replica_did(trace):
    s = TraceStepper(trace)
    s.index = 1
    html = s.view.value
    assert "getpid() = 4242" in html
    assert "class <b>identity</b>" in html and "epoch <b>0</b>" in html
    assert "<td>primary</td><td><b>logged</b></td>" in html
    assert "<td>backup</td><td><b>injected</b></td>" in html


def test_the_view_shows_a_pending_signal_until_it_is_delivered(trace):
    s = TraceStepper(trace)
    s.index = 1  # getpid: SIGALRM not arrived yet
    assert "pending signals: none" in s.view.value
    s.index = 3  # brk: arrived after seq 1, waiting for the boundary
    assert "SIGALRM (arrived after seq 1; delivered after seq 3)" in s.view.value
    s.index = 5  # the delivery itself
    assert "pending signals: none" in s.view.value
    assert "delivered in epoch 1: SIGALRM after seq 3 (backup, primary)" in s.view.value


def test_replica_filter_shows_that_replicas_rows(trace):
    s = TraceStepper(trace)
    s.replica_filter.value = "backup"
    # The backup never saw SIGALRM arrive: it delivers where the log says.
    assert names(s) == ["clock_gettime", "getpid", "brk", "read", "SIGALRM delivered", "write"]
    s.index = 1
    assert s.current["replica"] == "backup" and s.current["action"] == "injected"


def test_class_filter_keeps_the_current_call_or_moves_to_the_next_match(trace):
    s = TraceStepper(trace)
    s.index = 3  # brk
    s.class_filter.value = "input"
    assert s.current["syscall"] == "read"  # the next input call after brk
    assert [c for c in s.steps["syscall"]] == ["clock_gettime", "read"]
    s.class_filter.value = "all"
    assert s.current["syscall"] == "read"  # stays where it was


def test_filter_options_are_the_classes_and_replicas_present(trace):
    s = TraceStepper(trace)
    assert list(s.class_filter.options) == ["all", "local", "input", "identity", "output", "event"]
    assert list(s.replica_filter.options) == ["all", "primary", "backup"]


def test_a_filter_that_matches_nothing_disables_stepping():
    only_primary = to_dataframe([call("primary", 0, "getpid", "", 7, "identity", "logged", 0)])
    s = TraceStepper(only_primary)
    s.class_filter.value = "identity"
    assert s.current["syscall"] == "getpid"
    s.replica_filter.options = ["all", "primary", "backup"]  # as if the backup had rows
    s.replica_filter.value = "backup"
    assert s.current is None
    assert s.next_button.disabled and "no event matches" in s.view.value


def test_the_stepper_is_a_widget_box(trace):
    import ipywidgets

    s = TraceStepper(trace)
    assert isinstance(s, ipywidgets.VBox)
    assert "tft-stepper" in s._dom_classes


def test_a_call_only_the_backup_made_is_stepped_in_its_place(trace):
    # The backup went live after the primary's write and made two more calls.
    extra = [call("backup", 5, "getppid", "", 1, "identity", "ran", 5.5),
             call("backup", 6, "exit_group", "0", 0, "local", "ran", 6.5)]
    s = TraceStepper(to_dataframe(list(trace.itertuples(index=False, name="TraceEvent")) + extra))
    assert names(s)[-3:] == ["write", "getppid", "exit_group"]
    assert s.current["replica"] == "backup"
