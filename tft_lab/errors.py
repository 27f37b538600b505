"""One error hierarchy for everything tft_lab reports.

Every error carries the context a user needs to act on it: the (recorded) pid,
the per-process syscall sequence number, the epoch and the syscall name, where
they are known.  ``str(err)`` is a one-line message fit for a terminal.
"""
from __future__ import annotations


class TftError(Exception):
    """Root of all tft_lab errors."""

    def __init__(self, message: str, *, pid: int | None = None, seq: int | None = None,
                 epoch: int | None = None, syscall: str | None = None):
        super().__init__(message)
        self.message = message
        self.pid = pid
        self.seq = seq
        self.epoch = epoch
        self.syscall = syscall

    def __str__(self) -> str:
        where = []
        if self.pid is not None:
            where.append(f"pid {self.pid}")
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        if self.epoch is not None:
            where.append(f"epoch {self.epoch}")
        if self.syscall is not None:
            where.append(self.syscall)
        return f"{self.message} [{', '.join(where)}]" if where else self.message


class ProgramError(TftError):
    """The program to run is missing, not executable or not a program."""


class LogError(TftError):
    """A log is corrupt, truncated, of an unknown version or not a tft log."""


class DivergenceError(TftError):
    """The replica did something other than what the log says the primary did."""


class UnsupportedError(TftError):
    """The program used a feature tft_lab cannot replicate (yet), e.g. threads."""


class TracingError(TftError):
    """ptrace itself failed (permission, a vanished task, a kernel refusal)."""


class ChannelError(TftError):
    """The replication channel failed: a peer that is not ours, a bad key, a tampered message."""


class PeerFailed(TftError):
    """The other replica is gone (channel closed, process died, heartbeat timed out)."""


class PeerSilent(PeerFailed):
    """The other replica sent nothing for too long: dead, hung, or cut off from us (we cannot tell)."""


class AckTimeout(PeerFailed):
    """The other replica did not acknowledge in time: it may be alive but slow, or cut off from us."""
