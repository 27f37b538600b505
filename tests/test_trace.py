"""The event stream: what a supervisor writes while it runs, and how it is read back."""
import os
import stat

import pandas as pd

from tft_lab.trace import EventFollower, EventWriter, TraceEvent, event_file, load, read_events, save


def event(seq: int, t_ms: int = 0) -> TraceEvent:
    return TraceEvent("primary", 100, seq, seq // 8, "syscall", "getpid", "", 100, "identity", "logged", "",
                      t_ms * 1_000_000, 0)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_stream_is_private_and_reads_back_exactly(tmp_path):
    path = event_file(tmp_path, "primary")
    assert os.path.basename(path) == "primary.trace.jsonl"
    writer = EventWriter(path)
    for seq in range(3):
        writer.write(event(seq))
    writer.close()
    assert mode(path) == 0o600
    assert read_events([path]) == [event(0), event(1), event(2)]


def test_the_tail_a_killed_supervisor_left_is_skipped(tmp_path):
    path = event_file(tmp_path, "backup")
    writer = EventWriter(path)
    writer.write(event(0))
    writer.flush()
    with open(path, "a") as f:
        f.write('["backup",100,1,0,"sysc')   # killed mid-line
    assert read_events([path, tmp_path / "missing.trace.jsonl"]) == [event(0)]


def test_a_follower_sees_each_event_once_as_lines_complete(tmp_path):
    path = event_file(tmp_path, "primary")
    follower = EventFollower([path])
    assert follower.poll() == []                      # not created yet
    writer = EventWriter(path)
    writer.write(event(0, t_ms=250))                  # 0.2 s after the (notional) last flush: flushed
    assert follower.poll() == [event(0, t_ms=250)]
    writer.write(event(1, t_ms=260))                  # within 0.2 s of the last flush: buffered
    assert follower.poll() == []
    writer.write(event(2, t_ms=500))                  # 0.2 s later: flushed, with what was buffered
    assert follower.poll() == [event(1, t_ms=260), event(2, t_ms=500)]
    writer.close()
    assert follower.poll() == []
    assert follower.events == [event(0, t_ms=250), event(1, t_ms=260), event(2, t_ms=500)]


def test_save_writes_parquet_or_csv_readable_by_the_owner_only(tmp_path):
    stream = event_file(tmp_path, "primary")
    writer = EventWriter(stream)
    writer.write(event(0))
    writer.close()
    df = load([stream])
    save(df, tmp_path / "t.parquet")
    save(df, tmp_path / "t.csv")
    assert mode(tmp_path / "t.parquet") == mode(tmp_path / "t.csv") == 0o600
    assert pd.read_parquet(tmp_path / "t.parquet")["syscall"].astype(str).tolist() == ["getpid"]
    assert pd.read_csv(tmp_path / "t.csv")["seq"].tolist() == [0]


def test_every_action_of_a_record_and_its_replay_is_a_known_category(tmp_path, clocks):
    from tft_lab import session

    rec = session.record([clocks], str(tmp_path / "clocks.log"), progress=False)
    rep = session.replay(rec.log, progress=False)
    for run in (rec, rep):
        assert run.returncode == 0, run.stderr
        unknown = run.trace[run.trace["action"].isna()]
        assert unknown.empty, f"actions missing from trace.ACTIONS in {run.command[3]}"
