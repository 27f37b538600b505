"""The ``%tft`` magic, driven through IPython's own ``run_line_magic`` / ``run_cell``.

A cell that says ``r = %tft run ./app`` gets a :class:`tft_lab.session.Run`
of a real replicated run (the supervisors run in child processes, never in
the shell); ``%tft step`` gives a live stepper; bad input is refused with the
usage line.
"""
from __future__ import annotations

import pandas as pd
import pytest
from IPython.testing.globalipapp import start_ipython

from tft_lab.session import Run
from tft_lab.widgets import LiveStepper

COLUMNS = ["replica", "pid", "seq", "epoch", "syscall", "args", "result", "cls", "action"]


@pytest.fixture(scope="module")
def ip():
    shell = start_ipython()
    shell.run_line_magic("load_ext", "tft_lab")
    return shell



def test_load_ext_registers_the_tft_line_magic(ip):
    assert "tft" in ip.magics_manager.magics["line"]


def test_a_cell_r_equals_tft_run_gets_the_run_of_both_replicas(ip, clocks):
    ip.run_cell(f"r = %tft run --epoch 16 {clocks}", store_history=False)
    r = ip.user_ns["r"]
    assert isinstance(r, Run)
    assert r.returncode == 0 and r.outcome == "completed"
    assert "sys_time_ret=" in r.stdout
    t = r.trace
    assert set(COLUMNS) <= set(t.columns)
    assert set(t["replica"].astype(str)) == {"primary", "backup"}
    for col in ("replica", "syscall", "cls", "action", "kind"):
        assert isinstance(t[col].dtype, pd.CategoricalDtype), col
    for col in ("pid", "seq", "epoch", "result"):
        assert t[col].dtype == "int64", col
    # --epoch 16 reached the supervisors: epochs are seq // 16.
    calls = t[t["kind"] == "syscall"]
    assert (calls["epoch"] == calls["seq"] // 16).all()
    # The backup was fed the primary's clock values: same calls, same results.
    p = calls[calls["replica"] == "primary"].set_index(["pid", "seq"])
    b = calls[calls["replica"] == "backup"].set_index(["pid", "seq"])
    both = p.merge(b, left_index=True, right_index=True, suffixes=("_p", "_b"))
    assert len(both) > 20
    assert (both["syscall_p"].astype(str) == both["syscall_b"].astype(str)).all()
    assert (both["result_p"] == both["result_b"]).all()
    assert set(b.loc[b["cls"] == "input", "action"].astype(str)) <= {"emulated", "ran"}


def test_options_go_before_the_program_and_its_arguments_after(ip, counter):
    r = ip.run_line_magic("tft", f"run --epoch 5 --commit none {counter} 2")
    assert r.returncode == 0 and r.stdout.count("\n") == 2
    assert r.command[r.command.index("--") + 1:] == [counter, "2"]
    assert ["--commit", "none"] == r.command[r.command.index("--commit"):r.command.index("--commit") + 2]


def test_record_and_replay_through_the_magic_give_the_same_stdout(ip, clocks, tmp_path):
    log = tmp_path / "clocks.log"
    rec = ip.run_line_magic("tft", f"record --log {log} {clocks}")
    assert rec.returncode == 0 and rec.log == str(log) and log.stat().st_size > 0
    rep = ip.run_line_magic("tft", f"replay {log}")
    assert rep.returncode == 0
    assert rep.stdout == rec.stdout
    assert set(rep.trace["replica"].astype(str)) == {"backup"}
    # Two recordings differ (the clocks moved): the equality is the replay's doing.
    assert ip.run_line_magic("tft", f"record {clocks}").stdout != rec.stdout


def test_record_without_a_log_file_uses_a_temporary_one(ip, clocks):
    rec = ip.run_line_magic("tft", f"record --epoch 8 {clocks}")
    assert rec.returncode == 0 and rec.log and rec.log.endswith(".log")
    assert ip.run_line_magic("tft", f"replay {rec.log}").stdout == rec.stdout


def test_fault_primary_at_n_gives_a_failover(ip, counter):
    r = ip.run_line_magic("tft", f"run --fault primary@30 {counter} 4")
    assert r.outcome == "failover" and r.returncode == 0
    assert r.failover_ms is not None and r.failover_ms >= 0
    lines = r.stdout.splitlines()
    assert sorted({ln.split()[0] for ln in lines}) == ["n=0", "n=1", "n=2", "n=3"]
    t = r.trace
    assert (t.loc[t["replica"] == "backup", "kind"] == "failover").sum() == 1
    assert t.loc[t["replica"] == "primary", "seq"].max() <= 30


def test_tft_step_returns_a_live_stepper(ip, clocks):
    s = ip.run_line_magic("tft", f"step --epoch 7 {clocks}")
    assert isinstance(s, LiveStepper)
    assert s.epoch_length == 7 and s.current["kind"] == "exec"
    s.next()
    assert s.to_epoch_end()["epoch"] == 1
    r = s.run_to_end()
    assert r.returncode == 0 and r.outcome == "completed"


@pytest.mark.parametrize("line", ["", "frobnicate ./app", "run", "run --epoch", "record --epoch x ./app",
                                  "run --commit sometimes ./app", "replay"])
def test_bad_usage_raises_a_value_error_with_the_usage_line(ip, line):
    with pytest.raises(ValueError, match=r"usage: %tft run\|record\|replay\|step"):
        ip.run_line_magic("tft", line)


def test_a_missing_program_raises_a_clear_error(ip, tmp_path):
    with pytest.raises(Exception, match="no such file"):
        ip.run_line_magic("tft", f"run {tmp_path / 'nothing-here'}")
