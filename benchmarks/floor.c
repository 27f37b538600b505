/* floor.c -- the cost floor of any ptrace supervisor: a minimal tracer that
 * traps ONE system call through seccomp (SECCOMP_RET_TRACE) and handles it
 * the cheapest way ptrace allows.  benchmarks/bench.py builds it on the fly
 * and times it beside tft and strace, in the same run.
 *
 *   usage: floor emulate|exit NR PROG [ARGS...]
 *   emulate  at the seccomp stop: GETREGS, skip the call (orig_rax = -1) and
 *            set its result, SETREGS, continue: ONE stop per call.  For
 *            clock_gettime (228) the tracer writes its own clock's timespec
 *            into the program through /proc/PID/mem, as an emulating
 *            supervisor would; for other calls the result is the tracer's
 *            own answer to getppid (what a getppid loop expects: a pid).
 *   exit     at the seccomp stop: PTRACE_SYSCALL to the call's exit stop,
 *            read the result there (GETREGS), continue: TWO stops per call,
 *            the path of a call that runs for real and is logged.
 * Everything else runs untrapped.  The program's exit status is floor's.
 * Not a test: it does no recording, keeps no log, follows no fork. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void child(int nr, char **argv)
{
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fprog = {sizeof prog / sizeof prog[0], prog};
    if (ptrace(PTRACE_TRACEME, 0, 0, 0) != 0) {
        perror("floor: PTRACE_TRACEME");
        _exit(127);
    }
    raise(SIGSTOP);   /* the tracer sets its options before the filter exists */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog) != 0) {
        perror("floor: seccomp");
        _exit(127);
    }
    execvp(argv[0], argv);
    perror("floor: execvp");
    _exit(127);
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[1], "emulate") && strcmp(argv[1], "exit"))) {
        fprintf(stderr, "usage: floor emulate|exit NR PROG [ARGS...]\n");
        return 2;
    }
    int emulate = !strcmp(argv[1], "emulate");
    int nr = atoi(argv[2]);
    pid_t pid = fork();
    if (pid < 0) {
        perror("floor: fork");
        return 1;
    }
    if (pid == 0)
        child(nr, argv + 3);
    int status, mem = -1;
    long calls = 0;
    waitpid(pid, &status, 0);
    ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACESECCOMP | PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL
           | PTRACE_O_TRACEEXEC);
    ptrace(PTRACE_CONT, pid, 0, 0);
    for (;;) {
        if (waitpid(pid, &status, 0) < 0) {
            perror("floor: waitpid");
            return 1;
        }
        if (WIFEXITED(status) || WIFSIGNALED(status))
            break;
        int sig = WSTOPSIG(status), event = status >> 16;
        if (sig == SIGTRAP && event == PTRACE_EVENT_EXEC) {
            char path[64];
            snprintf(path, sizeof path, "/proc/%d/mem", pid);
            if (mem >= 0)
                close(mem);
            mem = open(path, O_RDWR | O_CLOEXEC);
            ptrace(PTRACE_CONT, pid, 0, 0);
            continue;
        }
        if (sig == SIGTRAP && event == PTRACE_EVENT_SECCOMP) {
            struct user_regs_struct regs;
            calls++;
            ptrace(PTRACE_GETREGS, pid, 0, &regs);
            if (!emulate) {   /* run it for real, stop at its exit, read the result */
                ptrace(PTRACE_SYSCALL, pid, 0, 0);
                waitpid(pid, &status, 0);
                ptrace(PTRACE_GETREGS, pid, 0, &regs);
                ptrace(PTRACE_CONT, pid, 0, 0);
                continue;
            }
            long result = getppid();
            if (regs.orig_rax == 228) {   /* clock_gettime(clk, *ts): the tracer's clock */
                struct timespec ts;
                result = clock_gettime((clockid_t)regs.rdi, &ts) == 0 ? 0 : -errno;
                if (result == 0 && pwrite(mem, &ts, sizeof ts, (off_t)regs.rsi) != (ssize_t)sizeof ts)
                    result = -EFAULT;
            }
            regs.orig_rax = (unsigned long long)-1;
            regs.rax = (unsigned long long)result;
            ptrace(PTRACE_SETREGS, pid, 0, &regs);
            ptrace(PTRACE_CONT, pid, 0, 0);
            continue;
        }
        /* a signal for the program: deliver it (stops of ours are SIGTRAP with an event) */
        ptrace(PTRACE_CONT, pid, 0, (sig == SIGTRAP || sig == (SIGTRAP | 0x80)) ? 0 : sig);
    }
    if (getenv("FLOOR_VERBOSE"))
        fprintf(stderr, "floor: %ld trapped calls\n", calls);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
