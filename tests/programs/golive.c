/* golive.c -- one effect whose outcome a backup going live must get right.
 * Usage: golive [MODE] (default fork-server).  Each mode does its effect, then getppid() (a call with no effect:
 * where a test cuts the log or kills the primary), then prints what the program saw.
 *   listen  bind 127.0.0.1 port 0, listen; after the cut: "port=N" (getsockname)
 *   excl    open("lock", O_CREAT|O_EXCL); "excl=ok" or "excl=<error>"
 *   creat   as lz4 does: "out" must not exist (access), then open(O_CREAT|O_TRUNC) without
 *           O_EXCL; "creat=ok", or "creat=out exists" if it was there already
 *   mkdir   mkdir("dir"); unlink  unlink("victim"); rename  rename("from", "to")
 *   fork-rdtsc  a child reads the time-stamp counter first thing, exits 7; its parent
 *           calls getppid 5 times, waits for it: "child=7 tsc-ok=1"
 *   fork-server  a listener, a forked child connects to it and sends "ping"; the parent
 *           accepts, reads it, answers "hello": both ends of the connection in the program
 * Exit status 0, or 1 if the effect failed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <x86intrin.h>

static int report(const char *what, int res)
{
    printf("%s=%s\n", what, res < 0 ? strerror(errno) : "ok");
    return res < 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "fork-server";
    if (!strcmp(mode, "listen")) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 8) < 0)
            return report("listen", -1);
        getppid();
        socklen_t n = sizeof a;
        getsockname(s, (struct sockaddr *)&a, &n);
        printf("port=%d\n", ntohs(a.sin_port));
        return 0;
    }
    if (!strcmp(mode, "excl")) {
        int fd = open("lock", O_CREAT | O_EXCL | O_WRONLY, 0644);
        getppid();
        if (fd >= 0 && write(fd, "locked\n", 7) != 7)
            fd = -1;
        return report("excl", fd);
    }
    if (!strcmp(mode, "creat")) {
        if (access("out", F_OK) == 0) {
            printf("creat=out exists\n");
            return 1;
        }
        int fd = open("out", O_CREAT | O_TRUNC | O_WRONLY, 0644);
        getppid();
        if (fd >= 0 && write(fd, "made\n", 5) != 5)
            fd = -1;
        return report("creat", fd);
    }
    if (!strcmp(mode, "mkdir")) {
        int r = mkdir("dir", 0755);
        getppid();
        return report("mkdir", r);
    }
    if (!strcmp(mode, "unlink")) {
        int r = unlink("victim");
        getppid();
        return report("unlink", r);
    }
    if (!strcmp(mode, "rename")) {
        int r = rename("from", "to");
        getppid();
        return report("rename", r);
    }
    if (!strcmp(mode, "fork-rdtsc")) {
        pid_t pid = fork();
        if (pid == 0) {
            unsigned long long t = __rdtsc();   /* the child's first event: no call before it */
            getppid();
            _exit(t ? 7 : 8);
        }
        for (int i = 0; i < 5; i++)
            getppid();
        int st = 0;
        waitpid(pid, &st, 0);
        printf("child=%d tsc-ok=%d\n", WEXITSTATUS(st), WEXITSTATUS(st) == 7);
        return 0;
    }
    if (!strcmp(mode, "fork-server")) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t n = sizeof a;
        if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 8) < 0
            || getsockname(s, (struct sockaddr *)&a, &n) < 0)
            return report("listen", -1);
        pid_t pid = fork();
        if (pid == 0) {   /* a client of its parent's listener, which it shares */
            int c = socket(AF_INET, SOCK_STREAM, 0);
            if (connect(c, (struct sockaddr *)&a, sizeof a) < 0)
                return report("connect", -1);
            if (write(c, "ping", 4) != 4)
                return report("write", -1);
            char buf[16] = {0};
            ssize_t got = read(c, buf, 5);
            printf("child got %s\n", got > 0 ? buf : strerror(errno));
            fflush(stdout);
            _exit(got == 5 ? 0 : 1);
        }
        struct sockaddr_in peer;
        socklen_t pn = sizeof peer;
        int conn = accept(s, (struct sockaddr *)&peer, &pn);
        char buf[8] = {0};
        ssize_t got = read(conn, buf, 4);
        getppid();   /* the primary dies here */
        if (got != 4 || write(conn, "hello", 5) != 5)
            return report("parent", -1);
        int st = 0;
        waitpid(pid, &st, 0);
        printf("parent got %s, child status %d\n", buf, WEXITSTATUS(st));
        return 0;
    }
    fprintf(stderr, "usage: golive listen|excl|creat|mkdir|unlink|rename|fork-rdtsc\n");
    return 2;
}
