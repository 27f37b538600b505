"""Regenerate the derived documentation: docs/syscalls.md from the syscall table."""
from pathlib import Path

from tft_lab.syscalls import markdown_table

HEADER = """# The syscall table

Generated from `tft_lab/syscalls.py` by `python scripts/gen_docs.py`; do not
edit by hand (a test checks it is current). What each class means is in the
module's docstring; "trapped: no" calls run natively on both replicas (their
effect is local and identical given identical inputs); every other syscall is
trapped. A syscall this table does not list is never run unseen: one newer than
the table is answered ENOSYS on both replicas (programs fall back, as on an
older kernel), an x32 one stops the program with a one-line error. `tft trace`
traps them all and refuses none.

The facts column is what the policies act on, read from the table (no policy
keeps its own list of names): `blocks` (may wait long: held-back signals are
delivered before it), `kills` (sends a signal), `opens` (opens a path, new
fd), `chdir` (changes the working directory), `noreturn` (never returns when
it succeeds), `forks` (creates a process), `execs` (replaces the program),
`resets` (fails with ECONNRESET on a connection that died with the primary),
`writes=...` (an output that moves bytes to its fd: from a buffer `buf`, an
iovec array `iov`, a `msghdr`, or from another `fd`, in which case the
primary logs the bytes where the replay shows the destination: the inherited
stdout/stderr or a pipe; it reads them back from the end that is a regular
file, and moves at most 8 MiB per call; where neither end is one — pipe to
pipe, socket to pipe, so `tee` always — the call fails with EINVAL and
programs fall back to read and write, as coreutils and CPython do), `path=aN@aM`
(the path in argument N, relative to the directory fd in argument M; the
replayer resolves it against the recorded working directory).

"""


def main() -> None:
    out = Path(__file__).resolve().parent.parent / "docs" / "syscalls.md"
    out.write_text(HEADER + markdown_table() + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
