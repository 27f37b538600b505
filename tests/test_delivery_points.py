"""Where held-back signals are delivered: at epoch boundaries, and before a call that may block.

A signal that arrives while the program computes is held back; if the program
then blocks in read(), waiting for the next epoch boundary would mean waiting
for the read, which may be forever.  The primary delivers it just before the
blocking call (logged as mode "before"), and the replay delivers it there too.
"""
import subprocess
import sys

from tft_lab._build import compile_c
from tft_lab.log import read_log
from pathlib import Path

PROGRAMS = Path(__file__).parent / "programs"


def tft(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "tft_lab.cli", *args], capture_output=True, timeout=timeout)


def test_a_signal_held_back_reaches_a_program_that_then_blocks(tmp_path):
    prog = compile_c(PROGRAMS / "signal_then_block.c", tmp_path)
    log = tmp_path / "run.log"
    rec = tft("record", "--log", str(log), "--epoch", "1000", "--", str(prog))
    assert rec.returncode == 0, rec.stderr
    assert b"read=1 got=1" in rec.stdout          # the handler ran, and read() was not broken by it
    modes = [r["mode"] for r in read_log(log) if r.type == "sig" and r["signo"] == 10]
    assert modes == ["before"]                     # SIGUSR1 was delivered before the blocking read
    rep = tft("replay", str(log))
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout == rec.stdout
