"""The trace is told every step of a fresh backup's catch-up, however quickly the steps follow.

A short history is caught up between two calls of the program (the program sleeps, the
fresh backup replays a few hundred records in a few ms): the supervisor then sees the
backup already caught up at its next call.  The trace must still have the ``catch-up``
event before the ``caught-up`` one (a CI run once lost it: ``test_redundancy`` counted
no catch-up).  The fresh backup here is one that takes and acknowledges every frame at once.
"""
from __future__ import annotations

from tft_lab import log
from tft_lab.errors import PeerFailed
from tft_lab.reintegration import History, Relay


class InstantBackup:
    """A fresh backup that has every frame as soon as it is sent."""

    def __init__(self):
        self.frames: list[bytes] = []
        self.aborted = False

    @property
    def acked(self) -> int:
        return len(self.frames)

    def send(self, frame: bytes) -> int:
        self.frames.append(frame)
        return len(self.frames)

    def flush(self) -> None:
        pass

    def abort(self) -> None:
        self.aborted = True


def relay_with_history(tmp_path, frames: int, get_sender) -> Relay:
    history = History(str(tmp_path / "h"))
    for n in range(frames):
        history.append(log.encode({"seq": n, "kind": "syscall"}, []))
    history.file.flush()
    return Relay(history, get_sender)


def caught_up_before_the_next_call(relay: Relay) -> None:
    relay.start()
    relay._thread.join(10)
    assert not relay._thread.is_alive()


def test_a_catch_up_finished_between_two_calls_is_told_in_full(tmp_path):
    backup = InstantBackup()
    relay = relay_with_history(tmp_path, 300, lambda stop: backup)
    caught_up_before_the_next_call(relay)
    assert len(backup.frames) == 300
    told = relay.news()   # the supervisor's first look since the start
    assert [name for name, _ in told] == ["catch-up", "caught-up"]
    assert "all 300 records" in told[1][1]
    assert relay.news() == []   # told once
    assert relay.sender is backup   # outputs wait for it now


def test_a_fresh_backup_lost_before_anyone_looked_is_told(tmp_path):
    class Failing(InstantBackup):
        def send(self, frame):
            raise PeerFailed("the fresh backup hung up")

    backup = Failing()
    relay = relay_with_history(tmp_path, 10, lambda stop: backup)
    caught_up_before_the_next_call(relay)
    told = relay.news()
    assert [name for name, _ in told] == ["catch-up", "backup-lost"]
    assert "hung up" in told[1][1] and backup.aborted
    assert relay.sender is None


def test_no_fresh_backup_tells_nothing(tmp_path):
    relay = relay_with_history(tmp_path, 10, lambda stop: None)
    caught_up_before_the_next_call(relay)
    assert relay.news() == [] and relay.state == "alone" and relay.sender is None
