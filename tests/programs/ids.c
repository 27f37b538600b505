/* ids.c -- exercises process identities: getpid, getppid, gettid, getuid
 * (raw syscalls, so nothing is cached by libc), and fork: the child prints its
 * own ids, the parent prints fork's return value and what waitpid returned.
 * The uid is the same on every run; the pids are not.
 * Output: name=value lines (the child's lines are prefixed child_ and come
 * before the parent's wait_ lines), then the parent's checksum=<FNV-1a of the
 * lines the parent printed>. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

int main(void)
{
    out("pid=%ld", syscall(SYS_getpid));
    out("ppid=%ld", syscall(SYS_getppid));
    out("tid=%ld", syscall(SYS_gettid));
    out("uid=%ld", syscall(SYS_getuid));
    out("libc_getpid=%d", (int)getpid());

    fflush(stdout);                 /* do not duplicate buffered output */
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        out("child_pid=%ld", syscall(SYS_getpid));
        out("child_ppid=%ld", syscall(SYS_getppid));
        out("child_tid=%ld", syscall(SYS_gettid));
        fflush(stdout);
        _exit(3);
    }
    int status = 0;
    pid_t w = waitpid(child, &status, 0);
    out("fork_ret=%d", (int)child);
    out("wait_ret=%d", (int)w);
    out("wait_status=0x%x", status);
    out("wait_exited=%d", WIFEXITED(status));
    out("wait_exitstatus=%d", WEXITSTATUS(status));

    printf("checksum=%016llx\n", (unsigned long long)fnv);
    return 0;
}
