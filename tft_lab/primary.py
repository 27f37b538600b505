"""The primary of a live pair: a recorder whose log goes over a channel, under an output rule.

Output commit:

``output``  an output call runs only after the backup acknowledged every record before it
``epoch``   the primary waits for the backup at every epoch boundary (Hypervisor-based FT)
``none``    never waits: fastest, and a failover may lose or repeat outputs

A backup that leaves (channel closed, its supervisor gone) leaves the primary
running alone, with a warning.  A program the primary refuses (threads...) ends
with an ``end`` record that says so: the backup stops with it (:meth:`Primary.refuse`).  A backup that falls *silent* may be alive and
cut off — and about to go live — so the primary fences itself (kills its
program) rather than risk two live replicas both emitting output.

With an arbiter (:mod:`tft_lab.arbiter`) the primary holds a lease on its run's key
instead: a silent backup is only a lost backup (it cannot go live without that key), and
the primary fences when its lease could not be renewed in time (``lease``).
"""
from __future__ import annotations

import signal
import sys
import time

from . import fdtable
from . import log as _log
from .engine import Engine
from .guest import Call, Task
from .errors import AckTimeout, PeerFailed, PeerSilent, TftError
from .faults import Fault, Injector
from .recorder import Recorder

COMMIT_POLICIES = ("output", "epoch", "none")


class Fenced(TftError):
    """The primary stopped itself: its backup fell silent and may have gone live, or (with an
    arbiter) its lease could not be renewed in time."""


#: Seconds a backup may take to start (to acknowledge its first record) before the primary
#: gives up on it, as a backup waits as long for the primary's header.
BACKUP_STARTUP = 30.0


#: At most this many bytes of records go in one channel message (a batch: ``write_frames``).
BATCH_BYTES = 64 << 10


class ChannelSink:
    """Log records to a channel Sender (None: running alone).

    A send that fails does not stop the primary here: the failure is kept and the primary
    decides at its next output or epoch boundary (go on alone, or fence itself).
    """

    def __init__(self, sender):
        self.sender = sender
        self.sent = 0
        self.bytes = 0
        self.lost: PeerFailed | None = None

    def write(self, fields: dict, blobs=()) -> None:
        if self.sender is not None and self.lost is None:
            self.write_frames([_log.encode(fields, list(blobs))])

    def write_frames(self, frames: list[bytes]) -> None:
        """Send records framed already (:func:`~tft_lab.log.encode`): one channel message for
        all of them (the backup splits it: ``log.check_frames``), within the channel's limit."""
        if self.sender is None or self.lost is not None:
            return
        try:
            batch, size = [], 0
            for frame in frames:
                if batch and size + len(frame) > BATCH_BYTES:
                    self.sent = self.sender.send(b"".join(batch))
                    batch, size = [], 0
                batch.append(frame)
                size += len(frame)
            if batch:
                self.sent = self.sender.send(batch[0] if len(batch) == 1 else b"".join(batch))
            self.bytes += sum(map(len, frames))
        except PeerFailed as e:
            self.lost = e

    def flush(self) -> None:
        if self.sender is not None and self.lost is None:
            try:
                self.sender.flush()
            except PeerFailed as e:
                self.lost = e

    def sync(self, timeout: float | None) -> None:
        """Wait until the backup acknowledged everything sent so far: up to ``timeout`` seconds
        once it has acknowledged anything, up to :data:`BACKUP_STARTUP` before.

        Why: the backup acknowledges from its replayer, which exists only once its supervisor
        has started (Python imports, ptrace set-up: seconds on a loaded machine), while its
        channel answers heartbeats from the start.  A backup that is still starting is not
        a silent one (a dead or cut-off one is caught by the channel's heartbeats anyway)."""
        if self.lost is not None:
            raise self.lost
        if self.sender is not None and self.sent:
            if not self.sender.acked and timeout is not None:
                timeout = max(timeout, BACKUP_STARTUP)
            self.sender.wait_acked(self.sent, timeout)

    @property
    def failure(self):
        return getattr(self.sender, "failure", None) if self.sender is not None else None

    @property
    def silence_before_failure(self) -> float:
        """How long the primary had been silent to the backup when the channel failed."""
        return getattr(self.sender, "silence_before_failure", 0.0) if self.sender is not None else 0.0


class Primary(Recorder):
    """Primary replica: runs the program for real, streams the log, applies the output rule."""

    def __init__(self, sink: ChannelSink, *, commit: str = "output", faults: list[Fault] = (),
                 fence_after: float = 2.0, warn=None, lease=None, t0: float | None = None,
                 ledger: str | None = None):
        if commit not in COMMIT_POLICIES:
            raise ValueError(f"commit policy must be one of {', '.join(COMMIT_POLICIES)}")
        super().__init__(sink)
        self.commit = commit
        self.faults = Injector(faults, "primary", ledger=ledger)
        self.t0 = t0   # when the run started (timed faults count from it)
        self.fence_after = fence_after
        self.failed_program = False
        self.backup_lost: str | None = None
        self.faults_not_injected: list[str] = []   # faults past the program's last call
        self.warn = warn or (lambda msg: print(f"tft: {msg}", file=sys.stderr, flush=True))
        self.lease = lease
        """The arbiter's :class:`~tft_lab.arbiter.Lease` this primary holds (None: heartbeat fencing)."""
        if lease is not None:
            self.run_id = lease.run_id   # in the header: the backup contends for this same key

    def lane(self, task: Task):
        if self.faults.faults or self.lease is not None:
            return None   # each call is counted for the faults, and checked against the lease
        return super().lane(task)

    def on_start(self, engine: Engine) -> None:
        super().on_start(engine)
        self.sink.flush()
        self.faults.start(engine, self.t0)
        if self.lease is not None:
            engine.emit(engine.root, "arbiter", "lease-won", f"{self.lease.key} lease {self.lease.id:x} "
                        f"ttl {self.lease.ttl}s", 0, "event", "won")

    # -- the output rule -----------------------------------------------------------------
    def _commit(self, call: Call | None) -> None:
        if self.sink.sender is None:
            return
        t0 = time.monotonic_ns()
        if self.commit != "none":
            self.engine.flush_trace()
        try:
            if self.commit == "none":
                failure = self.sink.lost or self.sink.failure
                if failure is not None:
                    raise failure
            else:
                self.sink.sync(self.fence_after)
        except PeerFailed as e:
            if isinstance(e, (PeerSilent, AckTimeout)) or isinstance(self.sink.failure, PeerSilent):
                self._fence(e)   # returns only with an arbiter
            silent = self.sink.silence_before_failure
            if silent > self.fence_after:
                # This primary was stopped (or starved) longer than the backup waits: the backup
                # may be live already, and what looks like its death is it closing our channel.
                self._fence(e, f"this primary sent nothing for {silent:.1f} s before its channel failed")
            self.backup_lost = str(e)
            if self.lease is not None:
                self.sink.sender.abort()   # a backup still listening learns it now, and stands down
            self.sink.sender = None
            self.warn(f"the backup failed ({e}); the primary continues ALONE: no fault tolerance now")
        if call is not None:
            call.wait_ns += time.monotonic_ns() - t0

    def _fence(self, err, why: str = "the backup fell silent") -> None:
        if self.lease is not None:
            return   # the arbiter decides, not silence: the backup cannot go live without our key
        self.warn(f"{why} ({err}); it may have gone live, so this primary stops (no two live replicas)")
        raise Fenced(f"primary fenced itself: {err}")

    def _check_lease(self, task: Task) -> None:
        """Fence if the arbiter's lease may have run out: a backup may hold the key by now."""
        if self.lease is not None and self.lease.expired():
            self.engine.emit(task, "arbiter", "fenced", self.lease.lost, 0, "event", "fenced")
            self.engine.flush_trace()
            self.warn(f"the arbiter's lease is lost ({self.lease.lost}); the backup may go live, so this "
                      "primary stops (no two live replicas)")
            raise Fenced(f"primary fenced itself: {self.lease.lost}")

    def on_entry(self, task: Task, call: Call) -> None:
        self.faults.entry()
        self._check_lease(task)
        entry = call.entry
        if entry is not None and self.commit != "epoch" and (entry.cls == "output" or _creates_a_name(call)):
            self._commit(call)
        super().on_entry(task, call)
        if entry is not None and entry.cls == "output":
            self._check_lease(task)   # again, after any wait for the backup: the last moment before it runs

    def on_exit(self, task: Task, call: Call) -> None:
        if call.name == "listen" and call.result == 0:
            fdtable.let_port_be_taken_over(task.tgid, call.args[0])   # for the backup, at failover
        super().on_exit(task, call)
        if call.oseq is not None:
            self.sink.flush()   # an output's record leaves at once: it narrows the duplicate window
        if self.commit == "epoch" and (call.seq + 1) % self.engine.epoch == 0:
            self._commit(call)  # the epoch ends with this call: wait for the backup (shown in its row)

    def on_task_exit(self, task: Task, code, sig) -> None:
        if task is self.engine.root and sig == signal.SIGKILL:
            # SIGKILL cannot be intercepted: the program was killed from outside (or the OOM
            # killer).  Treat it as the primary failing; the backup carries on.
            self.failed_program = True
            return
        super().on_task_exit(task, code, sig)

    def refuse(self, err: TftError) -> None:
        """The program made a call tft_lab refuses (``err``) and was stopped: tell the backup,
        in an ``end`` record naming the refusal, that this is the program's end and not a
        crash, so that it stops too instead of going live (it would run the program on,
        unsupervised, to the same refusal or past it).  The caller then closes the channel."""
        self.emit({"t": "end", "status": 1, "refused": str(err)})
        self.sink.flush()

    def stop_backup(self, why: str) -> None:
        """The operator stopped ``tft run`` (``why``), and this primary its program: tell the
        backup in an ``end`` record, so that it stops too instead of taking the silence that
        follows for a crash and going live.  The caller then closes the channel."""
        self.emit({"t": "end", "status": 130, "stopped": why})
        self.sink.flush()

    def on_finish(self, engine: Engine) -> None:
        self.faults_not_injected = self.faults.finish()
        for msg in self.faults_not_injected:
            self.warn(f"warning: {msg}")
        if self.failed_program:
            return  # no end record: to the backup this primary failed
        super().on_finish(engine)


def _creates_a_name(call: Call) -> bool:
    """An open that may create or empty a file (``O_CREAT`` or ``O_TRUNC``) is committed like
    an output: it changes the file system before the program writes anything.

    - An exclusive create (``O_CREAT|O_EXCL``: mkstemp, a lock file) often has a name made of
      random input (gcc's ``/tmp/ccXXXXXX.s``): should this primary die right after it, the
      backup must hold that input to make the same name, find the file there and take it for
      its own (then remove it as the program does), instead of making another name and
      leaving the primary's file behind.
    - A plain create is often checked first (lz4 refuses to overwrite ``f.lz4``): a backup
      without the create's record would run the check again, find the dead primary's file
      and stop."""
    entry = call.entry
    return entry.opens and bool(entry.redo) and bool(fdtable.open_call(call)[1] & _CHANGES_A_NAME)


_CHANGES_A_NAME = fdtable.O_CREAT | fdtable.O_TRUNC

