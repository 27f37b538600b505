"""The arbiter: which replica is live, decided by a lease on a key in etcd (``--arbiter etcd://HOST:PORT``).

Heartbeat fencing (the default) assumes a pause is short: a primary that was frozen for
longer than the backup's patience wakes up next to a live backup.  With an arbiter the
question "who is live?" has one answer, kept by etcd:

- The live replica holds a *lease-backed key* for the run, ``/tft/runs/<run id>/live``
  (:func:`run_key`; the run id travels in the log's header, so every replica of the run
  names the same key).  Its :class:`Lease` is renewed every TTL/3 by a thread.
- A backup goes live only after it wins that key in a transaction (create revision 0: the
  key is absent, because no one took it or because its holder's lease expired and etcd
  deleted it): :func:`contend`.  It stands down if it sees the holder's lease renewed
  after the primary fell silent: the holder is alive, and only cut off from it.
- A holder that could not renew its lease *fences*: past ``renewed_at + TTL - margin``
  (measured on this host's CLOCK_BOOTTIME, from when the renewal was *sent*, so never
  later than etcd's own expiry) it makes no output at all (:meth:`Lease.expired`).  Once
  expired, a lease stays expired here even if a late renewal comes back.

The client speaks etcd v3's JSON gateway (``POST /v3/kv/txn``, ``/v3/lease/grant`` ...)
with ``urllib``: every request has a bounded timeout, and an endpoint that is unreachable,
answers something other than etcd, or refuses raises :class:`ArbiterError`, one line.

What is not covered: a replica frozen between its last lease check and the output call
it then lets run (microseconds of Python in the supervisor's stop loop) could still emit
that one call late, since a terminal or a socket cannot check a fencing token.
"""
from __future__ import annotations

import base64
import json
import os
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass

from .errors import TftError

#: Lease TTL in seconds when none is given; etcd's own minimum is ~2 s (1.5 election timeouts).
DEFAULT_TTL = 2
#: Seconds an etcd request may take before it counts as failed.
REQUEST_TIMEOUT = 1.0
#: The key's prefix in etcd (one key per run).
KEY_PREFIX = "/tft/runs/"
#: A run that ended leaves its key saying so, this long (s): a backup cut off from the
#: primary that contends after the primary finished must stand down, not run the program again.
ENDED_TTL = 600
ENDED = "ended: "
#: A contending backup stands down after seeing the holder's lease renewed this many times.
RENEWALS_OF_LIFE = 2


class ArbiterError(TftError):
    """The arbiter (etcd) is unreachable, is not etcd, or refused a request."""


class StoodDown(TftError):
    """A backup did not win its run's key: the primary is alive (or etcd stayed unreachable),
    so the backup stops its program instead of going live."""


class LeaseLost(TftError):
    """A live replica could not renew its lease in time: it stops, no more output."""


_RUN_ID = re.compile(r"^[0-9a-f]{8,64}$")


def new_run_id() -> str:
    """A fresh run id (every replica of one run shares it, through the log's header)."""
    return secrets.token_hex(8)


def run_of(header: dict, arbiter: Etcd | None) -> str | None:
    """The run id a backup contends for, from the primary's header; a one-line error if the
    two replicas disagree on whether an arbiter decides (one of them would go live alone)."""
    run_id = header.get("run")
    if run_id is None:
        if arbiter is not None:
            raise ArbiterError(f"this backup has --arbiter {arbiter.name} but the primary runs without "
                               "one: start both with the same --arbiter, or neither")
        return None
    if arbiter is None:
        raise ArbiterError("the primary decides who is live with an arbiter (tft run --arbiter): "
                           "start this backup with the same --arbiter etcd://HOST:PORT")
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ArbiterError("the primary's header names a malformed run id (corrupt log?)")
    return run_id


def parse_arbiter(spec: str) -> tuple[str, int]:
    """``etcd://HOST:PORT`` -> (host, port); ValueError (one line) for anything else."""
    if isinstance(spec, str) and spec.startswith("etcd://"):
        host, _, port = spec[len("etcd://"):].rstrip("/").rpartition(":")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return host.strip("[]"), int(port)
    raise ValueError(f"bad --arbiter {spec!r}: use etcd://HOST:PORT (an etcd v3 server's client URL)")


def run_key(run_id: str) -> str:
    """The key the live replica of run ``run_id`` holds."""
    return f"{KEY_PREFIX}{run_id}/live"


def _b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def _clock() -> float:
    # BOOTTIME, not MONOTONIC: it keeps counting while the host is suspended, so a suspended
    # holder fences early rather than late (etcd's clock, on another host, kept counting).
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class Etcd:
    """A minimal etcd v3 client over its JSON gateway: the calls a lease-holder needs.

    Each method makes one HTTP request of at most ``timeout`` seconds (its own argument
    first) and raises :class:`ArbiterError` if it fails.  Thread-safe (no shared state).
    """

    def __init__(self, host: str, port: int, timeout: float = REQUEST_TIMEOUT):
        self.host, self.port, self.timeout = host, port, timeout
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.url = f"http://{netloc}"
        self.name = f"etcd://{netloc}"

    @classmethod
    def from_spec(cls, spec: str, timeout: float = REQUEST_TIMEOUT) -> Etcd:
        """From ``etcd://HOST:PORT`` (ValueError if malformed)."""
        return cls(*parse_arbiter(spec), timeout=timeout)

    def _request(self, path: str, body: dict | None, timeout: float | None) -> dict:
        # imported here: http.client (with email, ssl) costs ~15 ms of every tft run that has no arbiter
        import http.client
        import urllib.error
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                raw = resp.read(1 << 20)
        except urllib.error.HTTPError as e:
            raw = e.read(1 << 20)
            answer = _json(raw)
            if answer is None or "error" not in answer:
                raise ArbiterError(f"{self.name}: answered HTTP {e.code} to {path}: not an etcd v3 server?") from None
            raise ArbiterError(f"{self.name}: {path}: {answer['error']}") from None
        except (urllib.error.URLError, OSError, socket.timeout) as e:
            why = getattr(e, "reason", None) or e
            raise ArbiterError(f"{self.name} is unreachable: {why}") from None
        except http.client.HTTPException as e:   # a peer that does not speak HTTP
            raise ArbiterError(f"{self.name} does not answer HTTP ({type(e).__name__}): not an etcd server") from None
        answer = _json(raw)
        if answer is None:
            raise ArbiterError(f"{self.name}: the answer to {path} is not JSON: not an etcd v3 server?")
        if "error" in answer:
            raise ArbiterError(f"{self.name}: {path}: {answer['error']}")
        return answer

    def check(self) -> str:
        """The server's version; ArbiterError unless an etcd v3 server answers at this address."""
        answer = self._request("/version", None, None)
        version = answer.get("etcdserver")
        if not isinstance(version, str) or not version.startswith("3."):
            raise ArbiterError(f"{self.name} is not an etcd v3 server (its /version says {answer!r:.80})")
        return version

    def grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: (its id, the TTL etcd granted, which may be more than asked)."""
        answer = self._request("/v3/lease/grant", {"TTL": int(ttl)}, None)
        try:
            return int(answer["ID"]), int(answer["TTL"])
        except (KeyError, ValueError, TypeError):
            raise ArbiterError(f"{self.name}: a lease grant without ID or TTL: not an etcd v3 server?") from None

    def keepalive(self, lease: int, timeout: float | None = None) -> int:
        """Renew ``lease``; the TTL it has again, 0 if it is gone (expired or revoked)."""
        answer = self._request("/v3/lease/keepalive", {"ID": str(lease)}, timeout)
        result = answer.get("result", answer)
        return int(result.get("TTL", 0) or 0)   # a lost lease comes back without a TTL

    def time_to_live(self, lease: int) -> int:
        """Seconds ``lease`` has left (etcd rounds them); -1 if it is gone."""
        answer = self._request("/v3/lease/timetolive", {"ID": str(lease)}, None)
        return int(answer.get("TTL", -1))

    def revoke(self, lease: int, timeout: float | None = None) -> None:
        """Give ``lease`` up now: its keys are deleted (a lease already gone is no error)."""
        try:
            self._request("/v3/lease/revoke", {"ID": str(lease)}, timeout)
        except ArbiterError as e:
            if "not found" not in str(e):
                raise

    def create(self, key: str, value: str, lease: int) -> tuple[bool, int, str]:
        """The transaction: put ``key`` = ``value`` under ``lease`` if the key does not exist.

        Returns (won, holder, its value): holder is the lease of whoever holds the key (0:
        none, or a key without a lease)."""
        k = _b64(key)
        answer = self._request("/v3/kv/txn", {
            "compare": [{"key": k, "target": "CREATE", "create_revision": "0"}],
            "success": [{"requestPut": {"key": k, "value": _b64(value), "lease": str(lease)}}],
            "failure": [{"requestRange": {"key": k}}],
        }, None)
        if "header" not in answer:
            raise ArbiterError(f"{self.name}: a transaction answer without a header: not an etcd v3 server?")
        if answer.get("succeeded"):
            return True, lease, value
        holder, held = 0, ""
        for r in answer.get("responses", []):
            for kv in r.get("response_range", {}).get("kvs", []):
                holder = int(kv.get("lease", 0) or 0)
                held = base64.b64decode(kv.get("value", "")).decode(errors="replace")
        return False, holder, held

    def replace(self, key: str, lease: int, value: str, new_lease: int) -> bool:
        """Put ``key`` = ``value`` under ``new_lease`` if it is still held under ``lease``."""
        k = _b64(key)
        answer = self._request("/v3/kv/txn", {
            "compare": [{"key": k, "target": "LEASE", "lease": str(lease)}],
            "success": [{"requestPut": {"key": k, "value": _b64(value), "lease": str(new_lease)}}],
        }, None)
        return bool(answer.get("succeeded"))

    def get(self, key: str) -> str | None:
        """The value of ``key``, None if it does not exist."""
        answer = self._request("/v3/kv/range", {"key": _b64(key)}, None)
        for kv in answer.get("kvs", []):
            return base64.b64decode(kv.get("value", "")).decode(errors="replace")
        return None


def _json(raw: bytes) -> dict | None:
    try:
        answer = json.loads(raw)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


class Lease:
    """This replica's hold on its run's key: won once, renewed by a thread, the fence's clock.

    Create it with :func:`hold` (a primary) or :func:`contend` (a backup at failover).
    :meth:`expired` is what the replica asks before every output call: cheap (a clock read),
    and once True, True for good.  :meth:`release` revokes the lease (the run is over).
    """

    def __init__(self, client: Etcd, run_id: str, lease: int, ttl: int, granted_at: float, *,
                 margin: float | None = None):
        self.client = client
        self.run_id = run_id
        self.key = run_key(run_id)
        self.id = lease
        self.ttl = ttl
        #: Fence this long before the TTL ends: clock drift, and etcd's expiry being checked late.
        self.margin = ttl / 6 if margin is None else margin
        self.deadline = granted_at + ttl - self.margin   # guarded by: monotone, only the thread moves it
        self.renewals = 0
        self.lost: str | None = None
        """Why this lease counts as lost (sticky), None while it is held."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start_renewing(self) -> None:
        """Renew every TTL/3 in a daemon thread, until :meth:`release` or the lease is lost."""
        self._thread = threading.Thread(target=self._renew_loop, name="tft-arbiter-lease", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        period = self.ttl / 3
        while not self._stop.wait(period) and self.lost is None:
            sent = _clock()
            if sent >= self.deadline:
                self._lose(f"its lease was not renewed within {self.ttl - self.margin:.2f} s")
                return
            try:
                ttl = self.client.keepalive(self.id, timeout=max(0.05, min(period, self.deadline - sent)))
            except ArbiterError:
                continue   # tried again at the next period; expired() fences meanwhile if need be
            if ttl <= 0:
                self._lose("etcd says its lease is gone (expired or revoked)")
                return
            if self._stop.is_set() or self.expired():
                return
            self.deadline = max(self.deadline, sent + ttl - self.margin)
            self.renewals += 1

    def _lose(self, why: str) -> None:
        if self.lost is None:
            self.lost = why

    def expired(self) -> bool:
        """True once this replica may no longer act as live: the lease was lost, or the time
        it was surely valid for has passed without a renewal.  Sticky."""
        if self.lost is None and _clock() >= self.deadline:
            self._lose(f"its lease was not renewed in time (etcd {self.client.name} unreachable, "
                       "or this replica was paused)")
        return self.lost is not None

    def release(self, ended: str | None = None) -> None:
        """Stop renewing and revoke the lease (best effort: an unreachable etcd lets it expire).

        ``ended``: the program's end (its status): the key says so for :data:`ENDED_TTL`
        seconds instead of going, so that no backup, cut off and late, wins it and runs the
        program on (a lease lost already changes nothing: the key may be another's)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2 * self.client.timeout)
        try:
            if ended is not None and not self.expired():
                tomb, _ = self.client.grant(ENDED_TTL)
                if not self.client.replace(self.key, self.id, ENDED + ended, tomb):
                    _revoke_quietly(self.client, tomb)
            self.client.revoke(self.id, timeout=0.5)
        except ArbiterError:
            pass


def _acquire(client: Etcd, run_id: str, ttl: int, who: str) -> tuple[Lease | None, int, str]:
    """Grant a lease and try the transaction once: (the lease if won, the holder's lease id,
    the key's value)."""
    key = run_key(run_id)
    granted_at = _clock()   # before the request: etcd starts the TTL later than this
    lease_id, granted = client.grant(ttl)
    try:
        won, holder, held = client.create(key, who, lease_id)
    except ArbiterError:
        _revoke_quietly(client, lease_id)
        raise
    if not won:
        _revoke_quietly(client, lease_id)
        return None, holder, held
    return Lease(client, run_id, lease_id, granted, granted_at), holder, held


def _revoke_quietly(client: Etcd, lease_id: int) -> None:
    try:
        client.revoke(lease_id, timeout=0.5)
    except ArbiterError:
        pass


def hold(client: Etcd, run_id: str, who: str, ttl: int = DEFAULT_TTL) -> Lease:
    """A primary takes its run's key at the start (renewed from now on).

    Raises :class:`ArbiterError` if etcd is unreachable or the key is taken already
    (another replica of this run is live)."""
    key = run_key(run_id)
    lease, _, _ = _acquire(client, run_id, ttl, who)
    if lease is None:
        raise ArbiterError(f"{client.name}: the key {key} is held already: another replica of this run is live")
    lease.start_renewing()
    return lease


@dataclass
class Contest:
    """How a backup's :func:`contend` ended."""

    lease: Lease | None
    """Won: the key is this replica's, renewed from now on.  None: lost."""
    why: str
    """One line: what was decided and on what evidence."""
    tries: int
    """Transactions made."""
    waited_s: float
    """Seconds from the first transaction to the decision."""


def contend(client: Etcd, run_id: str, who: str, ttl: int = DEFAULT_TTL, *, poll: float = 0.1,
            give_up: float = 60.0) -> Contest:
    """A backup whose primary failed: win the run's key before going live, or stand down.

    Retries the transaction every ``poll`` s while the key is held.  While the holder's
    lease runs down, the holder may be dead: wait (etcd deletes the key when it expires).
    If the holder's lease is seen *renewed* (it still has a second or more to live when,
    unrenewed, it would be over), twice, the holder is alive, only cut off from this backup: lose;
    and if the key says the run ended (:meth:`Lease.release`), lose at once.  Lose too after ``give_up`` s without a decision
    (an etcd that stays unreachable): never live without the key.
    """
    key = run_key(run_id)
    start = _clock()
    tries = 0
    holder_seen, unrenewed_end, renewed = 0, 0.0, 0
    err: ArbiterError | None = None
    while True:
        tries += 1
        try:
            lease, holder, held = _acquire(client, run_id, ttl, who)
            err = None
            if lease is not None:
                lease.start_renewing()
                return Contest(lease, f"won {key} (lease {lease.id:x})", tries, _clock() - start)
            if held.startswith(ENDED):
                return Contest(None, f"the run is over: the primary finished the program ({held[len(ENDED):]})",
                               tries, _clock() - start)
            asked = _clock()
            left = client.time_to_live(holder) if holder else -1
            now = _clock()
            if holder != holder_seen and left >= 0:
                # etcd truncates the seconds left: the lease has less than left + 1, so unless
                # it is renewed it is over by now + left + 1 (etcd may delete the key later).
                holder_seen, unrenewed_end, renewed = holder, now + left + 1, 0
            elif holder == holder_seen and asked >= unrenewed_end and left >= 1:
                # Renewed (measured after its unrenewed end).  Once is no proof of life: renewals
                # the holder sent to a frozen etcd just before it fenced all land when etcd
                # resumes.  Twice, one unrenewed end apart, is.
                renewed += 1
                unrenewed_end = now + left + 1
                if renewed >= RENEWALS_OF_LIFE:
                    return Contest(None, f"{key} is held by lease {holder:x}, renewed after the primary fell "
                                         "silent: the primary is alive", tries, now - start)
        except ArbiterError as e:
            err = e
        if _clock() - start >= give_up:
            why = f"no decision in {give_up:.0f} s" + (f" ({err})" if err else f": {key} stays held")
            return Contest(None, why, tries, _clock() - start)
        time.sleep(poll)


class LocalEtcd:
    """A private single-member etcd on loopback, for tests, benchmarks and notebooks.

    ``with LocalEtcd(data_dir) as etcd: ... etcd.url`` (``etcd://127.0.0.1:PORT``): the
    server runs with its data (and its log, ``etcd.log``) in ``data_dir``, on free ports,
    and is killed and waited for on leaving.  Raises :class:`ArbiterError` if the ``etcd``
    binary is absent (Debian: ``apt-get install etcd-server``) or it does not come up.
    """

    def __init__(self, data_dir: str | os.PathLike, start_timeout: float = 30.0):
        self.data_dir = os.fspath(data_dir)
        self.start_timeout = start_timeout
        self.proc = None   # the etcd subprocess.Popen, once started
        self.url = ""

    @staticmethod
    def binary() -> str | None:
        """The etcd program, or None if it is not installed."""
        import shutil

        return shutil.which("etcd") or next((p for p in ("/usr/bin/etcd", "/usr/sbin/etcd") if os.access(p, os.X_OK)),
                                            None)

    def __enter__(self) -> LocalEtcd:
        import subprocess

        exe = self.binary()
        if exe is None:
            raise ArbiterError("etcd is not installed (Debian: apt-get install etcd-server)")
        os.makedirs(self.data_dir, exist_ok=True)
        for _ in range(3):   # a free port may be taken between the probe and etcd's bind
            client, peer = _free_port(), _free_port()
            c, p = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
            with open(os.path.join(self.data_dir, "etcd.log"), "ab") as log:
                self.proc = subprocess.Popen(
                    [exe, "--name", "tft", "--data-dir", os.path.join(self.data_dir, "member"),
                     "--listen-client-urls", c, "--advertise-client-urls", c, "--listen-peer-urls", p,
                     "--initial-advertise-peer-urls", p, "--initial-cluster", f"tft={p}"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            self.url = f"etcd://127.0.0.1:{client}"
            client_ = Etcd.from_spec(self.url, timeout=0.5)
            deadline = time.monotonic() + self.start_timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                try:
                    client_.grant(2)   # the cluster has a leader: it serves writes
                    return self
                except ArbiterError:
                    time.sleep(0.1)
            self._stop()
        raise ArbiterError(f"etcd did not start (see {self.data_dir}/etcd.log)")

    def _stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    def __exit__(self, *exc) -> None:
        self._stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
