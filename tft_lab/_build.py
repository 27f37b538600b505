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
              extra: tuple[str, ...] = (), *, binary: str | os.PathLike | None = None,
              force: bool = False) -> Path:
    """Compile ``source`` with ``cc -O1`` unless an up-to-date binary exists; return its path.

    The binary is ``binary`` if given, else ``out_dir/<stem>`` (``out_dir``: the user's cache).
    Sources that include ``<pthread.h>`` are linked with ``-lpthread``.  Raises ProgramError
    if there is no compiler or the source does not compile.
    """
    source = Path(source)
    if not source.is_file():
        raise ProgramError(f"{source}: no such source file")
    binary = Path(binary) if binary else (Path(out_dir) if out_dir else cache_dir()) / source.stem
    if not force and binary.exists() and binary.stat().st_mtime_ns >= source.stat().st_mtime_ns:
        return binary
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise ProgramError(f"cannot build {source.name}: no C compiler "
                           "(install one: apt-get install gcc, or run scripts/setup.sh)")
    binary.parent.mkdir(parents=True, exist_ok=True)
    # A private name, then a rename: concurrent builds never run a half-written binary.
    tmp = binary.with_name(f".{binary.name}.{os.getpid()}.tmp")
    cmd = [cc, "-O1", "-o", str(tmp), str(source), *extra]
    if b"<pthread.h>" in source.read_bytes():
        cmd.append("-lpthread")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise ProgramError(f"{source}: does not compile:\n{proc.stderr.strip()}")
    os.replace(tmp, binary)
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
