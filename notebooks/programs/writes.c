/* writes.c -- a course program: an output-heavy workload for the output-commit notebook.
 *
 *   usage: writes [LINES=2000]
 *
 * Writes LINES short lines to stdout, each with its own write(2) (so each is
 * one *output* the output rule may hold back), then prints
 *
 *   lines=<LINES>
 *   elapsed_ns=<CLOCK_MONOTONIC time the writes took>
 *
 * Build: cc -O1 -Wall -o writes writes.c */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    int lines = argc > 1 ? atoi(argv[1]) : 2000;
    char buf[64];
    long long start = now_ns();
    for (int i = 0; i < lines; i++) {
        int n = snprintf(buf, sizeof buf, "line %d\n", i);
        if (write(1, buf, (size_t)n) != n)
            return 1;
    }
    long long elapsed = now_ns() - start;
    printf("lines=%d\nelapsed_ns=%lld\n", lines, elapsed);
    return 0;
}
