/* forkmany.c -- forks N children (argv[1], default 200) that exit at once with
 * status i & 0x7f, and never waits for them: they are zombies until their
 * parent exits, then orphans for whoever adopts them to reap.
 * Output: forked=N, then checksum=<FNV-1a of that line>. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 200;
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0)
            _exit(i & 0x7f);
    }
    char line[64];
    int len = snprintf(line, sizeof line, "forked=%d", n);
    uint64_t fnv = 0xcbf29ce484222325ULL;
    for (int i = 0; i < len; i++) {
        fnv ^= (unsigned char)line[i];
        fnv *= 0x100000001b3ULL;
    }
    printf("%s\nchecksum=%016llx\n", line, (unsigned long long)fnv);
    return 0;
}
