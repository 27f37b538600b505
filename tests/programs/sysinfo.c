/* sysinfo.c -- exercises system information queries: uname (all fields),
 * sysinfo (uptime, freeram, procs), getrusage(RUSAGE_SELF) and times().
 * Output: name=value lines, then checksum=<FNV-1a of all lines>. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <sys/times.h>
#include <sys/utsname.h>

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

int main(void)
{
    struct utsname u;
    uname(&u);
    out("uname_sysname=%s", u.sysname);
    out("uname_nodename=%s", u.nodename);
    out("uname_release=%s", u.release);
    out("uname_version=%s", u.version);
    out("uname_machine=%s", u.machine);
    out("uname_domainname=%s", u.domainname);

    struct sysinfo si;
    sysinfo(&si);
    out("sysinfo_uptime=%ld", si.uptime);
    out("sysinfo_freeram=%lu", si.freeram);
    out("sysinfo_mem_unit=%u", si.mem_unit);
    out("sysinfo_procs=%u", (unsigned)si.procs);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    out("rusage_utime=%ld.%06ld", (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec);
    out("rusage_stime=%ld.%06ld", (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec);
    out("rusage_maxrss=%ld", ru.ru_maxrss);
    out("rusage_minflt=%ld", ru.ru_minflt);

    struct tms t;
    clock_t ticks = times(&t);
    out("times_ret=%ld", (long)ticks);
    out("times_utime=%ld", (long)t.tms_utime);
    out("times_stime=%ld", (long)t.tms_stime);

    printf("checksum=%016llx\n", (unsigned long long)fnv);
    return 0;
}
