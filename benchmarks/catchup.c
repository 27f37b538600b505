/* catchup.c -- the catch-up benchmark's guest: a history of CALLS calls, then a tail.
 *
 *   usage: catchup [CALLS=1000] [TAIL_MS=3000]
 *
 * Makes CALLS raw getppid calls (each one record of tft's log), then for
 * TAIL_MS milliseconds reads CLOCK_MONOTONIC and sleeps 5 ms, over and over
 * (the live replica's calls after a failover, while a fresh backup catches
 * up), then prints "calls=<CALLS> ticks=1 folded=1" and exits 0.
 *
 * Build: cc -O1 -Wall -o catchup catchup.c */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
    struct timespec ts;
    syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
    long calls = argc > 1 ? atol(argv[1]) : 1000;
    long tail_ms = argc > 2 ? atol(argv[2]) : 3000;
    long folded = 0, ticks = 0;

    for (long i = 0; i < calls; i++)
        folded += syscall(SYS_getppid) & 1;
    long long end = now_ms() + tail_ms;
    while (now_ms() < end) {
        struct timespec d = { 0, 5000000L };
        nanosleep(&d, NULL);
        ticks++;
    }
    printf("calls=%ld ticks=%ld folded=%ld\n", calls, ticks > 0, folded >= 0);
    return 0;
}
