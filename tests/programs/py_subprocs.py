"""Subprocesses through pipes, the way everyday Python scripts run them.

Runs a few children (``subprocess.run`` with captured output, a ``Popen`` pipe read
line by line, one that exits 5) and prints what each returned.  Every line is
deterministic, so a failover at any call must give the same text and status 0.
"""
import subprocess
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
for i in range(n):
    r = subprocess.run(["/bin/echo", f"child {i}"], stdout=subprocess.PIPE)
    print(f"run {i}: rc={r.returncode} out={r.stdout.decode().strip()}", flush=True)
    r = subprocess.run(["/bin/sh", "-c", f"exit {5 + i}"])
    print(f"exit {i}: rc={r.returncode}", flush=True)
p = subprocess.Popen(["/bin/sh", "-c", "for j in 1 2 3; do echo line $j; done; exit 7"], stdout=subprocess.PIPE)
lines = [line.decode().strip() for line in p.stdout]
print(f"popen: {lines} rc={p.wait()}", flush=True)
