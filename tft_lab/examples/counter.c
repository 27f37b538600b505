/* counter.c -- a tft_lab example: a tiny program full of non-determinism.
 *
 *   usage: counter [ITERATIONS=20] [FILE]
 *
 * Every 100 ms it prints one line
 *
 *   n=<i> t=<CLOCK_REALTIME in ns> r=<getrandom u32> sum=<hex>
 *
 * where sum is a running FNV-1a (64-bit) over the text "n=... t=... r=..." of
 * every line printed so far, this one included. If FILE is given, the same
 * line is appended to it too. Run it twice: every t, r and sum differs.
 * Record it with tft and replay it: the replay prints the same lines, byte for
 * byte (and, being a replay, does not write FILE again).
 *
 * Build: cc -O1 -Wall -o counter counter.c */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int iterations = argc > 1 ? atoi(argv[1]) : 20;
    int fd = -1;
    uint64_t sum = 0xcbf29ce484222325ULL;   /* FNV-1a offset basis */

    if (argc > 2 && (fd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND, 0644)) < 0) {
        perror(argv[2]);
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);       /* one line at a time, even into a pipe */

    for (int n = 0; n < iterations; n++) {
        if (n > 0) {
            struct timespec d = { 0, 100 * 1000000L };
            while (nanosleep(&d, &d) < 0 && errno == EINTR)
                ;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint32_t r = 0;
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) {
            perror("getrandom");
            return 1;
        }

        char line[160];
        int len = snprintf(line, sizeof line, "n=%d t=%lld r=%u", n,
                           (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec, r);
        for (int i = 0; i < len; i++) {
            sum ^= (unsigned char)line[i];
            sum *= 0x100000001b3ULL;
        }
        len += snprintf(line + len, sizeof line - (size_t)len, " sum=%016llx\n",
                        (unsigned long long)sum);

        fputs(line, stdout);
        if (fd >= 0 && write(fd, line, (size_t)len) != len) {
            perror("write");
            return 1;
        }
    }
    if (fd >= 0)
        close(fd);
    return 0;
}
