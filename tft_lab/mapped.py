"""Mapped files are inputs: their contents go into the log, content-addressed.

What a program reads through ``mmap`` is input like what it reads through
``read`` (ld.so maps every library and ``/etc/ld.so.cache``; programs map data
files).  At every successful file-backed ``mmap`` the primary logs a ``map``
record (the file's sha256, size and path) right before the call's ``sys``
record, and, the first time a content appears in this log, ``blob`` records
carrying it.  A library mapped by a hundred processes costs one copy per log.

The replayer (and a live backup) never maps the local file: at that ``mmap``
it opens the logged content, materialised in the per-user cache
(``$XDG_CACHE_HOME/tft_lab/mapped/blobs/<sha256>``, mode 0600), maps it with
the program's own arguments, closes it, and makes the program's call return
that mapping.  So a log replays where the files changed or do not exist.

Costs (the fixed cost of every command): hashing is avoided by a per-user
cache keyed by (device, inode, size, mtime, ctime) -> sha256, one small file
per key under ``mapped/stat/``; only file-backed mmaps stop the program (the
seccomp filter lets ``MAP_ANONYMOUS`` ones through).  With ``small=True``
(``tft record --small-log``) only the hashes are logged; the replay then maps
the local file after checking its hash, and stops with a clear error naming
the file when it differs.
"""
from __future__ import annotations

import contextlib
import os
import pwd
import stat
import sys
import zlib
from typing import Callable

from . import log as _log
from .errors import DivergenceError, LogError, TftError
from .syscalls import TABLE

#: Content is logged zlib-compressed, in pieces of at most this many bytes (a frame is at most 64 MiB).
CHUNK = 8 << 20
#: zlib level 1: a library compresses ~2.5x at ~100 MB/s, and only once per user (cached in z/).
ZLEVEL = 1
#: Larger files are logged by hash only (as with --small-log): a log is not a disk image.
MAX_CONTENT = _log.MAX_CONTENT
MAP_SHARED, MAP_ANONYMOUS = 0x01, 0x20
PROT_WRITE = 0x2
PAGE = 4096
O_ACCMODE = 0o3
AT_FDCWD = -100


def new_sha256(data: bytes = b""):
    """A new sha256 hash object.  hashlib is imported on first use: it loads OpenSSL (~3 ms),
    and a run whose mapped files are all in the hash cache never hashes anything."""
    import hashlib

    return hashlib.sha256(data)


_NR = {name: TABLE[name].x64 for name in ("openat", "mmap", "close")}


def _user_home() -> str:
    """The user's own home (the password database's), not $HOME: a program run with HOME
    pointing at its work folder must not find tft's cache there."""
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return os.path.expanduser("~")


def cache_root() -> str:
    """The per-user cache of mapped contents and hashes (created 0700).  (Paths are strings
    here, not pathlib's: importing pathlib costs ~3 ms of every tft command.)"""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(_user_home(), ".cache")
    root = os.path.join(base, "tft_lab", "mapped")
    try:
        for d in ("stat", "blobs", "z"):
            os.makedirs(os.path.join(root, d), mode=0o700, exist_ok=True)
    except OSError as e:
        raise TftError(f"cannot use the cache folder {root} for mapped files: {e.strerror} "
                       "(set XDG_CACHE_HOME to a folder of yours)") from None
    return root


def _write_atomically(path: str, chunks) -> None:
    """Write ``path`` (0600) through a temporary file renamed into place: a reader never sees
    half a file, and two supervisors writing the same content do not clash."""
    import tempfile   # here: most runs find every content cached (the CLI starts faster)

    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            for c in chunks:
                f.write(c)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


#: The files of POSIX named semaphores (glibc's sem_open).
SEMAPHORES = "/dev/shm/sem.*"


class HashCache:
    """sha256 of files, remembered per user by (device, inode, size, mtime, ctime).

    ctime is in the key as well as mtime because a user can set mtime back (``touch -d``) but
    not ctime: a file rewritten in place always gets a new key.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = os.fspath(root) if root else cache_root()
        self._mem: dict[str, str] = {}

    @staticmethod
    def key(st: os.stat_result) -> str:
        return f"{st.st_dev:x}-{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}-{st.st_ctime_ns:x}"

    def lookup(self, st: os.stat_result, length: int) -> str | None:
        """The sha256 of the first ``length`` bytes of the file ``st`` describes, if known."""
        k = f"{self.key(st)}-{length:x}"
        h = self._mem.get(k)
        if h is None:
            try:
                with open(os.path.join(self.root, "stat", k)) as f:
                    h = f.read()
            except OSError:
                return None
            if len(h) != 64:
                return None
            self._mem[k] = h
        return h

    def remember(self, st: os.stat_result, length: int, digest: str) -> None:
        k = f"{self.key(st)}-{length:x}"
        self._mem[k] = digest
        with contextlib.suppress(OSError):
            _write_atomically(os.path.join(self.root, "stat", k), [digest.encode()])

    def sha256(self, path: str, length: int | None = None) -> str | None:
        """The sha256 of the file's first ``length`` bytes (all of it if None), from the cache
        when known; None if the file is shorter than that."""
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            length = st.st_size if length is None else length
            if st.st_size < length:
                return None
            h = self.lookup(st, length)
            if h is None:
                d = new_sha256()
                left = length
                while left:
                    chunk = f.read(min(left, 1 << 20))
                    if not chunk:
                        return None
                    d.update(chunk)
                    left -= len(chunk)
                h = d.hexdigest()
                self.remember(st, length, h)
        return h

    def compressed(self, digest: str, data: bytes | None = None) -> bytes | None:
        """The zlib stream of content ``digest``: from the cache, or made from ``data`` and kept."""
        path = os.path.join(self.root, "z", digest)
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError:
            pass
        if data is None:
            return None
        z = zlib.compress(data, ZLEVEL)
        with contextlib.suppress(OSError):
            _write_atomically(path, [z])
        return z


def file_backed(call) -> bool:
    """Whether this mmap maps a file (the kernel ignores the fd when MAP_ANONYMOUS is set)."""
    return call.name == "mmap" and not call.args[3] & MAP_ANONYMOUS


def _fd_arg(call) -> int:
    fd = call.args[4] & 0xFFFFFFFF    # the kernel reads the fd as an unsigned int
    return fd - (1 << 32) if fd >> 31 else fd


class MapLogger:
    """The primary's side: log what each file-backed mmap maps.  ``emit(fields, blobs)`` writes
    a record; ``small``: log hashes only (the replay needs the same files); ``live``: a backup
    follows, so writes through a shared mapping (which a replay keeps in its own copy, and a
    backup going live does not carry to the file) are warned about."""

    def __init__(self, emit: Callable, small: bool = False, live: bool = False,
                 warn: Callable[[str], None] | None = None):
        self.emit = emit
        self.small = small
        self.live = live     # a backup may go live: a shared writable mapping deserves a warning
        self.cache = HashCache()
        self.logged: set[str] = set()      # contents already in this log
        self.prefix: dict[str, tuple[int, str]] = {}   # file identity -> longest content logged
        self.warned: set[str] = set()
        self.warn = warn or (lambda msg: print(f"tft: warning: {msg}", file=sys.stderr, flush=True))

    def on_mmap_exit(self, task, call, res: int) -> None:
        """At the exit of a successful mmap, before its sys record is written."""
        if res < 0 or not file_backed(call):
            return
        fd = _fd_arg(call)
        link = f"/proc/{task.pid}/fd/{fd}"
        try:
            path = os.readlink(link)
            with open(link, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    return   # a device (/dev/zero...): it exists on every machine, and runs for real
                length, digest = self._content(f, st, call)
        except OSError as e:
            # Never silently: a replay of this call maps whatever the local file then holds.
            self.warn(f"pid {task.vpid}: cannot log the content fd {fd} maps ({e.strerror or e}); "
                      "a replay maps the local file there")
            return
        writable = bool(call.args[3] & MAP_SHARED) and self._writable(task.pid, fd)
        # A file nobody else can open (deleted: multiprocessing's heap) is shared only with the
        # program's own processes, as the replica's private copy is; POSIX semaphores
        # (multiprocessing's locks, unlinked at once) are said once.
        seen = SEMAPHORES if path.startswith(SEMAPHORES[:-1]) else path
        if writable and self.live and seen not in self.warned and not path.endswith(" (deleted)"):
            self.warned.add(seen)
            self.warn(f"pid {task.vpid} maps {seen} shared and writable: what it writes there reaches "
                      "the file without a system call, so a backup cannot replicate it (a failover "
                      "loses those writes; a replay keeps them in a private copy, shared by the "
                      "program's processes)")
        self.emit({"t": "map", "pid": task.vpid, "seq": call.seq, "sha256": digest, "size": length,
                   "path": path, "stored": digest in self.logged, "writable": writable})

    def _content(self, f, st: os.stat_result, call) -> tuple[int, str]:
        """(length, sha256) of the file prefix that covers this mapping, logged if new.

        The content is the file's first bytes up to the mapping's end (ld.so maps a library's
        loadable part from offset 0 first: its debug sections stay out of the log).  A file
        mapped further than before is logged whole, so a file costs at most two contents.
        """
        end = call.args[5] + call.args[1]
        want = min(st.st_size, (end + PAGE - 1) // PAGE * PAGE)
        ident = HashCache.key(st)
        known = self.prefix.get(ident)
        if known is not None and known[0] >= want:
            return known
        length = want if known is None else st.st_size
        digest = self.cache.lookup(st, length)
        store = not self.small and length <= MAX_CONTENT and digest not in self.logged
        z = self.cache.compressed(digest) if store and digest else None
        data = None
        if digest is None or (store and z is None):
            data = os.pread(f.fileno(), length, 0) if length else b""
            if len(data) != length:
                raise OSError("the file shrank while it was mapped")
        if digest is None:
            digest = new_sha256(data).hexdigest()
            self.cache.remember(st, length, digest)
            store = not self.small and length <= MAX_CONTENT and digest not in self.logged
        if store:
            z = z if z is not None else self.cache.compressed(digest, data)
            for off in range(0, len(z), CHUNK):
                self.emit({"t": "blob", "sha256": digest, "size": length, "offset": off, "zsize": len(z)},
                          [z[off:off + CHUNK]])
            self.logged.add(digest)
        self.prefix[ident] = (length, digest)
        return length, digest

    def exec_facts(self, task) -> dict:
        """Fields for an exec record: the sha256 of the program the process now runs, so a
        replay of a changed program (a child's as much as the first) is a divergence."""
        try:
            return {"sha256": self.cache.sha256(f"/proc/{task.pid}/exe")}
        except OSError:
            return {}

    @staticmethod
    def _writable(pid: int, fd: int) -> bool:
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("flags:"):
                        return int(line.split()[1], 8) & O_ACCMODE != 0
        except (OSError, ValueError):
            pass
        return False


class _Partial:
    """A content being received: decompressed into a temporary file, hashed as it comes."""

    def __init__(self, blobs: str, size: int, zsize: int):
        import tempfile

        self.fd, self.tmp = tempfile.mkstemp(dir=blobs, prefix=".part-")
        self.size = size
        self.zsize = zsize
        self.zgot = 0      # compressed bytes taken
        self.got = 0       # content bytes written
        self.h = new_sha256()
        self.z = zlib.decompressobj()

    def take(self, piece: bytes) -> None:
        """Decompress one piece, never holding more than a few MiB of output (a zip bomb
        cannot make the content longer than the record said)."""
        self.zgot += len(piece)
        buf = piece
        while buf and not self.z.eof:
            out = self.z.decompress(buf, 1 << 22)
            buf = self.z.unconsumed_tail
            if self.got + len(out) > self.size:
                raise LogError("a mapped content in the log is longer than its size")
            self.h.update(out)
            self.got += len(out)
            view = memoryview(out)
            while view:
                view = view[os.write(self.fd, view):]
        if buf or self.z.unused_data:
            raise LogError("a mapped content in the log has bytes after its end")

    def complete(self) -> bool:
        return self.zgot == self.zsize


class MapReplayer:
    """The backup's side: keep the logged contents and map them where the program maps a file."""

    def __init__(self):
        self.cache = HashCache()
        self.blobs = os.path.join(self.cache.root, "blobs")
        self.maps: dict[tuple[int, int], dict] = {}
        self.have: set[str] = set()
        self.partial: dict[str, _Partial] = {}

    # -- records -------------------------------------------------------------------------
    def add(self, rec) -> None:
        """Take a ``blob`` or ``map`` record (in log order)."""
        if rec.type == "map":
            self.maps[(rec["pid"], rec["seq"])] = rec
            return
        digest, size, off, data = rec["sha256"], rec["size"], rec["offset"], rec["blobs"][0]
        if digest in self.have:
            return
        if off == 0 and os.path.isfile(os.path.join(self.blobs, digest)):
            self.have.add(digest)    # already materialised by an earlier replay
            return
        part = self.partial.get(digest)
        if part is None:
            if off != 0:
                raise LogError(f"content {digest[:12]}: a piece at offset {off} comes before its start")
            part = self.partial[digest] = _Partial(self.blobs, size, rec["zsize"])
        if off != part.zgot or size != part.size or rec["zsize"] != part.zsize:
            raise LogError(f"content {digest[:12]}: pieces out of order")
        try:
            part.take(data)
        except (LogError, zlib.error) as e:
            self._drop(digest)
            raise LogError(f"content {digest[:12]}: {e} (corrupt log)") from None
        if not part.complete():
            return
        del self.partial[digest]
        os.close(part.fd)
        if not part.z.eof or part.got != size or part.h.hexdigest() != digest:
            os.unlink(part.tmp)
            raise LogError(f"content {digest[:12]} in the log does not match its sha256 (corrupt log)")
        os.replace(part.tmp, os.path.join(self.blobs, digest))
        self.have.add(digest)

    def _drop(self, digest: str) -> None:
        part = self.partial.pop(digest)
        with contextlib.suppress(OSError):
            os.close(part.fd)
        with contextlib.suppress(OSError):
            os.unlink(part.tmp)

    def close(self) -> None:
        """Drop contents that never completed (a recording cut short)."""
        for digest in list(self.partial):
            self._drop(digest)

    def check_exec(self, task, rec, path: str) -> None:
        """At an exec stop: the program must be the one the primary ran (its sha256)."""
        want = rec.get("sha256")
        try:
            here = self.cache.sha256(f"/proc/{task.pid}/exe") if want else None
        except OSError:
            here = None
        if want and here != want:
            raise DivergenceError(f"{path}: the program changed since it was recorded (sha256 differs)",
                                  syscall="execve")

    # -- the mmap ------------------------------------------------------------------------
    def replay_mmap(self, task, call, rec) -> bool:
        """At the entry of ``call`` (an mmap): if the primary mapped a file here, map the logged
        content instead and complete the call with the primary's result.  False: nothing
        logged here (anonymous, a device, a failed call): the caller runs it for real."""
        m = self.maps.pop((task.vpid, call.seq), None)
        if m is None or rec["res"] < 0:
            return False
        path, private_copy = self._content_path(m)
        flags = os.O_RDWR if m["writable"] else os.O_RDONLY
        try:
            tmpfd = task.inject(_NR["openat"], (AT_FDCWD, task.scratch(os.fsencode(path) + b"\0"),
                                          flags | os.O_CLOEXEC, 0))
        finally:
            if private_copy:
                with contextlib.suppress(OSError):
                    os.unlink(path)   # the program's mapping holds it; nobody else may see it
        if tmpfd < 0:
            raise DivergenceError(f"cannot open the logged content of {m['path']}: {os.strerror(-tmpfd)}",
                                  syscall="mmap")
        a = call.args
        res = task.inject(_NR["mmap"], (a[0], a[1], a[2], a[3], tmpfd, a[5]))
        task.inject(_NR["close"], (tmpfd,))
        if res != rec["res"]:
            raise DivergenceError(f"replay diverged: mmap of {m['path']} returned {res:#x} here, "
                                  f"{rec['res']:#x} on the primary", syscall="mmap")
        task.emulate(res)
        call.action = "mapped"
        return True

    def _content_path(self, m) -> tuple[str, bool]:
        digest = m["sha256"]
        if m["stored"]:
            blob = os.path.join(self.blobs, digest)
            if digest not in self.have or not os.path.isfile(blob):
                raise LogError(f"the log lacks the content of {m['path']} (sha256 {digest[:12]}...)")
        else:
            blob = m["path"]
            try:
                here = self.cache.sha256(m["path"], m["size"])
            except OSError as e:
                raise DivergenceError(f"{m['path']}: the program mapped this file when it was recorded and "
                                      f"it is {e.strerror.lower()} here; the log holds only its sha256 "
                                      "(--small-log): replay where it exists, or record without --small-log")
            if here != digest:
                raise DivergenceError(f"{m['path']}: this file differs from the one the program mapped when "
                                      "it was recorded (sha256 differs; the log holds only the hash, "
                                      "--small-log): replay where it is unchanged, or record without "
                                      "--small-log")
        if not m["writable"]:
            return os.fspath(blob), False
        # Shared and writable: the program writes through the mapping, so it gets a private copy.
        import tempfile

        fd, tmp = tempfile.mkstemp(dir=self.blobs, prefix=".shared-")
        with os.fdopen(fd, "wb") as out, open(blob, "rb") as src:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                out.write(chunk)
        return tmp, True
