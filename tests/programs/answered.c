/* answered.c -- checks the calls a tft primary answers itself at the seccomp
 * stop (getpid family, clocks, time, getrandom) against what the kernel says
 * by other means, and the cases where the kernel's answer must stand (a
 * NULL buffer, a per-process clock, a bad clock id or flag, another
 * process's group, a large getrandom).  Raw syscalls, so libc caches nothing.
 * Output: name=ok|FAIL(...) lines, the same natively and under tft on every
 * run, then all_ok=1|0 and checksum=<FNV-1a of all lines>. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static uint64_t fnv = 0xcbf29ce484222325ULL;
static int all_ok = 1;

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

static void check(const char *name, int ok, long got, long want)
{
    if (ok)
        out("%s=ok", name);
    else
        out("%s=FAIL(got %ld want %ld)", name, got, want);
    all_ok &= ok;
}

/* field k (1-based, as in proc(5): 4 ppid, 5 pgrp, 6 session) of /proc/self/stat */
static long stat_field(int k)
{
    char buf[1024];
    int fd = open("/proc/self/stat", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    p += 2;   /* field 3, the state */
    for (int i = 3; i < k; i++) {
        p = strchr(p, ' ');
        if (!p)
            return -1;
        p++;
    }
    return atol(p);
}

static long self_pid(void)
{
    char buf[64];
    ssize_t n = readlink("/proc/self", buf, sizeof buf - 1);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    return atol(buf);
}

int main(void)
{
    long pid = syscall(SYS_getpid);
    check("getpid", pid == self_pid(), pid, self_pid());
    check("gettid", syscall(SYS_gettid) == pid, syscall(SYS_gettid), pid);
    long ppid = syscall(SYS_getppid);
    check("getppid", ppid == stat_field(4), ppid, stat_field(4));
    check("getpgrp", syscall(SYS_getpgrp) == stat_field(5), syscall(SYS_getpgrp), stat_field(5));
    check("getpgid_self", syscall(SYS_getpgid, 0) == stat_field(5), syscall(SYS_getpgid, 0), stat_field(5));
    check("getsid_self", syscall(SYS_getsid, 0) == stat_field(6), syscall(SYS_getsid, 0), stat_field(6));
    long other = syscall(SYS_getpgid, ppid);   /* another process: the kernel answers */
    check("getpgid_parent", other >= 0 || (other == -1 && errno == ESRCH), other, 0);

    struct timespec a, b, cpu;
    syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &a);
    syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &b);
    long long da = a.tv_sec * 1000000000LL + a.tv_nsec, db = b.tv_sec * 1000000000LL + b.tv_nsec;
    check("monotonic", da > 0 && db >= da, (long)(db - da), 0);
    check("nsec_range", a.tv_nsec >= 0 && a.tv_nsec < 1000000000, a.tv_nsec, 0);
    struct timespec rt;
    syscall(SYS_clock_gettime, CLOCK_REALTIME, &rt);
    long t = syscall(SYS_time, NULL);
    check("time_vs_realtime", t >= rt.tv_sec - 1 && t <= rt.tv_sec + 1, t, rt.tv_sec);
    time_t tloc = 0;
    long t2 = syscall(SYS_time, &tloc);
    check("time_tloc", tloc == t2, tloc, t2);
    struct timeval tv;
    struct timezone tz;
    check("gettimeofday", syscall(SYS_gettimeofday, &tv, NULL) == 0 && tv.tv_usec >= 0 && tv.tv_usec < 1000000
          && tv.tv_sec >= rt.tv_sec - 1 && tv.tv_sec <= rt.tv_sec + 2, tv.tv_sec, rt.tv_sec);
    check("gettimeofday_tz", syscall(SYS_gettimeofday, &tv, &tz) == 0, 0, 0);
    long r = syscall(SYS_clock_gettime, CLOCK_MONOTONIC, NULL);
    check("clock_null_efault", r == -1 && errno == EFAULT, errno, EFAULT);
    r = syscall(SYS_clock_gettime, 99, &a);
    check("clock_bad_einval", r == -1 && errno == EINVAL, errno, EINVAL);
    r = syscall(SYS_clock_gettime, CLOCK_PROCESS_CPUTIME_ID, &cpu);
    check("clock_cputime", r == 0 && (cpu.tv_sec > 0 || cpu.tv_nsec > 0), r, 0);
    r = syscall(SYS_gettimeofday, (void *)8, NULL);
    check("gettimeofday_bad_efault", r == -1 && errno == EFAULT, errno, EFAULT);

    unsigned char rnd[16] = {0}, zero[16] = {0};
    r = syscall(SYS_getrandom, rnd, sizeof rnd, 0);
    check("getrandom", r == 16 && memcmp(rnd, zero, 16) != 0, r, 16);
    r = syscall(SYS_getrandom, NULL, 16, 0);
    check("getrandom_null_efault", r == -1 && errno == EFAULT, errno, EFAULT);
    r = syscall(SYS_getrandom, rnd, 0, 0);
    check("getrandom_empty", r == 0, r, 0);
    r = syscall(SYS_getrandom, rnd, sizeof rnd, 0x80);
    check("getrandom_bad_flags", r == -1 && errno == EINVAL, errno, EINVAL);
    static unsigned char big[8192];
    r = syscall(SYS_getrandom, big, sizeof big, 0);
    check("getrandom_large", r == (long)sizeof big, r, (long)sizeof big);

    out("all_ok=%d", all_ok);
    printf("checksum=%016llx\n", (unsigned long long)fnv);
    return all_ok ? 0 : 1;
}
