"""Redundancy restored: the live replica's log on disk, and the fresh backup it catches up.

After a failover the live replica (the backup that went live) is the primary.  It
keeps logging as a primary does, so that a fresh backup can take its place:

- :class:`History` is the run's whole log on disk: every frame the backup received
  from the primary (appended by its receiving thread as they arrive, buffered), then
  the live replica's own records.  Nothing of it is held in memory.
- :class:`Relay` is the live replica's sink (the :class:`~tft_lab.primary.ChannelSink`
  interface, so that :class:`~tft_lab.primary.Primary` logs and commits through it).
  It asks for a fresh backup (``get_sender``: whoever started the supervisor makes one
  and returns the channel to it), streams the history to it from the file, from the
  first frame, while the program runs on, then follows live: each new record goes
  to the file and to the backup.

While the fresh backup is *catching up* (it has not acknowledged the whole history) the
run is unprotected: outputs do not wait for it (a failure then may lose or repeat them).
Once it has, the output rule counts again: it is *caught up*.  Both moments are
events in the trace (kind ``reintegration``, calls ``catch-up`` and ``caught-up``; a fresh
backup that fails is ``backup-lost``).

A policy never imports the channel: ``get_sender`` is handed in (by :mod:`tft_lab.run`).
"""
from __future__ import annotations

import collections
import os
import threading
import time
from typing import Callable

from . import log as _log
from .errors import PeerFailed, TftError
from .guest import Call, Task, signed

_READ = 1 << 20                      # history bytes read per step while catching up
_BUFFER = 1 << 20                    # history bytes buffered before they reach the file


class History:
    """The run's log as frames in one file (mode 0600), appended, read back from the start.

    ``append`` may be called from the backup's receiving thread (before the failover) and
    then from the supervisor's thread (after it): never from both at once."""

    def __init__(self, path: str):
        self.path = path
        fd = _log.open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
        self.file = os.fdopen(fd, "ab", buffering=_BUFFER)
        self.frames = 0
        self.lock = threading.Lock()
        self.follower = None   # the fresh backup's Sender, once it has been sent everything
        self.sent = 0          # that Sender's sequence number of the last frame sent

    def append(self, frame: bytes) -> None:
        """One more frame; sent on to the fresh backup too if it follows live.  A backup that
        is gone raises ``PeerFailed`` (the frame is in the file all the same)."""
        with self.lock:
            self.file.write(frame)
            self.frames += 1
            if self.follower is not None:
                self.sent = self.follower.send(frame)

    def flushed_size(self) -> int:
        """Everything appended so far is in the file: its size.  Called with :attr:`lock` held."""
        self.file.flush()
        return self.file.tell()

    def remove(self) -> None:
        """Close and delete the file (the supervisor is done with it)."""
        try:
            self.file.close()
        except OSError:
            pass
        try:
            os.unlink(self.path)
        except OSError:
            pass


class Relay:
    """The live replica's log sink: the history on disk, streamed to a fresh backup.

    ``get_sender(stop)`` blocks until a fresh backup is connected and returns its Sender, or
    returns None (no fresh backup: ``--respawn`` spent, none could start, or ``stop`` — a
    ``threading.Event`` — was set: the program ended first).  It is called from a thread of
    this class, never from the supervisor's.  ``warn`` says the news on stderr too."""

    def __init__(self, history: History, get_sender: Callable[[threading.Event], object | None], warn=None):
        self.history = history
        self.get_sender = get_sender
        self.warn = warn
        self.stop = threading.Event()
        self.bytes = 0
        self.lost: PeerFailed | None = None   # the fresh backup failed (ChannelSink's name)
        self.state = "alone"   # alone -> catching-up -> caught-up (-> alone when it is lost)
        self.backup_sender = None
        self.history_frames = 0    # frames in the history when the fresh backup started
        self.started_ns: int | None = None
        self.caught_up_ns: int | None = None
        self.fresh_backups = 0
        self._thread: threading.Thread | None = None
        self._events: collections.deque[str] = collections.deque()   # transitions the trace has not been told

    # -- the fresh backup --------------------------------------------------------------
    def start(self) -> None:
        """Ask for a fresh backup and catch it up, in a thread (the program runs on meanwhile)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self.lost = None
        self._thread = threading.Thread(target=self._catch_up, name="tft-catch-up", daemon=True)
        self._thread.start()

    def _catch_up(self) -> None:
        try:
            sender = self.get_sender(self.stop)
        except (TftError, OSError) as e:
            self.lost = PeerFailed(f"no fresh backup: {e}")
            return
        if sender is None:
            return
        h = self.history
        self.backup_sender = sender
        self.fresh_backups += 1
        self.started_ns = time.monotonic_ns()
        self.state = "catching-up"
        self._events.append("catch-up")
        try:
            fd = os.open(h.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            self._lose(PeerFailed(f"the history cannot be read: {e}"))
            return
        try:
            offset, buf, n = 0, bytearray(), 0
            while True:
                with h.lock:
                    end = h.flushed_size()
                    if offset >= end:
                        # Everything in the file was sent: from now on each new record goes
                        # out as it is logged (under the same lock: nothing is sent twice or missed).
                        h.follower, h.sent = sender, n
                        self.history_frames = n
                        break
                chunk = os.pread(fd, min(_READ, end - offset), offset)
                if not chunk:
                    raise PeerFailed("the history file shrank")
                offset += len(chunk)
                buf += chunk
                for frame in _log.split_frames(buf):
                    n = sender.send(frame)
            sender.flush()
        except (TftError, OSError) as e:
            self._lose(e if isinstance(e, PeerFailed) else PeerFailed(str(e)))
        finally:
            os.close(fd)

    def _lose(self, err: PeerFailed) -> None:
        with self.history.lock:
            self.history.follower = None
        self.lost = err
        self.state = "alone"
        self._events.append("backup-lost")
        sender, self.backup_sender = self.backup_sender, None
        if sender is not None:
            sender.abort()

    def news(self) -> list[tuple[str, str]]:
        """The trace's events (call name and text) since the last call, in order: ``catch-up``
        (a fresh backup started), ``caught-up`` (it acknowledged the whole history),
        ``backup-lost``.  Every transition is told once, however quickly they followed each
        other (a short history is caught up between two calls of the program).  Called from
        the supervisor's thread, which writes the trace."""
        if self.state == "catching-up" and self.history.follower is not None:
            sender = self.backup_sender
            if sender is not None and sender.acked >= self.history_frames:
                self.caught_up_ns = time.monotonic_ns()
                self.state = "caught-up"
                self._events.append("caught-up")
        told = []
        while self._events:
            event = self._events.popleft()
            if event == "catch-up":
                text = "a fresh backup replays the log from the start: unprotected until it has it"
            elif event == "caught-up":
                ms = (self.caught_up_ns - self.started_ns) / 1e6
                text = f"the fresh backup has all {self.history_frames} records after {ms:.0f} ms: protected"
            else:
                text = f"the fresh backup is lost ({self.lost}): unprotected"
            if self.warn is not None:
                self.warn(text)
            told.append((event, text))
        return told

    def summary(self) -> dict:
        """For the supervisor's result: fresh backups started, the last one's catch-up time."""
        ms = None
        if self.caught_up_ns is not None and self.started_ns is not None:
            ms = (self.caught_up_ns - self.started_ns) / 1e6
        return {"fresh_backups": self.fresh_backups, "catch_up_ms": ms, "history_frames": self.history_frames}

    # -- the ChannelSink interface (Primary logs and commits through it) ----------------
    @property
    def sender(self):
        """The fresh backup's Sender once it is caught up (the output rule waits for it), else
        None (alone or catching up: unprotected, outputs do not wait)."""
        return self.backup_sender if self.state == "caught-up" else None

    @sender.setter
    def sender(self, value) -> None:
        if value is None and self.backup_sender is not None:   # the primary gave the backup up
            self._lose(self.lost or PeerFailed("the fresh backup failed"))

    @property
    def sent(self) -> int:
        return self.history.sent

    @property
    def silence_before_failure(self) -> float:
        sender = self.backup_sender
        return getattr(sender, "silence_before_failure", 0.0) if sender is not None else 0.0

    @property
    def failure(self):
        sender = self.backup_sender
        return getattr(sender, "failure", None) if sender is not None else None

    def write(self, fields: dict, blobs=()) -> None:
        frame = _log.encode(fields, list(blobs))
        self.bytes += len(frame)
        try:
            self.history.append(frame)
        except PeerFailed as e:
            self._lose(e)

    def flush(self) -> None:
        sender = self.history.follower
        if sender is not None:
            try:
                sender.flush()
            except PeerFailed as e:
                self._lose(e)

    def sync(self, timeout: float | None) -> None:
        """Wait until the fresh backup acknowledged every record sent (as ChannelSink.sync)."""
        if self.lost is not None:
            raise self.lost
        sender = self.backup_sender
        if sender is not None and self.sent:
            sender.wait_acked(self.sent, timeout)

    def finish(self, timeout: float) -> str | None:
        """The program ended (its end record is logged): let the fresh backup have the whole
        log, then close the channel cleanly.  Returns why the backup was lost, if it was."""
        if self._thread is not None:
            if self.backup_sender is None:
                self.stop.set()   # nobody came (yet): do not wait for one
            self._thread.join()
        sender = self.backup_sender
        if sender is None:
            return str(self.lost) if self.lost is not None else None
        try:
            sender.flush()
            sender.close(timeout)
        except TftError as e:
            return str(e)
        return None


def inner_primary(relay: Relay, engine, last_oseq: int, *, commit: str, fence_after: float, warn, lease=None):
    """The :class:`~tft_lab.primary.Primary` a live backup logs through once it is the primary:
    it writes to ``relay``, numbers outputs on from ``last_oseq`` (the last one received), and
    knows what a replay shows (this supervisor's stdout and stderr, as ``Recorder.on_start``
    notes them; its header is the one received, not made again).  ``lease``: the arbiter's,
    won at go-live (it, not silence, then decides when to fence)."""
    from .primary import Primary

    inner = Primary(relay, commit=commit, fence_after=fence_after, warn=warn, lease=lease)
    inner.engine = engine
    inner.oseq = last_oseq
    for fd in (1, 2):
        try:
            st = os.fstat(fd)
            inner.shown.add((st.st_dev, st.st_ino))
        except OSError:
            pass
    return inner


def at_itself(task: Task, call: Call) -> bool:
    """A kill, tkill or tgkill of the calling process by the pid it knows (or 0: its group): the
    recorder, which compares real pids, would not expect its signal (a live backup's pids are
    virtual)."""
    a = call.args
    target = signed(a[1] if call.name == "tgkill" else a[0])
    return target in (0, task.vpid) or (call.name == "tgkill" and signed(a[0]) == task.vpid)
