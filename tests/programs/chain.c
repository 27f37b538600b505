/* chain.c -- a hash chain over non-deterministic inputs, for crash-point sweeps.
 *
 *   usage: chain [K=20] [FILE|-] [SLEEP_MS=0] [TIMER_US=1000]
 *
 * A periodic ITIMER_REAL (every TIMER_US microseconds, default 1 ms; 0: no
 * timer) counts SIGALRMs in a handler (SA_RESTART). Then for i = 0..K-1 it
 * reads the time (raw clock_gettime REALTIME), 8 bytes of getrandom and the pid
 * (raw getpid), does ~200 us of work, and prints one line
 *
 *   i=<i> v=<ns>.<random hex>.<pid>.<signals so far> chain=<16 hex>
 *
 * with ONE write(2) to stdout and, if FILE is given (not "-"), the same line
 * with ONE write(2) appended to FILE (O_WRONLY|O_CREAT|O_APPEND). chain is a
 * 64-bit FNV-1a over the text "<previous chain> i=<i> v=<value>" (the previous
 * chain as 16 hex digits; 0000000000000000 before line 0): a reader can
 * recompute every link, so a gap, a reordering or a changed byte shows.
 * With SLEEP_MS it sleeps that long (nanosleep, resumed after EINTR) before
 * each line but the first: a long-running program to kill a replica of.
 * Last, stdout (only) gets checksum=<16 hex>: a 64-bit FNV-1a over the text of
 * the K lines (without their newlines), as the other guest programs end.
 * Exit status 0. Natively every value and every chain differs from run to run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t signals;

static void on_alarm(int sig)
{
    (void)sig;
    signals++;
}

static uint64_t fnv1a_more(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t fnv1a(const char *s, size_t n)
{
    return fnv1a_more(0xcbf29ce484222325ULL, s, n);
}

static int write_all(int fd, const char *buf, size_t len)
{
    /* one write per line: a short write is an error here, not a retry */
    return write(fd, buf, len) == (ssize_t)len ? 0 : -1;
}

int main(int argc, char **argv)
{
    int k = argc > 1 ? atoi(argv[1]) : 20;
    int fd = -1;
    long sleep_ms = argc > 3 ? atol(argv[3]) : 0;
    long timer_us = argc > 4 ? atol(argv[4]) : 1000;
    if (argc > 2 && strcmp(argv[2], "-") != 0 && (fd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND, 0644)) < 0) {
        perror(argv[2]);
        return 1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    struct timeval period = { timer_us / 1000000, timer_us % 1000000 };
    struct itimerval it = { .it_interval = period, .it_value = period };
    if (timer_us > 0)
        setitimer(ITIMER_REAL, &it, NULL);

    uint64_t chain = 0, checksum = 0xcbf29ce484222325ULL;
    volatile unsigned spin = 0;
    for (int i = 0; i < k; i++) {
        if (i > 0 && sleep_ms > 0) {
            struct timespec d = { sleep_ms / 1000, (sleep_ms % 1000) * 1000000L };
            while (nanosleep(&d, &d) < 0 && errno == EINTR)
                ;
        }
        struct timespec ts;
        syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts);
        uint64_t r = 0;
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) {
            perror("getrandom");
            return 1;
        }
        long pid = syscall(SYS_getpid);
        for (int w = 0; w < 100000; w++)      /* ~200 us: room for the timer to fire */
            spin += (unsigned)w;

        char text[200], line[240];
        int n = snprintf(text, sizeof text, "%016llx i=%d v=%lld.%016llx.%ld.%d",
                         (unsigned long long)chain, i,
                         (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec,
                         (unsigned long long)r, pid, (int)signals);
        chain = fnv1a(text, (size_t)n);
        int len = snprintf(line, sizeof line, "%s chain=%016llx\n", text + 17,
                           (unsigned long long)chain);
        checksum = fnv1a_more(checksum, line, (size_t)len - 1);
        if (write_all(1, line, (size_t)len) < 0 || (fd >= 0 && write_all(fd, line, (size_t)len) < 0)) {
            perror("write");
            return 1;
        }
    }
    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    if (timer_us > 0)
        setitimer(ITIMER_REAL, &off, NULL);
    if (fd >= 0)
        close(fd);
    char last[40];
    int n = snprintf(last, sizeof last, "checksum=%016llx\n", (unsigned long long)checksum);
    return write_all(1, last, (size_t)n) < 0;
}
