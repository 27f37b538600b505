#!/usr/bin/env bash
# Sets up everything tft_lab needs on a fresh Debian machine: system packages
# (cc, strace, etcd...), a virtualenv in .venv with the package and its test extras.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null || need_apt+=(gcc libc6-dev)
command -v strace >/dev/null || need_apt+=(strace)
command -v ip >/dev/null || need_apt+=(iproute2)      # the two-host tests make network namespaces
command -v pgrep >/dev/null || need_apt+=(procps)     # the demo finds the primary's supervisor
command -v etcd >/dev/null || need_apt+=(etcd-server) # tft run --arbiter: its tests start a private etcd
command -v memcached >/dev/null || need_apt+=(memcached) # a threaded Debian server: tests/test_threaded_server.py
command -v gpg >/dev/null || need_apt+=(gnupg)           # a threaded daemon inside the program: tests/test_gpg.py
command -v ipcmk >/dev/null || need_apt+=(util-linux)    # System V shared memory, refused: tests/test_unlisted_syscalls.py
# The everyday-programs corpus (tests/corpus) runs these unmodified: COMMAND:PACKAGE.
for p in sqlite3:sqlite3 lua5.4:lua5.4 jq:jq tclsh:tcl zstd:zstd lz4:lz4 busybox:busybox file:file make:make \
         git:git curl:curl xz:xz-utils bzip2:bzip2 perl:perl bc:bc ssh-keygen:openssh-client node:nodejs \
         vim:vim man:man-db zip:zip unzip:unzip valgrind:valgrind; do
    command -v "${p%%:*}" >/dev/null || need_apt+=("${p#*:}")
done
# The C core (tft_lab._core) compiles against the interpreter's headers; Debian's python3 has
# them in python3-dev.  Without them the install still succeeds, on the pure-Python path.
PY=${PYTHON:-python3}
"$PY" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || need_apt+=(python3-dev)
if [ "${TFT_BROWSER:-0}" = 1 ]; then
    command -v chromium >/dev/null || need_apt+=(chromium)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "setup: please install: ${need_apt[*]} (apt-get install ...)" >&2
        exit 1
    fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
extras="test,lab,sweep"   # sweep: Dask for tft sweep --cluster (its test starts a local cluster)
[ "${TFT_BROWSER:-0}" = 1 ] && extras="$extras,browser"
# editable_mode=compat: the project folder on sys.path through a plain .pth, not an import hook
# (the default hook imports pathlib, urllib... at every interpreter start: ~10 ms of each tft
# command).  setuptools calls that mode transitional: where it is gone, the default mode.
.venv/bin/python -m pip install -q -e ".[$extras]" --config-settings editable_mode=compat 2>/dev/null ||
    .venv/bin/python -m pip install -q -e ".[$extras]"
# pip install -e builds the C core in place (setup.py marks it optional: no compiler, no core).
if ! .venv/bin/python -c 'import tft_lab._core' 2>/dev/null; then
    echo "setup: warning: the C core tft_lab._core was not built (no C compiler or Python headers?):" \
         "tft_lab runs its pure-Python path, slower per system call" >&2
fi
# Byte-compile the package now: an editable install compiles nothing, and where
# PYTHONDONTWRITEBYTECODE is set (many container images set it) every tft command
# would compile its ~45 modules again (~0.3 s before the program starts).
.venv/bin/python -m compileall -q tft_lab >/dev/null
echo "setup: ok ($(.venv/bin/python --version), tft at .venv/bin/tft, the $(.venv/bin/python -c 'from tft_lab._backend import BACKEND; print(BACKEND)') path)"
