/* ticker.c -- a failover benchmark guest: prints one line every PERIOD_MS.
 *
 *   usage: ticker [COUNT=400] [PERIOD_MS=5]
 *
 * Line i is "i=<i> t=<CLOCK_MONOTONIC in ns>\n", written with one write(2).
 * CLOCK_MONOTONIC is the clock Python's time.monotonic_ns() reads, so a
 * benchmark can tell which lines were computed after a moment it noted: under
 * tft a replaying backup reproduces the primary's (recorded) t values, and
 * only a line computed by a live replica after that moment carries a later t.
 *
 * Build: cc -O1 -Wall -o ticker ticker.c */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long count = argc > 1 ? atol(argv[1]) : 400;
    long period_ms = argc > 2 ? atol(argv[2]) : 5;

    for (long i = 0; i < count; i++) {
        if (i > 0) {
            struct timespec d = { period_ms / 1000, (period_ms % 1000) * 1000000L };
            while (nanosleep(&d, &d) < 0 && errno == EINTR)
                ;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        char line[96];
        int len = snprintf(line, sizeof line, "i=%ld t=%lld\n", i,
                           (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
        for (int off = 0; off < len;) {
            ssize_t n = write(1, line + off, (size_t)(len - off));
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return 1;
            }
            off += (int)n;
        }
    }
    return 0;
}
