/* syscall_loop.c -- a benchmark: runs N iterations of one cheap syscall that
 * tft intercepts and prints how long it took.
 *   usage: syscall_loop [N=100000] [getppid|clock|read] [file]
 *   getppid  syscall(SYS_getppid)                       (default)
 *   clock    syscall(SYS_clock_gettime, CLOCK_MONOTONIC)
 *   read     pread of 64 bytes at offset 0 from [file] (default /etc/hostname)
 * Elapsed time is measured with clock_gettime(CLOCK_MONOTONIC) around the loop.
 * Output: mode, iterations, elapsed_ns, ns_per_iter, a value folded from the
 * results (so the loop cannot be optimized away), then checksum=<FNV-1a>. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
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

static long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    const char *mode = argc > 2 ? argv[2] : "getppid";
    const char *file = argc > 3 ? argv[3] : "/etc/hostname";
    int fd = -1;
    uint64_t fold = 0;

    if (strcmp(mode, "getppid") && strcmp(mode, "clock") && strcmp(mode, "read")) {
        fprintf(stderr, "usage: %s [N] [getppid|clock|read] [file]\n", argv[0]);
        return 2;
    }
    if (!strcmp(mode, "read") && (fd = open(file, O_RDONLY)) < 0) {
        perror(file);
        return 1;
    }

    long long t0 = mono_ns();
    if (!strcmp(mode, "getppid")) {
        for (long i = 0; i < n; i++)
            fold += (uint64_t)syscall(SYS_getppid);
    } else if (!strcmp(mode, "clock")) {
        struct timespec ts;
        for (long i = 0; i < n; i++) {
            syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
            fold ^= (uint64_t)ts.tv_nsec;
        }
    } else {
        unsigned char buf[64];
        for (long i = 0; i < n; i++) {
            ssize_t got = pread(fd, buf, sizeof buf, 0);
            fold += (uint64_t)got + (got > 0 ? buf[0] : 0);
        }
    }
    long long elapsed = mono_ns() - t0;

    out("mode=%s", mode);
    out("iterations=%ld", n);
    out("elapsed_ns=%lld", elapsed);
    out("ns_per_iter=%.1f", n > 0 ? (double)elapsed / (double)n : 0.0);
    out("fold=%llx", (unsigned long long)fold);
    printf("checksum=%016llx\n", (unsigned long long)fnv);
    return 0;
}
