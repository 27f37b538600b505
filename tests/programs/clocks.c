/* clocks.c -- exercises clock reads: clock_gettime on six clocks (through libc,
 * which uses the vDSO natively and a real syscall under tft, and through raw
 * syscall()), gettimeofday, time(NULL) and syscall(SYS_time).
 * Output: one name=value per line, then checksum=<FNV-1a of all lines>. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/time.h>
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

static const struct { clockid_t id; const char *name; } clocks[] = {
    { CLOCK_REALTIME, "realtime" },
    { CLOCK_MONOTONIC, "monotonic" },
    { CLOCK_BOOTTIME, "boottime" },
    { CLOCK_PROCESS_CPUTIME_ID, "process_cputime" },
    { CLOCK_THREAD_CPUTIME_ID, "thread_cputime" },
    { CLOCK_MONOTONIC_RAW, "monotonic_raw" },
};

int main(void)
{
    struct timespec ts;
    for (unsigned i = 0; i < sizeof clocks / sizeof clocks[0]; i++) {
        clock_gettime(clocks[i].id, &ts);
        out("libc_%s=%lld.%09ld", clocks[i].name, (long long)ts.tv_sec, ts.tv_nsec);
        syscall(SYS_clock_gettime, clocks[i].id, &ts);
        out("sys_%s=%lld.%09ld", clocks[i].name, (long long)ts.tv_sec, ts.tv_nsec);
    }

    struct timeval tv;
    gettimeofday(&tv, NULL);
    out("libc_gettimeofday=%lld.%06ld", (long long)tv.tv_sec, (long)tv.tv_usec);
    syscall(SYS_gettimeofday, &tv, NULL);
    out("sys_gettimeofday=%lld.%06ld", (long long)tv.tv_sec, (long)tv.tv_usec);

    out("libc_time=%lld", (long long)time(NULL));
    time_t t = 0;
    long r = syscall(SYS_time, &t);
    out("sys_time_ret=%ld", r);
    out("sys_time_arg=%lld", (long long)t);

    printf("checksum=%016llx\n", (unsigned long long)fnv);
    return 0;
}
