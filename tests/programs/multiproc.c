/* multiproc.c -- exercises process creation: fork, vfork+execve of /bin/echo,
 * and a pipe between two children (one writes the time and its pid, the other
 * reads it and prints it), then waitpid for every child and their exit
 * statuses. The children run one after another (or are synchronized by the
 * pipe), so the order of the lines is fixed; the pids and the time differ.
 * Output: name=value lines (children print their own), then the parent's
 * checksum=<FNV-1a of the lines the parent printed>. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

static void report(const char *name, pid_t pid)
{
    int status = 0;
    pid_t w = waitpid(pid, &status, 0);
    out("%s_pid=%d", name, (int)pid);
    out("%s_waited=%d", name, w == pid);
    if (WIFEXITED(status))
        out("%s_exit=%d", name, WEXITSTATUS(status));
    else
        out("%s_status=0x%x", name, status);
}

int main(void)
{
    /* 1. plain fork */
    fflush(stdout);
    pid_t a = fork();
    if (a == 0) {
        out("forked_child_says=hello from %ld", syscall(SYS_getpid));
        fflush(stdout);
        _exit(1);
    }
    report("forked", a);

    /* 2. vfork + exec */
    fflush(stdout);
    pid_t e = vfork();
    if (e == 0) {
        execl("/bin/echo", "echo", "echo_says=hello from /bin/echo", (char *)NULL);
        _exit(127);
    }
    report("echo", e);

    /* 3. a pipe from a writer child to a reader child */
    int p[2];
    if (pipe(p) < 0) {
        perror("pipe");
        return 1;
    }
    fflush(stdout);
    pid_t w = fork();
    if (w == 0) {
        close(p[0]);
        struct timespec ts;
        syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts);
        dprintf(p[1], "time %lld.%09ld from pid %ld", (long long)ts.tv_sec,
                ts.tv_nsec, syscall(SYS_getpid));
        _exit(2);
    }
    pid_t r = fork();
    if (r == 0) {
        close(p[1]);
        char buf[128];
        size_t len = 0;
        ssize_t n;
        while (len < sizeof buf - 1 && (n = read(p[0], buf + len, sizeof buf - 1 - len)) > 0)
            len += (size_t)n;
        buf[len] = '\0';
        out("reader_got=%s", buf);
        fflush(stdout);
        _exit(3);
    }
    close(p[0]);
    close(p[1]);
    report("writer", w);
    report("reader", r);

    printf("checksum=%016llx\n", (unsigned long long)fnv);
    return 0;
}
