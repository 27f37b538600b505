"""The replication channel: primary -> backup transport of log frames, acks back.

The primary's supervisor hands the channel *frames*: already-encoded log
records, opaque bytes this package never interprets.  The backup's supervisor
receives them in order and acknowledges the ones it has applied; the primary's
output rule waits for those acknowledgements.  Whoever can write to the
channel controls the backup, so a keyed channel authenticates both ends and
every message, and every size is bounded before it is used.

A recording (``tft record``) is not a channel: it is a log file written by
:class:`tft_lab.log.LogWriter` (see ``docs/log-format.md``); the same encoded
records travel here, one per DATA message.

===================  ===============================  ==================================
transport            primary side (:class:`Sender`)   backup side (:class:`Receiver`)
===================  ===============================  ==================================
local socket pair    ``Sender.from_socket(a, key)``   ``Receiver.from_socket(b, key)``
TCP                  ``connect(host, port, key)``     ``listen(host, port, key).accept()``
===================  ===============================  ==================================

``a, b = socketpair_channel()`` makes the local pair (one end per supervisor
process).  A key is mandatory on TCP and optional on a socket pair; see
:func:`generate_key` and :func:`load_key`.

One mechanism per module:

- :mod:`.keys`: key files (:func:`generate_key`, :func:`load_key`);
- :mod:`.wire`: the wire format, handshake and message sealing (its docstring
  is the protocol's specification);
- :mod:`.link`: one connected socket and the thread that reads it, sends
  heartbeats and declares a silent peer failed;
- :mod:`.endpoints`: :class:`Sender`, :class:`Receiver`, :func:`connect`,
  :func:`socketpair_channel`;
- :mod:`.listener`: :class:`Listener` and :func:`listen`, which run every
  pending handshake at once and bound what an unauthenticated peer costs.
"""
from __future__ import annotations

from .endpoints import Receiver, Sender, connect, socketpair_channel
from .keys import MIN_KEY_BYTES, generate_key, load_key
from .link import DEFAULT_HEARTBEAT, DEFAULT_TIMEOUT_FACTOR, interrupt_when_safe
from .listener import MAX_PENDING, PREAUTH_TIMEOUT, Listener, listen
from .wire import HANDSHAKE_TIMEOUT, MAGIC, MAX_FRAME, MessageType

__all__ = [
    "MAGIC", "MAX_FRAME", "MIN_KEY_BYTES", "DEFAULT_HEARTBEAT", "DEFAULT_TIMEOUT_FACTOR", "HANDSHAKE_TIMEOUT",
    "PREAUTH_TIMEOUT", "MAX_PENDING",
    "MessageType", "Sender", "Receiver", "Listener",
    "socketpair_channel", "connect", "listen", "load_key", "generate_key", "interrupt_when_safe",
]
