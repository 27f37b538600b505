/* kill_from_other.c -- exercises signals sent by another process: a child
 * sends SIGUSR1 to the parent 5 times with random short delays (getrandom),
 * while the parent runs a loop of getppid() syscalls for ~200 ms of wall
 * clock (clock_gettime). The SIGUSR1 handler records the loop iteration of
 * each signal, a SIGCHLD handler the iteration at which the child's exit was
 * noticed (-1: after the loop, -2: never). All of that differs between runs.
 * Output: name=value lines, then checksum=<FNV-1a of all lines>. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t fnv = 0xcbf29ce484222325ULL;

static void out(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    for (int i = 0; i < n && i < (int)sizeof line - 1; i++) {
        fnv ^= (unsigned char)line[i];
        fnv *= 0x100000001b3ULL;
    }
    printf("%s\n", line);
}

#define SIGNALS 5
#define MAXREC 16

static volatile long iter = -1;          /* -1: before the loop */
static volatile sig_atomic_t usr1_count;
static long usr1_iter[MAXREC];
static volatile long chld_iter = -2;     /* -2: never handled */

static void on_usr1(int sig)
{
    (void)sig;
    if (usr1_count < MAXREC)
        usr1_iter[usr1_count] = iter;
    usr1_count++;
}

static void on_chld(int sig)
{
    (void)sig;
    chld_iter = iter;
}

static long long mono_ns(void)
{
    struct timespec ts;
    syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_chld;
    sigaction(SIGCHLD, &sa, NULL);

    pid_t parent = getpid();
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        for (int i = 0; i < SIGNALS; i++) {
            unsigned char r = 0;
            syscall(SYS_getrandom, &r, 1, 0);
            struct timespec d = { 0, (5 + r % 26) * 1000000L };   /* 5..30 ms */
            while (nanosleep(&d, &d) < 0 && errno == EINTR)
                ;
            kill(parent, SIGUSR1);
        }
        _exit(0);
    }

    long long start = mono_ns();
    long i = 0;
    for (;; i++) {
        iter = i;
        syscall(SYS_getppid);
        if (mono_ns() - start >= 200000000LL)
            break;
    }
    iter = -1;                            /* after the loop */
    long loops = i + 1;

    int status = 0;
    pid_t w;
    while ((w = waitpid(child, &status, 0)) < 0 && errno == EINTR)
        ;

    out("loop_iterations=%ld", loops);
    out("usr1_handled=%d", usr1_count);
    for (int k = 0; k < usr1_count && k < MAXREC; k++)
        out("usr1_%d_at_iter=%ld", k, usr1_iter[k]);
    out("sigchld_at_iter=%ld", chld_iter);
    out("child_waited=%d", w == child);
    out("child_status=%d", status);

    printf("checksum=%016llx\n", (unsigned long long)fnv);
    return 0;
}
