"""Channel keys: the shared secret both replicas hold (files of hex, mode 0600).

Whoever can write to the channel controls the backup, so a TCP channel refuses
to run without a key; :func:`generate_key` writes one, :func:`load_key` reads
it back and refuses files others may read or write.
"""
from __future__ import annotations

import os
import secrets
import stat

from ..errors import ChannelError

#: Shortest key accepted (HMAC-SHA256 keys shorter than this are guessable).
MIN_KEY_BYTES = 16


def generate_key(path: str | os.PathLike[str]) -> bytes:
    """Create a new key file at *path* (32 random bytes, hex, mode 0600) and return the key.

    Refuses to overwrite an existing file (``ChannelError``): a replaced key
    silently locks out the other replica.  Copy the file to the other host by a
    channel you trust.
    """
    p = os.fspath(path)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise ChannelError(f"key file {p} already exists; refusing to overwrite it") from None
    except OSError as exc:
        raise ChannelError(f"cannot create key file {p}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(key.hex() + "\n")
    return key


def load_key(path: str | os.PathLike[str]) -> bytes:
    """Read a key written by :func:`generate_key` and return its bytes.

    The file must be a regular file holding at least 16 hex-encoded bytes, and
    must not be accessible to group or others (as ssh demands of private keys:
    whoever reads the key can feed the backup, whoever writes it can replace
    it).  Anything else raises ``ChannelError`` saying how to fix it.
    """
    p = os.fspath(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ChannelError(f"key file {p} does not exist; create one with generate_key({p!r})") from None
    except OSError as exc:
        raise ChannelError(f"cannot open key file {p}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):   # before fdopen, which refuses a directory itself
        os.close(fd)
        raise ChannelError(f"key file {p} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())  # of the opened file, not of whatever the path names now
        if not stat.S_ISREG(st.st_mode):
            raise ChannelError(f"key file {p} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise ChannelError(f"key file {p} is accessible by group or others (mode {mode:04o}); "
                               f"run: chmod 600 {p}")
        text = f.read(4097)
    if len(text) > 4096:
        raise ChannelError(f"key file {p} is too large to be a key file")
    text = text.strip()
    if not text:
        raise ChannelError(f"key file {p} is empty; create one with generate_key()")
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ChannelError(f"key file {p} does not hold a hex key (as generate_key() writes)") from None
    if len(key) < MIN_KEY_BYTES:
        raise ChannelError(f"key in {p} is {len(key)} bytes; at least {MIN_KEY_BYTES} are needed")
    return key


def _check_key(key: bytes | None, *, required: bool) -> bytes | None:
    if key is None:
        if required:
            raise ValueError("a key is required on TCP: use load_key() / generate_key()")
        return None
    if not isinstance(key, (bytes, bytearray)):
        raise TypeError(f"key must be bytes, not {type(key).__name__}")
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"key is {len(key)} bytes; at least {MIN_KEY_BYTES} are needed")
    return bytes(key)

