"""py_signals.py -- a Python guest that exercises timer signals: a SIGALRM
handler and a 2 ms periodic ITIMER_REAL (signal.setitimer) while the program
runs a fixed loop of os.getppid() syscalls (plus a little computation). The handler records the loop
iteration at which each signal arrived (Python runs handlers between
bytecodes, after the C-level handler set a flag). These differ between runs.
Usage: py_signals.py [ITERATIONS=10000]
Output: name=value lines, then checksum=<FNV-1a of the lines>.
"""
import os
import signal
import sys

_fnv = 0xCBF29CE484222325


def out(name, value):
    global _fnv
    line = f"{name}={value}"
    for b in line.encode():
        _fnv ^= b
        _fnv = (_fnv * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    print(line)


iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
i = -1
arrived = []


def on_alarm(signum, frame):
    arrived.append(i)


signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
work = range(300)
for i in range(iterations):
    os.getppid()
    sum(work)  # a few microseconds of computation per iteration
signal.setitimer(signal.ITIMER_REAL, 0, 0)
i = -1

out("iterations", iterations)
out("signals", len(arrived))
out("arrived_at", ",".join(str(n) for n in arrived))
print(f"checksum={_fnv:016x}")
