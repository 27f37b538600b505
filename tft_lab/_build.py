"""Building the bundled C programs with the system's ``cc`` (never shipped as binaries)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .errors import ProgramError

EXAMPLES = Path(__file__).parent / "examples"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    d = Path(base) / "tft_lab" / "bin"
    d.mkdir(parents=True, exist_ok=True)
    return d


def compile_c(source: str | os.PathLike, out_dir: str | os.PathLike | None = None,
              extra: tuple[str, ...] = ()) -> Path:
    """Compile ``source`` with ``cc -O1`` unless an up-to-date binary exists; return its path."""
    source = Path(source)
    if not source.exists():
        raise ProgramError(f"{source}: no such source file")
    out = Path(out_dir) if out_dir else cache_dir()
    out.mkdir(parents=True, exist_ok=True)
    binary = out / source.stem
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise ProgramError("no C compiler: install one (apt-get install gcc) or run scripts/setup.sh")
    tmp = binary.with_suffix(".tmp")
    proc = subprocess.run([cc, "-O1", "-o", str(tmp), str(source), *extra], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ProgramError(f"{source}: does not compile:\n{proc.stderr.strip()}")
    tmp.replace(binary)
    return binary


def example(name: str) -> Path:
    """A bundled example, built if it is C: ``example("counter")``."""
    src = EXAMPLES / f"{name}.c"
    if src.exists():
        return compile_c(src)
    py = EXAMPLES / f"{name}.py"
    if py.exists():
        return py
    raise ProgramError(f"no bundled example called {name!r} (see tft_lab/examples/)")
