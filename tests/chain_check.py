#!/usr/bin/env python3
"""A checker for ``tft sweep --check``: is stdin the whole output of ``chain K``?

    usage: chain_check.py K        (exit 0: yes; else the first problem on stderr, exit 1)

``tests/programs/chain.c`` prints ``i=<n> v=<value> chain=<hash>`` for n = 0..K-1,
each chain value a 64-bit FNV-1a over ``"<previous chain as 16 hex> i=<n> v=<value>"``,
then ``checksum=...``.  A line repeated right after itself (the uncertain output of a
failover) is allowed once; a gap, a reordering, an altered byte or a missing line is not.
"""
import re
import sys

LINE = re.compile(r"i=(\d+) v=(\S+) chain=([0-9a-f]{16})")


def fnv1a(text: str, h: int = 0xCBF29CE484222325) -> int:
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) % 2 ** 64
    return h


def problem(lines: list[str], k: int) -> str | None:
    prev, expected, repeats = 0, 0, 0
    for pos, line in enumerate(lines):
        if pos and line == lines[pos - 1]:
            repeats += 1
            continue
        if line.startswith("checksum="):
            continue
        m = LINE.fullmatch(line)
        if not m:
            return f"line {pos} is not a chain line: {line!r}"
        if int(m[1]) != expected:
            return f"line {pos}: expected i={expected}: {line!r}"
        if int(m[3], 16) != fnv1a(f"{prev:016x} i={m[1]} v={m[2]}"):
            return f"line {pos}: broken link: {line!r}"
        prev, expected = int(m[3], 16), expected + 1
    if expected != k:
        return f"{expected} chain lines, expected {k}"
    if repeats > 1:
        return f"{repeats} repeated lines: at most one per failover"
    return None


if __name__ == "__main__":
    why = problem(sys.stdin.read().splitlines(), int(sys.argv[1]))
    if why:
        print(why, file=sys.stderr)
    sys.exit(1 if why else 0)
