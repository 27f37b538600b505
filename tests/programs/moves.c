/* Bytes moved fd to fd, never through the program's memory: sendfile, copy_file_range,
 * splice (file -> pipe -> stdout) and tee.  The source file is written with random bytes
 * (getrandom), so two runs print different bytes; a replay must print the recorded ones.
 * argv[1]: the directory for the source file (default "."). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/sendfile.h>
#include <unistd.h>

static void say(const char *what) { if (write(1, what, strlen(what)) < 0) _exit(9); }

int main(int argc, char **argv) {
    char path[4096], text[64], line[128];
    unsigned char rnd[12];
    snprintf(path, sizeof path, "%s/moves.src", argc > 1 ? argv[1] : ".");
    if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd) return 2;
    int n = 0;
    for (size_t i = 0; i < sizeof rnd; i++) n += snprintf(text + n, sizeof text - n, "%02x", rnd[i]);
    text[n++] = '\n';
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, text, n) != n) return 3;
    fflush(stdout);

    say("sendfile: ");
    off_t off = 0;
    ssize_t r = sendfile(1, fd, &off, n);
    snprintf(line, sizeof line, "sendfile=%zd off=%lld\n", r, (long long)off); say(line);

    say("copy_file_range: ");
    loff_t in = 0;
    r = copy_file_range(fd, &in, 1, NULL, n, 0);
    if (r < 0) { snprintf(line, sizeof line, "(errno %d) ", errno); say(line); }
    snprintf(line, sizeof line, "copy_file_range=%zd in=%lld\n", r, (long long)in); say(line);

    int p[2], q[2];
    if (pipe(p) || pipe(q)) return 4;
    loff_t at = 0;
    ssize_t s1 = splice(fd, &at, p[1], NULL, n, 0);
    ssize_t t = tee(p[0], q[1], n, SPLICE_F_NONBLOCK);
    int terr = t < 0 ? errno : 0;
    say("splice: ");
    ssize_t s2 = splice(p[0], NULL, 1, NULL, n, 0);
    snprintf(line, sizeof line, "splice=%zd,%zd at=%lld tee=%zd errno=%d\n", s1, s2, (long long)at, t, terr);
    say(line);
    unlink(path);
    return 0;
}
