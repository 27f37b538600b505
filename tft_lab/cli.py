"""The ``tft`` command line.

    tft record --log FILE [--epoch N] [--trace-out F] [--small-log] [--record-env]
               [--on-log-error stop|continue] -- PROG [ARGS...]
    tft replay [--trace-out F] FILE
    tft trace [-o FILE] -- PROG [ARGS...]
    tft run [--backup local|none|tcp://HOST:PORT] [--commit output|epoch|none] [--epoch N]
            [--trace FILE] [--fault primary@N|primary@Ts|backup@N|backup@Ts]... [--respawn N]
            [--pause primary@Ts:Ds|backup@Ts:Ds]... [--arbiter etcd://HOST:PORT [--lease-ttl S]]
            -- PROG [ARGS...]
    tft sweep --at every|N,M,...|sample:K|every:S [--victim primary|backup] [--commit C[,C...]]
              [--epoch N[,N...]] [--check CMD] [--workers W] [--cluster tcp://HOST:PORT]
              [--out results.parquet] -- PROG [ARGS...]
    tft backup --listen HOST:PORT --key-file F [--arbiter etcd://HOST:PORT [--lease-ttl S]]
               [--rejoin tcp://HOST:PORT]
    tft keygen FILE
    tft demo

Errors are one line on stderr (``tft: ...``) and a non-zero exit: 2 for bad
usage or input, 3 for a divergence, 4 when ``tft run``'s primary stopped and
left the program to its remote backup (whose ``tft backup`` reports how it
ends) or when ``tft backup`` stood down because its primary, alive, kept the arbiter's
key, 130 when the operator stopped ``tft run`` (then both replicas stop).
Otherwise tft exits with the program's status (128+signal if it was killed).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys

from .errors import DivergenceError, TftError

EXIT_USAGE = 2
EXIT_DIVERGED = 3


class _Version(argparse.Action):
    """``--version``: the version and the backend (compiled core or pure Python, and why)."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: D102 (argparse's contract)
        from . import __version__
        from ._backend import describe   # imported only here: the backend choice is what is shown
        print(f"tft {__version__}, {describe()}")
        parser.exit(0)


class _Help(argparse.HelpFormatter):
    """argparse's help, sized to the terminal without importing :mod:`shutil` (which argparse
    does for every option it checks, and which pulls in bz2 and lzma: ~2 ms of every command)."""

    def __init__(self, prog: str, **kwargs) -> None:
        if kwargs.get("width") is None:
            try:
                columns = int(os.environ.get("COLUMNS", "0")) or os.get_terminal_size(sys.__stdout__.fileno()).columns
            except (ValueError, OSError, AttributeError):
                columns = 80
            kwargs["width"] = columns - 2
        super().__init__(prog, **kwargs)


class _OnlyVerb:
    """``add_subparsers()``'s object, registering every verb (``tft -h`` lists them all) but
    building the options of one only: the verb being run (argparse spends ~0.2 ms per option,
    13 ms for all of them, on every command's start-up)."""

    class _Unused:
        def add_argument(self, *args, **kwargs) -> None:
            pass

    def __init__(self, sub, verb: str | None) -> None:
        self.sub, self.verb = sub, verb

    def add_parser(self, name: str, **kwargs):
        kwargs.setdefault("formatter_class", _Help)
        if self.verb is None or name == self.verb:
            return self.sub.add_parser(name, **kwargs)
        self.sub.add_parser(name, add_help=False, **kwargs)   # named and helped, never parsed
        return self._Unused()


def _parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with ``verb``, only that verb's options are built (the others
    are listed, never parsed).  None: all of them."""
    p = argparse.ArgumentParser(prog="tft", description="Transparent fault tolerance at the system-call interface.",
                                formatter_class=_Help)
    p.add_argument("--version", action=_Version, nargs=0,
                   help="print the version and which backend runs the stop loop, then exit")
    sub = _OnlyVerb(p.add_subparsers(dest="cmd", required=True), verb)

    r = sub.add_parser("record", help="run a program and log every answer it gets from outside")
    r.add_argument("--log", required=True, help="log file to write")
    r.add_argument("--epoch", type=int, default=64, help="epoch length in intercepted calls (default 64)")
    r.add_argument("--trace-out", help="also write the trace (parquet, or .csv)")
    r.add_argument("--small-log", action="store_true",
                   help="log only the sha256 of mapped files (libraries...): replays only where they are unchanged")
    r.add_argument("--record-env", action="store_true",
                   help="keep every environment variable's value in the log (default: variables whose "
                        "names say secret, such as *_TOKEN, *_PASSWORD, *_KEY, are masked; see docs/log-format.md)")
    r.add_argument("--on-log-error", choices=("stop", "continue"), default="stop",
                   help="if the log cannot be written (a full disk): stop the program (default), or let it "
                        "run to its end unrecorded; either way tft exits non-zero")
    r.add_argument("--events", help=argparse.SUPPRESS)       # stream the trace (JSON lines): live views
    r.add_argument("--control-fd", type=int, help=argparse.SUPPRESS)   # live stepping socket
    r.add_argument("prog", nargs=argparse.REMAINDER)

    rp = sub.add_parser("replay", help="re-execute a program from its log")
    rp.add_argument("log")
    rp.add_argument("--trace-out", help="also write the trace (parquet, or .csv)")
    rp.add_argument("--events", help=argparse.SUPPRESS)
    rp.add_argument("--control-fd", type=int, help=argparse.SUPPRESS)

    t = sub.add_parser("trace", help="print the intercepted calls strace-style, with their class")
    t.add_argument("-o", "--output", help="write the trace here instead of stderr")
    t.add_argument("prog", nargs=argparse.REMAINDER)

    ru = sub.add_parser("run", help="run a program replicated: a primary and a backup, with failover")
    ru.add_argument("--backup", default="local", help="local (default), none, or tcp://HOST:PORT")
    ru.add_argument("--commit", default="output", choices=("output", "epoch", "none"),
                    help="output rule: output (default), epoch, none")
    ru.add_argument("--epoch", type=int, default=64, help="epoch length in intercepted calls (default 64)")
    ru.add_argument("--trace", help="write both replicas' trace here (parquet; .csv for CSV)")
    ru.add_argument("--fault", action="append", default=[],
                    help="inject a fail-stop: primary@N, primary@2.5s, backup@N, backup@Ts (repeatable)")
    ru.add_argument("--pause", action="append", default=[],
                    help="stop a replica's supervisor for D s at T s, then resume it: primary@Ts:Ds, "
                         "backup@Ts:Ds (repeatable)")
    ru.add_argument("--respawn", type=int, default=None,
                    help="after each failover a fresh local backup catches up and follows the new primary: "
                         "at most N of them (default: no bound; 0: the program runs alone after a failover)")
    ru.add_argument("--key-file", help="shared key for a TCP backup (see tft keygen)")
    ru.add_argument("--heartbeat", type=float, default=0.5, help="heartbeat period in seconds (default 0.5)")
    _arbiter_options(ru)
    ru.add_argument("--workdir", help=argparse.SUPPRESS)      # keep per-replica results and event streams
    ru.add_argument("--control-fd", type=int, help=argparse.SUPPRESS)
    ru.add_argument("--result-json", help=argparse.SUPPRESS)
    ru.add_argument("prog", nargs=argparse.REMAINDER)

    sw = sub.add_parser("sweep", help="fail a replica at every chosen crash point, in parallel, and judge each run")
    sw.add_argument("--at", default="every", help="every (default), every:S, sample:K or N,M,... (calls, from 1)")
    sw.add_argument("--victim", default="primary", choices=("primary", "backup"), help="the replica to fail")
    sw.add_argument("--commit", default="output", help="output rule(s), comma-separated: output, epoch, none")
    sw.add_argument("--epoch", default="64", help="epoch length(s), comma-separated (default 64)")
    sw.add_argument("--check", help="shell command given each run's stdout on stdin; passes if it exits 0 "
                                    "(default: compare output and files with the fault-free run)")
    sw.add_argument("--workers", type=int, help="points run in parallel here (default: the number of CPUs)")
    sw.add_argument("--cluster", help="tcp://HOST:PORT of a Dask scheduler to run the points on instead")
    sw.add_argument("--timeout", type=float, help="a point running longer is 'hung' (default: 10x the reference)")
    sw.add_argument("--heartbeat", type=float, default=0.5, help="tft run's heartbeat period (default 0.5 s)")
    sw.add_argument("--out", help="write the table here (parquet; .csv for CSV); else print it")
    sw.add_argument("prog", nargs=argparse.REMAINDER)

    bk = sub.add_parser("backup", help="wait for a primary (tft run --backup tcp://...) and be its backup")
    bk.add_argument("--listen", required=True, help="HOST:PORT to listen on")
    bk.add_argument("--key-file", required=True, help="the shared key file")
    bk.add_argument("--trace", help="write this replica's trace here (parquet)")
    bk.add_argument("--fault", action="append", default=[], help="backup@N or backup@Ts")
    bk.add_argument("--heartbeat", type=float, default=0.5)
    bk.add_argument("--rejoin", help="tcp://HOST:PORT: once live, catch up a fresh tft backup --listen there "
                                     "(the failed host, restarted) and follow it under --commit")
    bk.add_argument("--commit", default="output", choices=("output", "epoch", "none"),
                    help="output rule once live with a --rejoin backup (default output)")
    bk.add_argument("--accept-timeout", type=float, default=None, help="give up if no primary comes")
    _arbiter_options(bk)

    kg = sub.add_parser("keygen", help="write a new shared key file (mode 0600)")
    kg.add_argument("path")

    d = sub.add_parser("demo", help="the bundled examples: record and replay, then two failovers")
    d.add_argument("--workdir", default=None)
    return p


def _arbiter_options(p: "argparse.ArgumentParser | _OnlyVerb._Unused") -> None:
    p.add_argument("--arbiter", metavar="etcd://HOST:PORT",
                   help="an etcd v3 server that decides which replica is live (a lease on the run's key) "
                        "instead of heartbeat fencing; give both tft run and tft backup the same one")
    p.add_argument("--lease-ttl", type=int, default=None, metavar="S",
                   help="the arbiter's lease in seconds (default 2): a failover waits up to this long, "
                        "a primary cut off from etcd fences before it ends")


def _usage(message: str):
    print(f"tft: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def _prog(args) -> list[str]:
    prog = args.prog
    if prog and prog[0] == "--":
        prog = prog[1:]
    if not prog:
        _usage(f"no program given (usage: tft {args.cmd} ... -- PROG [ARGS...])")
    return prog


def _write_trace(engine, path: str | None) -> None:
    if path:
        from .trace import save, to_dataframe

        save(to_dataframe(engine.events), path)


@contextlib.contextmanager
def _trace_kept_on_error(path: str | None):
    """A record or replay that stops on an error (a divergence, a refusal) still writes its
    trace up to there (``--trace-out``): it shows where it stopped."""
    try:
        yield
    except TftError as e:
        engine = getattr(e, "engine", None)
        if engine is not None:
            _write_trace(engine, path)
        raise


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _stop_on_sigterm() -> None:
    """SIGTERM stops the program as Ctrl-C does: the supervisor's clean-up runs (the log is
    flushed and closed, no process is left) and tft exits with the usual message."""
    def _term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)


def main(argv: list[str] | None = None) -> int:
    """``tft ARGS...`` (``argv``: the arguments, else the command line's); the exit status.

    As the command (``argv`` None), it ends the process itself when nothing is left to do
    at exit (no atexit hook, no other thread): the interpreter's own teardown of the modules
    it loaded costs ~5 ms of every command."""
    status = _main(argv)
    if argv is None:
        import atexit
        import threading

        if atexit._ncallbacks() == 0 and threading.active_count() == 1:
            for stream in (sys.stdout, sys.stderr):
                try:
                    if stream is not None:
                        stream.flush()
                except (OSError, ValueError):
                    return status   # say it the usual way
            os._exit(status if isinstance(status, int) and 0 <= status <= 255 else 1)
    return status


def _main(argv: list[str] | None) -> int:
    words = sys.argv[1:] if argv is None else argv
    verb = words[0] if words and not words[0].startswith("-") else None
    args = _parser(verb).parse_args(argv)
    try:
        from .sched import spin_limit_from_env

        spin_limit_from_env()   # a bad TFT_SPIN_LIMIT is said before any file is made
        if args.cmd == "record":
            from .recorder import record

            if args.epoch < 1:
                _usage("--epoch must be at least 1")
            _stop_on_sigterm()   # the log is closed as a whole (its last frames flushed)
            with _trace_kept_on_error(args.trace_out):
                status, engine = record(_prog(args), args.log, epoch=args.epoch, events=args.events,
                                        control_fd=args.control_fd, keep_trace=bool(args.trace_out),
                                        small_log=args.small_log, record_env=args.record_env,
                                        keep_going=args.on_log_error == "continue")
            _write_trace(engine, args.trace_out)
            lost = engine.policy.sink.lost
            if lost is not None:
                print(f"tft: the log {args.log} is incomplete (it could not be written); the program ran to its "
                      f"end unrecorded, exit status {status}", file=sys.stderr)
                return EXIT_USAGE
            return status
        if args.cmd == "replay":
            from .replayer import replay

            if sys.stdout is None or not _is_open(1):
                # The replay shows the program's output on our stdout: closed, it could only fail
                # later, or land in whatever file next took fd 1.
                _usage("standard output is closed: the replay writes the program's output there "
                       "(use >/dev/null to discard it)")
            sys.stdout.flush()
            _stop_on_sigterm()
            with _trace_kept_on_error(args.trace_out):
                status, engine = replay(args.log, events=args.events, control_fd=args.control_fd,
                                        keep_trace=bool(args.trace_out))
            _write_trace(engine, args.trace_out)
            return status
        if args.cmd == "trace":
            from .tracer import trace

            if args.output:
                from .log import open_private

                out = os.fdopen(open_private(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "w")
            else:
                out = sys.stderr
            try:
                status, _ = trace(_prog(args), out)
            finally:
                if args.output:
                    out.close()
            return status
        if args.cmd == "run":
            from .channel import load_key
            from .run import run

            key = load_key(args.key_file) if args.key_file else None
            try:
                res = run(_prog(args), backup=args.backup, commit=args.commit, epoch=args.epoch,
                          trace=args.trace, faults=args.fault, key=key, heartbeat=args.heartbeat,
                          workdir=args.workdir, control_fd=args.control_fd, respawn=args.respawn,
                          pauses=args.pause, arbiter=args.arbiter, lease_ttl=args.lease_ttl)
            except ValueError as e:
                _usage(str(e))
            if args.result_json:
                with open(args.result_json, "w") as f:
                    json.dump({"returncode": res.returncode, "outcome": res.outcome, "primary": res.primary,
                               "backup": res.backup, "failover_ms": res.failover_ms,
                               "backups": res.backups, "failovers": res.failovers,
                               "redundancy_lost": res.redundancy_lost}, f)
            if res.outcome == "failover" and res.failovers > 1:
                print(f"tft: failover: {res.failovers} failovers, each masked by a fresh backup that caught up; "
                      "the last live replica finished the program", file=sys.stderr)
            elif res.outcome == "failover":
                print("tft: failover: the backup went live and finished the program"
                      + (f" ({res.failover_ms:.1f} ms from detection to live)" if res.failover_ms else ""),
                      file=sys.stderr)
            elif res.outcome == "backup-lost":
                print(f"tft: redundancy lost: {res.redundancy_lost}; the primary finished the program ALONE "
                      f"(exit status {res.returncode})", file=sys.stderr)
            elif res.outcome == "handed-over":
                print(f"tft: handed over: this primary stopped ({res.error}); the program goes on at the "
                      f"backup ({args.backup}) if it lives, and tft backup there reports its output and "
                      f"exit status", file=sys.stderr)
            elif res.outcome == "refused":
                print(f"tft: {res.error}", file=sys.stderr)   # both replicas stopped the program
            elif res.outcome == "failed":
                print(f"tft: no replica finished the program: {res.error or 'both replicas failed'}",
                      file=sys.stderr)
            return res.returncode
        if args.cmd == "sweep":
            return _sweep(args)
        if args.cmd == "backup":
            from .channel import load_key
            from .run import parse_backup
            from .serve import serve_backup

            host, _, port = args.listen.rpartition(":")
            if not host or not port.isdigit():
                _usage("--listen takes HOST:PORT")
            rejoin = None
            if args.rejoin:
                try:
                    kind, r_host, r_port = parse_backup(args.rejoin)
                except ValueError:
                    kind = None
                if kind != "tcp":
                    _usage("--rejoin takes tcp://HOST:PORT")
                rejoin = (r_host, r_port)
            return serve_backup(host.strip("[]"), int(port), load_key(args.key_file), faults=args.fault,
                                trace=args.trace, heartbeat=args.heartbeat, accept_timeout=args.accept_timeout,
                                rejoin=rejoin, commit=args.commit, arbiter=args.arbiter, lease_ttl=args.lease_ttl)
        if args.cmd == "keygen":
            from .channel import generate_key

            generate_key(args.path)
            print(f"tft: wrote a new key to {args.path}")
            return 0
        if args.cmd == "demo":
            from .demo import demo

            return demo(args.workdir)
    except DivergenceError as e:
        print(f"tft: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    except TftError as e:
        print(f"tft: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tft: interrupted; the program was stopped", file=sys.stderr)
        return 130
    except ValueError as e:   # a bad option value (a fault spec, a --backup address)
        print(f"tft: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:      # a timeout waiting for a peer, a file we were named and cannot use
        what = f"{e.filename}: " if e.filename else ""
        print(f"tft: {what}{e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_USAGE


def _sweep(args) -> int:
    """``tft sweep``: the table to ``--out`` (or stdout), the summary on stderr; 1 if any point failed."""
    import pandas as pd

    from .sweeps import failed, summary, sweep, write_table

    _stop_on_sigterm()   # stop every point and remove every folder, then go
    if args.workers is not None and args.workers < 1:
        _usage("--workers must be at least 1")
    try:
        epochs = [int(e) for e in args.epoch.split(",")]
    except ValueError:
        _usage(f"bad --epoch {args.epoch!r}: epoch lengths, comma-separated")
    df = sweep(_prog(args), at=args.at, victim=args.victim, commit=args.commit.split(","), epoch=epochs,
               check=args.check, workers=args.workers, cluster=args.cluster, timeout=args.timeout,
               heartbeat=args.heartbeat)
    if args.out:
        print(f"tft: sweep: wrote {len(df)} rows to {write_table(df, args.out)}", file=sys.stderr)
    else:
        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(df.drop(columns=["note"]).to_string(index=False))
    print(summary(df), file=sys.stderr)
    return 1 if len(failed(df)) else 0


if __name__ == "__main__":
    sys.exit(main())
