/* rdtsc.c -- exercises the rdtsc and rdtscp instructions (no syscall at all;
 * tft traps them with PR_SET_TSC/PR_TSC_SIGSEGV and emulates them).
 * Output: each value, the differences between successive reads, the TSC_AUX
 * value from rdtscp, then checksum=<FNV-1a of all lines>. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <x86intrin.h>

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

#define N 4

int main(void)
{
    unsigned long long tsc[N], tscp[N];
    unsigned aux[N];

    for (int i = 0; i < N; i++) {
        tsc[i] = __rdtsc();
        tscp[i] = __rdtscp(&aux[i]);
    }
    for (int i = 0; i < N; i++) {
        out("rdtsc_%d=%llu", i, tsc[i]);
        out("rdtscp_%d=%llu", i, tscp[i]);
        out("rdtscp_aux_%d=%u", i, aux[i]);
        out("rdtscp_minus_rdtsc_%d=%lld", i, (long long)(tscp[i] - tsc[i]));
        if (i > 0)
            out("rdtsc_delta_%d=%lld", i, (long long)(tsc[i] - tsc[i - 1]));
    }
    printf("checksum=%016llx\n", (unsigned long long)fnv);
    return 0;
}
