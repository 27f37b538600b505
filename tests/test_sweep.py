"""``tft sweep``: every crash point of a real run, judged; a checker that fails fails the sweep.

The guest is ``tests/programs/chain.c`` (a hash chain over the clock, getrandom and the
pid: every run's output differs, so the sweep needs a checker, ``tests/chain_check.py``).
The sweeps run real ``tft run``s with real failovers, locally and on a real Dask
cluster (a scheduler and a worker started here, on localhost, and torn down).  Each
test checks that no process and no temporary folder is left behind.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

import tft_lab
from tft_lab._process import start_cli
from tft_lab.errors import TftError
from tft_lab.plots import failover_by_class, sweep_heatmap, sweep_outcomes
from tft_lab.sweeps import COLUMNS, OUTCOMES, parse_at
from tft_lab.sweeps.point import free_port
from tft_lab.testing import build_program, nothing_left_running, run_cli

HERE = Path(__file__).resolve().parent
K = 2                                     # chain lines: a short program, ~30 crash points
CHECK = f"{sys.executable} {HERE / 'chain_check.py'} {K}"
HB = "2"                                  # tft run --heartbeat: a loaded CI machine must not fail runs for silence
SAME = ["point", "seq", "syscall", "cls", "outcome", "run_outcome", "returncode", "lines", "check_ok",
        "victim", "commit", "epoch"]     # what must not depend on where a point ran


def not_masked(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that are not masked or fail their check.  (These sweeps found a tft bug: a
    primary killed at one of its first calls could leave its backup without the log's header;
    tests/test_channel.py keeps its regression test.)"""
    return df[(df["outcome"] != "masked") | ~df["check_ok"].astype(bool)]


@pytest.fixture(scope="module")
def chain():
    return str(build_program("chain"))


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Every temporary folder of the test (this process's and its children's) goes here."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def test_parse_at_chooses_the_points():
    assert parse_at("every", 5) == [1, 2, 3, 4, 5]
    assert parse_at("every:3", 10) == [1, 4, 7, 10]
    assert parse_at("2,9, 4", 10) == [2, 4, 9]
    sample = parse_at("sample:4", 100)
    assert len(sample) == 4 and sample == sorted(sample) and sample == parse_at("sample:4", 100)
    for bad in ("0,3", "sometimes", "sample:0", "every:x"):
        with pytest.raises(ValueError):
            parse_at(bad, 10)
    with pytest.raises(ValueError, match="only 10 intercepted calls"):
        parse_at("11", 10)


def test_a_sweep_of_the_chain_guest_over_every_point_is_green(chain, tmp_path, private_tmp, pids_before):
    out = tmp_path / "results.parquet"
    p = run_cli(["sweep", "--at", "every", "--workers", "2", "--epoch", "8", "--heartbeat", HB, "--check", CHECK,
                 "--out", out, "--", chain, str(K)], timeout=900)
    err = p.stderr.decode()
    df = pd.read_parquet(out)
    assert list(df.columns) == list(COLUMNS)
    calls = int(df["point"].max())
    assert df["point"].tolist() == list(range(1, calls + 1)) and calls >= 20
    assert not_masked(df).empty, not_masked(df).to_dict("records")
    masked = df[df["outcome"] == "masked"]
    assert p.returncode == (0 if len(masked) == calls else 1), err
    assert (masked["lines"] == K + 1).all() and (masked["duplicates"] <= 1).all()
    # the primary was killed at every one of its calls: the backup finished each run
    assert (masked["run_outcome"] == "failover").sum() >= len(masked) - 1
    assert df["syscall"].str.len().gt(0).all() and df["seq"].tolist() == list(range(calls))
    assert "local pool of 2 workers" in err and f"{len(masked)} masked" in err
    assert os.stat(out).st_mode & 0o777 == 0o600
    assert list(private_tmp.iterdir()) == []
    nothing_left_running(pids_before)


def test_a_checker_that_fails_at_one_point_fails_the_sweep_and_names_the_point(chain, private_tmp,
                                                                              pids_before):
    picky = f'{CHECK} && test "$TFT_SWEEP_POINT" != 21'
    out = private_tmp.parent / "table.csv"
    p = run_cli(["sweep", "--at", "11,21,25", "--workers", "2", "--heartbeat", HB, "--check", picky, "--out", out,
                 "--", chain, str(K)], timeout=300)
    err = p.stderr.decode()
    assert p.returncode == 1, err
    assert "FAILED point 21 (" in err and "diverged: the checker exited 1" in err
    df = pd.read_csv(out)
    assert not_masked(df)["point"].tolist() == [21], df.to_dict("records")
    assert not df.set_index("point").loc[21, "check_ok"]
    assert "1 failed the check" in err
    assert list(private_tmp.iterdir()) == []
    nothing_left_running(pids_before)


def test_a_checker_that_fails_on_the_fault_free_run_is_refused_before_any_point(chain, private_tmp):
    p = run_cli(["sweep", "--check", f"{sys.executable} {HERE / 'chain_check.py'} {K + 1}", "--", chain, str(K)],
                timeout=120)
    assert p.returncode == 2
    assert p.stderr.decode().startswith("tft: the checker fails on the fault-free reference run")
    assert list(private_tmp.iterdir()) == []


def test_without_a_checker_a_non_deterministic_program_is_refused(chain, private_tmp):
    p = run_cli(["sweep", "--at", "1", "--", chain, str(K)], timeout=120)
    assert p.returncode == 2
    assert "not deterministic, so give a checker (--check CMD)" in p.stderr.decode()


def test_bad_input_is_one_line_and_nothing_runs(chain, private_tmp):
    for args, says in ((["--at", "999"], "the reference run made only"),
                       (["--workers", "0"], "--workers must be at least 1"),
                       (["--commit", "sometimes"], "bad commit policy"),
                       (["--cluster", f"tcp://127.0.0.1:{free_port()}"], "no Dask scheduler at")):
        p = run_cli(["sweep", *args, "--check", CHECK, "--", chain, str(K)], timeout=120)
        err = p.stderr.decode()
        assert p.returncode == 2 and err.startswith("tft: ") and says in err, (args, err)
    p = run_cli(["sweep", "--", "/nonexistent/prog"], timeout=60)
    assert p.returncode == 2 and "nonexistent" in p.stderr.decode()
    assert list(private_tmp.iterdir()) == []


def test_ctrl_c_stops_every_point_and_leaves_nothing_behind(chain, private_tmp, pids_before):
    check = f"{sys.executable} {HERE / 'chain_check.py'} 5"
    proc = start_cli(["sweep", "--at", "every", "--workers", "2", "--heartbeat", HB, "--check", check,
                      "--", chain, "5", "-", "300"])
    try:
        deadline = time.monotonic() + 300
        # wait until the points themselves run (their folders are there), not just the reference
        while sum(1 for d in private_tmp.iterdir() if not d.name.startswith("tft-sweep-ref")) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err.decode()
    assert "interrupted" in err.decode()
    nothing_left_running(pids_before)
    assert list(private_tmp.iterdir()) == []


def test_from_python_and_the_magic_the_same_table(chain, private_tmp):
    df = tft_lab.sweep([chain, str(K)], at="2,4", check=CHECK, workers=2, progress=False, heartbeat=2.0)
    assert df["point"].tolist() == [2, 4] and not_masked(df).empty
    assert df.attrs["backend"] == "a local pool of 2 workers"
    assert df.attrs["reference"][0]["lines"] == K + 1
    # a Python checker: the stdout as a string in, a verdict out
    py = tft_lab.sweep([chain, str(K)], at="2", check=lambda out: out.count(" chain=") == K, progress=False,
                       workers=1, heartbeat=2.0)
    assert not_masked(py).empty, py.to_dict("records")

    from IPython.testing import globalipapp

    globalipapp.start_ipython()          # once per test session: then get_ipython() is the shell
    ip = globalipapp.get_ipython()
    ip.run_line_magic("load_ext", "tft_lab")
    ip.user_ns["CHECK"] = CHECK
    ip.run_cell(f'df = %tft sweep --at 2,4 --workers 2 --heartbeat 2 --check "$CHECK" {chain} {K}',
                store_history=False)
    got = ip.user_ns["df"]
    assert got[["point", "seq", "syscall", "cls"]].equals(df[["point", "seq", "syscall", "cls"]])
    assert not_masked(got).empty
    assert [d for d in private_tmp.iterdir() if d.name.startswith("tft-")] == []   # IPython keeps its history


def test_the_plots_draw_a_sweep_table():
    rows = [dict(point=n, seq=n - 1, syscall="write" if n % 2 else "read", cls="output" if n % 2 else "input",
                 outcome=OUTCOMES[0] if n != 3 else "lost output", run_outcome="failover", returncode=0, lines=3,
                 duplicates=0, failover_ms=float(n), wall_s=1.0 + n / 10, check_ok=n != 3, victim="primary",
                 commit=c, epoch=e, worker="local", note="" if n != 3 else "2 distinct lines")
            for c in ("output", "none") for e in (8, 64) for n in range(1, 5)]
    df = pd.DataFrame(rows)
    fig = sweep_outcomes(df)
    assert {t.name for t in fig.data} == {"masked", "lost output"}
    assert list(next(t for t in fig.data if t.name == "lost output").marker.symbol) == ["x"] * 4
    assert {t.name for t in failover_by_class(df).data} == {"input", "output"}
    heat = sweep_heatmap(df).data[0]
    assert list(heat.y) == ["output", "none"] and list(heat.x) == ["8", "64"]
    assert heat.z[0][0] == pytest.approx(0.75)
    assert sweep_heatmap(df, value="wall_s").data[0].z[1][1] == pytest.approx(1.25)


# --- Dask: a real scheduler and a worker with two processes, on localhost ------------------------------

@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    pytest.importorskip("distributed", reason="the Dask back end needs pip install 'tft_lab[sweep]'")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    logs = tmp_path_factory.mktemp("dask")
    env = dict(os.environ, TMPDIR=str(logs))
    started = []
    try:
        started.append(subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                        stdout=subprocess.DEVNULL, stderr=open(logs / "scheduler.log", "w"),
                                        env=env))
        started.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                                         "--nworkers", "2", "--nthreads", "1", "--no-dashboard",
                                         "--local-directory", str(logs)],
                                        stdout=subprocess.DEVNULL, stderr=open(logs / "worker.log", "w"), env=env))
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=90)
        yield address
    finally:
        for p in reversed(started):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_the_dask_back_end_gives_the_same_table(chain, dask_cluster, private_tmp):
    local = tft_lab.sweep([chain, str(K)], at="every:4", check=CHECK, workers=2, progress=False, heartbeat=2.0)
    remote = tft_lab.sweep([chain, str(K)], at="every:4", check=CHECK, cluster=dask_cluster, progress=False,
                           heartbeat=2.0)
    assert remote.attrs["backend"] == f"the Dask cluster at {dask_cluster} (2 workers)"
    assert not_masked(remote).empty and not_masked(local).empty
    assert remote[SAME].equals(local[SAME]), (remote[SAME].to_dict("records"), local[SAME].to_dict("records"))
    assert remote[["point", "seq", "syscall", "cls"]].equals(local[["point", "seq", "syscall", "cls"]])
    assert remote["worker"].str.startswith("tcp://127.0.0.1:").all()
    assert list(private_tmp.iterdir()) == []


def test_dask_refuses_a_worker_that_lacks_the_program_and_names_it(chain, dask_cluster):
    from tft_lab.sweeps.pool import DaskPool
    from tft_lab.sweeps.point import sha256

    pool = DaskPool(dask_cluster)
    try:
        with pytest.raises(TftError, match=r"Dask worker tcp://127\.0\.0\.1:\d+ lacks /nonexistent/chain"):
            pool.check_files({"/nonexistent/chain": "0" * 64})
        with pytest.raises(TftError, match=r"Dask worker tcp://\S+ has a different .*chain"):
            pool.check_files({chain: "0" * 64})
        pool.check_files({chain: sha256(chain)})
    finally:
        pool.close()


def test_each_outcome_is_named_from_what_the_run_left():
    """The judge on canned runs (the real runs above give only masked points and the known race)."""
    from tft_lab.sweeps.point import Plan, Ran, Reference, judge

    ref = Reference(0, (b"a", b"b", b"c"), {"out.txt": (b"x",)})
    plan = Plan(("prog",), timeout=9)

    def ran(stdout=b"a\nb\nc\n", rc=0, outcome="failover", files=None, timed_out=False, backup=None):
        result = {"outcome": outcome, "backup": backup or {}} if outcome else {}
        return Ran(rc, stdout, b"tft: something\n", result, {"out.txt": [b"x"]} if files is None else files, 1.0,
                   timed_out)

    assert judge(plan, ref, ran()) == ("masked", "")
    assert judge(plan, ref, ran(b"a\nb\nb\nc\n"))[0] == "masked"               # the one uncertain output
    assert judge(plan, ref, ran(b"a\nb\nb\nc\nc\n"))[0] == "duplicated output"
    assert judge(plan, ref, ran(b"a\nb\nc\nd\n"))[0] == "duplicated output"
    assert judge(plan, ref, ran(b"a\nc\n")) == ("lost output", "2 distinct lines, the reference 3")
    assert judge(plan, ref, ran(b"a\nB\nc\n")) == ("diverged", "the output differs from the reference's")
    assert judge(plan, ref, ran(files={"out.txt": [b"y"]}))[0] == "diverged"
    assert judge(plan, ref, ran(rc=1)) == ("diverged", "exit status 1, the reference 0")
    assert judge(plan, ref, ran(timed_out=True)) == ("hung", "still running after 9 s")
    assert judge(plan, ref, ran(outcome="failed"))[0] == "error"
    assert judge(plan, ref, ran(outcome=None)) == ("error", "tft run: no result: tft: something")
    assert judge(plan, ref, ran(outcome="backup-lost", backup={"outcome": "diverged", "error": "at seq 4"})) == \
        ("diverged", "the backup diverged: at seq 4")
    checked = Plan(("prog",), check="true")
    r = ran(b"a\nB\nc\n")
    r.check_ok = True
    assert judge(checked, ref, r)[0] == "masked"                 # a checker decides what "the same" means
    r.check_ok, r.check_note = False, "the checker exited 1"
    assert judge(checked, ref, r) == ("diverged", "the checker exited 1")
