"""Asynchronous signals are held to epoch boundaries, logged, and replayed at the same point.

Timer signals (setitimer) and signals sent by another process (kill, and the
SIGCHLD of its exit) replay identically whatever the epoch length; the log
says after which call each was delivered, and a signal delivered at a
boundary is delivered right after a call whose number completes an epoch.
The trace shows the recorder holding signals back ("deferred") and the
replayer delivering the same signals after the same calls.
"""
from __future__ import annotations

import collections
import signal
import textwrap

import pytest

from tft_lab import to_dataframe
from tft_lab.log import read_log
# The functions themselves: the tft_lab.record / tft_lab.replay facades are shadowed by their
# submodules once those are imported (see test_record_replay's test of the Python API).
from tft_lab.recorder import record as tft_record
from tft_lab.replayer import replay as tft_replay
from tft_lab.testing import build_program, outcome, record_and_replay

SIGNAL_PROGRAMS = ["timer_signals", "kill_from_other"]
#: Seconds a recording may take here.  timer_signals needs ~1 s at epochs 1 and 7.
RECORD_TIMEOUT = 6


def signal_records(log):
    return [r for r in read_log(log) if r.type == "sig"]




@pytest.mark.parametrize("program, epoch", [
    ("timer_signals", 1), ("timer_signals", 7),
    ("timer_signals", 1000),
    ("kill_from_other", 1), ("kill_from_other", 7),
    ("kill_from_other", 1000),
])
def test_signals_replay_identically_at_any_epoch_length(program, epoch, tmp_path):
    rec, rep, log = record_and_replay([build_program(program)], tmp_path, epoch=epoch,
                                      timeout=RECORD_TIMEOUT)
    assert rec.returncode == 0, rec.stderr
    assert outcome(rep) == outcome(rec)
    sigs = signal_records(log)
    assert sigs, "the program received no signal: the test proves nothing"
    if epoch < 1000:   # (a loop slowed by load may end before call 1000)
        assert any(r["mode"] == "boundary" for r in sigs)
    for r in sigs:
        if r["mode"] == "boundary":
            assert (r["seq"] + 1) % epoch == 0, r


def delivered(df):
    rows = df[(df.kind == "signal") & (df.action == "delivered")]
    return collections.Counter(zip(rows.pid, rows.seq, rows.syscall.astype(str)))


@pytest.mark.parametrize("program", SIGNAL_PROGRAMS)
def test_the_trace_shows_signals_deferred_then_delivered_at_the_same_call_on_replay(program, tmp_path):
    epoch = 7
    log = tmp_path / "signals.log"
    status, recorder = tft_record([str(build_program(program))], log, epoch=epoch)
    assert status == 0
    rec = to_dataframe(recorder.events)
    assert ((rec.kind == "signal") & (rec.action == "deferred")).any()

    sigs = signal_records(log)
    logged = collections.Counter((r["pid"], r["seq"], _name(r["signo"])) for r in sigs)
    assert delivered(rec) == logged
    boundary = {(r["pid"], r["seq"]) for r in sigs if r["mode"] == "boundary"}
    assert boundary
    for pid, seq in boundary:
        assert (seq + 1) % epoch == 0

    _, replayer = tft_replay(log)
    assert delivered(to_dataframe(replayer.events)) == logged


def _name(signo: int) -> str:
    return signal.Signals(signo).name


ALARM_STORM = textwrap.dedent("""\
    /* A 1 ms periodic SIGALRM for 30 ms of cheap syscalls (~500 of them): many timer
     * expiries, and no epoch boundary at all if the epoch is 1000 calls. */
    #define _GNU_SOURCE
    #include <signal.h>
    #include <stdio.h>
    #include <sys/syscall.h>
    #include <sys/time.h>
    #include <time.h>
    #include <unistd.h>
    static volatile int handled;
    static void on_alarm(int s) { (void)s; handled++; }
    static long long now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000000000LL + ts.tv_nsec;
    }
    int main(void) {
        signal(SIGALRM, on_alarm);
        struct itimerval it = { { 0, 1000 }, { 0, 1000 } };
        setitimer(ITIMER_REAL, &it, NULL);
        long long start = now_ns();
        while (now_ns() - start < 30000000LL)
            syscall(SYS_getppid);
        struct itimerval off = { { 0, 0 }, { 0, 0 } };
        setitimer(ITIMER_REAL, &off, NULL);
        printf("handled=%d\\n", handled);
        return 0;
    }
    """)


def test_a_standard_signal_is_pending_at_most_once(tmp_path):
    """The kernel merges a standard signal that arrives while it is pending; so must the recorder."""
    src = tmp_path / "alarm_storm.c"
    src.write_text(ALARM_STORM)
    status, recorder = tft_record([str(build_program(src))], tmp_path / "storm.log", epoch=1000)
    assert status == 0
    arrivals = [e for e in recorder.events if e.kind == "signal" and e.signal == "arrived"]
    assert len(arrivals) >= 2, "the timer fired fewer than twice: the test proves nothing"
    pending = [e.signal.split(",").count("SIGALRM") for e in recorder.events if e.kind == "syscall"]
    assert max(pending) == 1
    # What arrived while one was held back is traced as merged into it, as the kernel does.
    assert any(e.action == "merged" for e in arrivals)



MAP_STORM = textwrap.dedent("""\
    /* A 50 us periodic SIGALRM while the program maps a file 300 times: the replay maps the
     * logged content with calls of its own made in the program (open, mmap, close), and
     * timer signals keep arriving in the middle of them. */
    #include <fcntl.h>
    #include <signal.h>
    #include <stdio.h>
    #include <sys/mman.h>
    #include <sys/time.h>
    #include <unistd.h>
    static volatile int handled;
    static void on_alarm(int s) { (void)s; handled++; }
    int main(int argc, char **argv) {
        (void)argc;
        struct sigaction sa = { 0 };
        sa.sa_handler = on_alarm;
        sa.sa_flags = SA_RESTART;
        sigaction(SIGALRM, &sa, NULL);
        struct itimerval it = { { 0, 50 }, { 0, 50 } };
        setitimer(ITIMER_REAL, &it, NULL);
        unsigned sum = 0;
        for (int i = 0; i < 300; i++) {
            int fd = open(argv[1], O_RDONLY);
            unsigned char *p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
            sum = sum * 31 + p[i % 64];
            munmap(p, 4096);
            close(fd);
        }
        struct itimerval off = { { 0, 0 }, { 0, 0 } };
        setitimer(ITIMER_REAL, &off, NULL);
        printf("sum=%u handled=%d\\n", sum, handled);
        return 0;
    }
    """)


def test_signals_arriving_during_the_replays_own_calls_do_not_add_a_call(tmp_path):
    """A signal that arrived while the replay ran a call of its own in the program (here: mapping
    a file's logged content) made it resume towards the program's call with PTRACE_SYSCALL: its
    syscall-entry stop was taken for the seccomp stop, and the call skipped there came back as
    one more call, syscall -1, so the replay diverged one call later."""
    src = tmp_path / "map_storm.c"
    src.write_text(MAP_STORM)
    data = tmp_path / "data.bin"
    data.write_bytes(bytes(range(256)) * 16)
    rec, rep, log = record_and_replay([build_program(src), data], tmp_path, timeout=60)
    assert rec.returncode == 0, rec.stderr
    assert outcome(rep) == outcome(rec)
    assert signal_records(log), "no timer signal was delivered: the test proves nothing"


SIGNAL_BURST = textwrap.dedent("""\
    /* A child sends SIGUSR1 three times, 5 ms apart, while the parent computes without
     * a system call; then the parent blocks in waitpid.  Natively: usr1_handled=3. */
    #define _GNU_SOURCE
    #include <signal.h>
    #include <stdio.h>
    #include <sys/wait.h>
    #include <time.h>
    #include <unistd.h>
    static volatile sig_atomic_t handled;
    static void on_usr1(int s) { (void)s; handled++; }
    int main(void) {
        struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };
        sigemptyset(&sa.sa_mask);
        sigaction(SIGUSR1, &sa, NULL);
        pid_t parent = getpid();
        pid_t child = fork();
        if (child == 0) {
            for (int i = 0; i < 3; i++) {
                struct timespec d = { 0, 5000000 };
                kill(parent, SIGUSR1);
                nanosleep(&d, NULL);
            }
            _exit(0);
        }
        volatile unsigned long spin = 0;
        for (unsigned long i = 0; i < 200000000UL; i++)
            spin += i;
        waitpid(child, NULL, 0);
        printf("usr1_handled=%d\\n", (int)handled);
        return 0;
    }
    """)


def test_signals_of_one_kind_pending_together_replay_as_recorded(tmp_path):
    src = tmp_path / "signal_burst.c"
    src.write_text(SIGNAL_BURST)
    rec, rep, log = record_and_replay([build_program(src)], tmp_path, epoch=1000, timeout=RECORD_TIMEOUT)
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout.startswith(b"usr1_handled=")
    assert outcome(rep) == outcome(rec)


def test_a_held_back_signal_reaches_the_handler_it_arrived_for(tmp_path):
    """A signal held back while the program computes is delivered before the program
    changes that signal's handling (here: back to SIG_DFL, which would kill it), and the
    replay delivers it at the same point."""
    rec, rep, _ = record_and_replay([str(build_program("handler_reset"))], tmp_path, timeout=60)
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout == b"handled=1\n"
    assert rep.stdout == rec.stdout and rep.returncode == 0
