/* timer_signals.c -- exercises asynchronous timer signals: a SIGALRM handler
 * (SA_RESTART) and a 2 ms periodic ITIMER_REAL while the program runs a loop
 * of N cheap syscalls (getppid) with a little computation in each.
 *   usage: timer_signals [N=20000]
 * After every 1000 iterations it records how many signals have been handled
 * so far, and the handler records the loop iteration of the first signals.
 * Where the signals land differs from run to run; under tft they are
 * delivered at epoch boundaries, which the log makes repeatable.
 * Then it stops the timer and tests alarm(): alarm(5) then alarm(0).
 * Output: name=value lines, then checksum=<FNV-1a of all lines>. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
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

#define FIRST 8

static volatile sig_atomic_t handled;
static volatile long iter;
static long first_iter[FIRST];

static void on_alarm(int sig)
{
    (void)sig;
    if (handled < FIRST)
        first_iter[handled] = iter;
    handled++;
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 20000;
    if (iters < 0)
        iters = 0;
    int *at_checkpoint = calloc((size_t)iters / 1000 + 1, sizeof *at_checkpoint);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);

    for (int i = 0; i < FIRST; i++)
        first_iter[i] = -1;

    struct itimerval it = { .it_interval = { 0, 2000 }, .it_value = { 0, 2000 } };
    setitimer(ITIMER_REAL, &it, NULL);

    volatile unsigned spin = 0;
    for (iter = 0; iter < iters; iter++) {
        syscall(SYS_getppid);
        for (int k = 0; k < 1500; k++)      /* a few microseconds of work */
            spin += (unsigned)k;
        if ((iter + 1) % 1000 == 0)
            at_checkpoint[iter / 1000] = handled;
    }

    struct itimerval off;
    memset(&off, 0, sizeof off);
    setitimer(ITIMER_REAL, &off, NULL);
    int at_stop = handled;

    for (long i = 0; i < iters / 1000; i++)
        out("handled_after_%ld=%d", (i + 1) * 1000, at_checkpoint[i]);
    for (int i = 0; i < FIRST; i++)
        out("signal_%d_at_iter=%ld", i, first_iter[i]);
    out("handled_at_stop=%d", at_stop);

    alarm(5);
    out("alarm_remaining=%u", alarm(0));
    struct itimerval cur;
    getitimer(ITIMER_REAL, &cur);
    out("itimer_after_stop=%ld.%06ld", (long)cur.it_value.tv_sec, (long)cur.it_value.tv_usec);
    out("handled_total=%d", handled);

    printf("checksum=%016llx\n", (unsigned long long)fnv);
    free(at_checkpoint);
    return 0;
}
