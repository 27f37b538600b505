"""``tft demo``: the main job on the bundled examples, narrated.

Records the ``counter`` example (time, randomness, a file it appends to),
replays it from the log and shows that the replay printed the same bytes and
wrote no file.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from ._build import example


def _tft(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tft_lab.cli", *args], capture_output=True, **kw)


def demo(workdir: str | None = None) -> int:
    work = workdir or tempfile.mkdtemp(prefix="tft-demo-")
    os.makedirs(work, exist_ok=True)
    counter = str(example("counter"))
    log = os.path.join(work, "counter.log")
    data = os.path.join(work, "counter.txt")
    say = print
    say(f"== 1. record: {counter} 5 {data}  (log: {log})")
    rec = _tft("record", "--log", log, "--", counter, "5", data, cwd=work)
    sys.stdout.write(rec.stdout.decode())
    written = open(data, "rb").read() if os.path.exists(data) else b""
    os.unlink(data) if os.path.exists(data) else None
    say(f"   exit status {rec.returncode}; the program appended {len(written)} bytes to {data}")
    say("== 2. replay from the log (time and randomness come from the log, not the kernel)")
    rep = _tft("replay", log, cwd=work)
    sys.stdout.write(rep.stdout.decode())
    sys.stderr.write(rep.stderr.decode())
    same = rep.stdout == rec.stdout and rep.returncode == rec.returncode
    say(f"   identical output and status: {'yes' if same else 'NO'}; "
        f"file written again by the replay: {'yes' if os.path.exists(data) else 'no'}")
    ok = same and not os.path.exists(data)
    say("demo: ok" if ok else "demo: FAILED")
    return 0 if ok else 1
